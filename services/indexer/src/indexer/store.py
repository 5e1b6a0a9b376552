"""PostgreSQL adapters: the projection store and the tenant directory.

One transaction per window of events: the tracking records (`processed_events`), the job
rows and, for a winning `transcript.completed`, the transcript and its segments commit
together or not at all. A window is what the consumer has in hand at once (up to its
prefetch): the plain job events that arrived while the previous window was being written.
The events of one job in a window are merged in memory (`apply_event`, order-independent)
and the job is locked, read and written once, so an `uploaded`, `started` and `completed`
of one job that arrive together cost one write, not three. A duplicate delivery finds its
tracking record and changes nothing. An event that arrives alone, and every event of a
window that failed (a conflicting upload among them, the database gone), is applied in
its own transaction, the one that decides its path (dead letter, retry).

A long job's chunk events (`indexer.chunks`) keep each chunk in `job_chunks`; the one
that brings in the last missing chunk also writes the assembled transcript through the
same code as a `transcript.completed`, and puts that event in the outbox
(`indexer.outbox`), all in its transaction. A chunk of a completed or cancelled job is
dropped. Once a long job has completed, or failed for good, `Applied.chunk_audio_spent`
tells the caller to erase its chunk audio (after the commit, never before).

A cancel request records, in its own transaction, the `transcription.cancelled` it leads
to (row and tracking record), which the caller then announces. A delete request replaces
everything of the job with a tombstone; every later event of a tombstoned job is dropped.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Final, Protocol
from uuid import UUID, uuid5

import asyncpg
import structlog
from asyncpg.pool import PoolConnectionProxy
from pydantic import TypeAdapter

from contracts import (
    AudioUploadedV1,
    TranscriptCompletedV1,
    TranscriptionCancelledV1,
    TranscriptionCancelRequestedV1,
    TranscriptionChunkedV1,
    TranscriptionChunkTranscribedV1,
    TranscriptionDeletedV1,
    TranscriptionDeleteRequestedV1,
    TranscriptionFailedV1,
    TranscriptionProgressV1,
    TranscriptionStartedV1,
)
from contracts.envelope import Event, utc_now
from contracts.transcription import Word
from indexer import chunks
from indexer.outbox import enqueue
from indexer.projection import (
    JobState,
    JobStatus,
    apply_event,
    cancelled_event_id,
    conflicting,
    decide_cancel,
)

log = structlog.get_logger(__name__)

_COLUMNS: Final = JobState.columns()
# The job's row (all NULL when there is none) and whether a tombstone replaced it: one
# round trip where a tombstone check and a read were two.
_SELECT_JOB_OR_TOMBSTONE: Final = (
    f"SELECT {', '.join(f'j.{c}' for c in _COLUMNS)}, j.job_id IS NOT NULL AS found, "
    "EXISTS (SELECT 1 FROM job_tombstones t WHERE t.tenant_id = $1 AND t.job_id = $2) "
    "AS tombstoned "
    "FROM (SELECT 1) AS one LEFT JOIN jobs j ON j.tenant_id = $1 AND j.job_id = $2"
)
_RECORD_EVENT: Final = (
    "INSERT INTO processed_events (event_id, tenant_id, job_id, event_type, occurred_at) "
    "VALUES ($1, $2, $3, $4, $5) ON CONFLICT (event_id) DO NOTHING RETURNING true"
)
_RECORD_EVENT_AND_LOCK: Final = (
    f"WITH recorded AS ({_RECORD_EVENT} AS fresh) "
    "SELECT (SELECT fresh FROM recorded) AS fresh, pg_advisory_xact_lock($6)::text AS locked"
)
_UPSERT_JOB: Final = (
    f"INSERT INTO jobs ({', '.join(_COLUMNS)}) "
    f"VALUES ({', '.join(f'${i}' for i in range(1, len(_COLUMNS) + 1))}) "
    "ON CONFLICT (tenant_id, job_id) DO UPDATE SET "
    + ", ".join(f"{c} = EXCLUDED.{c}" for c in _COLUMNS if c not in ("tenant_id", "job_id"))
)
_RECORD_WINDOW_AND_LOCK: Final = (
    "WITH locks AS (SELECT count(pg_advisory_xact_lock(k)) AS n "
    "FROM (SELECT unnest($6::bigint[]) AS k ORDER BY 1) AS keys), "
    "recorded AS (INSERT INTO processed_events "
    "(event_id, tenant_id, job_id, event_type, occurred_at) "
    "SELECT * FROM unnest($1::uuid[], $2::text[], $3::uuid[], $4::text[], $5::timestamptz[]) "
    "ON CONFLICT (event_id) DO NOTHING RETURNING event_id) "
    "SELECT array(SELECT event_id FROM recorded) FROM locks"
)
_SELECT_JOBS_OR_TOMBSTONES: Final = (
    f"SELECT {', '.join(f'j.{c}' for c in _COLUMNS)}, j.job_id IS NOT NULL AS found, "
    "EXISTS (SELECT 1 FROM job_tombstones t WHERE t.tenant_id = k.tenant_id "
    "AND t.job_id = k.job_id) AS tombstoned, "
    "k.tenant_id AS key_tenant_id, k.job_id AS key_job_id "
    "FROM unnest($1::text[], $2::uuid[]) AS k (tenant_id, job_id) "
    "LEFT JOIN jobs j ON j.tenant_id = k.tenant_id AND j.job_id = k.job_id"
)
_WINDOWED: Final = (
    AudioUploadedV1,
    TranscriptionStartedV1,
    TranscriptionProgressV1,
    TranscriptCompletedV1,
    TranscriptionFailedV1,
    TranscriptionCancelledV1,
)
"""Events whose projection is the merge alone (`apply_event`): several of one job merge
in memory and are written once. Requests (cancel, delete) and chunk events keep their own
transaction: they decide, erase or assemble from other rows."""
_INSERT_TRANSCRIPT: Final = (
    "WITH t AS (INSERT INTO transcripts (tenant_id, job_id, event_id, language, "
    "language_probability, duration_seconds, model, text, segment_count, completed_at) "
    "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING tenant_id, language) "
    "INSERT INTO search_languages (tenant_id, language) SELECT tenant_id, language FROM t "
    "ON CONFLICT DO NOTHING"
)
_WORDS: Final = TypeAdapter(list[Word])
"""Serialises a segment's words in pydantic-core: ~6x faster than json.dumps over model_dump."""
_CHUNK_EVENTS: Final = (TranscriptionChunkedV1, TranscriptionChunkTranscribedV1)
_ENDED_FOR_CHUNKS: Final = frozenset({JobStatus.COMPLETED, JobStatus.CANCELLED})
"""A chunk of a job in one of these is dropped. A failed job (a chunk dead-lettered) keeps
its chunks: replaying the dead chunk can still complete it, as a replayed upload can."""
_SEGMENT_COLUMNS: Final = (
    "tenant_id",
    "job_id",
    "segment_id",
    "start_seconds",
    "end_seconds",
    "text",
    "avg_logprob",
    "no_speech_prob",
    "words",
    "language",
    "speaker",
)


@dataclass(frozen=True, slots=True)
class Applied:
    """What applying one event did."""

    duplicate: bool
    status: JobStatus | None = None
    segments_written: int = 0
    announce: Event | None = None
    """The fact the event led to (`cancelled`, `deleted`), for the caller to publish."""
    tombstoned: bool = False
    """The job was deleted before: the event changed nothing."""
    decided: tuple[Event, ...] = ()
    """Events the indexer decided and put in its outbox (a long job's progress, completion)."""
    dropped: bool = False
    """A chunk event of a job that had already ended: recorded, and nothing else."""
    chunk_audio_spent: bool = False
    """The job's chunk audio is needed no more (committed: the job completed, or failed for
    good, or a re-split of a completed job wrote it again): the caller erases it."""


class ConflictingJobError(Exception):
    """The event names another definition of its job than the job's first upload did."""


class ProjectionStore(Protocol):
    """Applies an event to the read model, durably, exactly once."""

    async def apply(self, event: Event) -> Applied: ...

    async def media_of(self, tenant_id: str, job_id: UUID) -> str | None:
        """The job's audio URI when no other job of the tenant shares it (else None)."""
        ...


def deleted_event_id(request: TranscriptionDeleteRequestedV1) -> UUID:
    """The id of the `transcription.deleted` a request leads to: the same on every retry."""
    return uuid5(request.event_id, "transcription.deleted.v1")


class TenantDirectory(Protocol):
    """Which tenants exist."""

    async def is_known(self, tenant_id: str) -> bool: ...


def job_lock_key(event: Event) -> int:
    """A 64-bit advisory-lock key for the event's job (serialises its events across replicas)."""
    return int.from_bytes(event.job_id.bytes[:8], "big", signed=True)


def failed_for_good(event: Event, after: JobState) -> bool:
    """Whether `event` failed its job for good: no replay can complete it, so its chunk
    audio (a long job's, or what a planner that failed mid-split left) is garbage. The same
    answer whether the event is written alone or in a window."""
    return (
        isinstance(event, TranscriptionFailedV1)
        and not event.retryable
        and after.status is JobStatus.FAILED
    )


class PostgresProjectionStore:
    """`ProjectionStore` over an asyncpg pool of the writer role."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        producer: str = "scribe-indexer",
        linger_seconds: float = 0.0,
        max_window: int = 256,
    ) -> None:
        self._pool = pool
        self._producer = producer
        self._linger = linger_seconds
        self._max_window = max_window
        self._pending: list[tuple[Event, asyncio.Future[Applied | None]]] = []
        self._flusher: asyncio.Task[None] | None = None

    async def media_of(self, tenant_id: str, job_id: UUID) -> str | None:
        # Uploads are content-addressed per tenant: the same bytes submitted twice share
        # one file, which must outlive the first job's deletion.
        return await self._pool.fetchval(  # type: ignore[no-any-return]
            "SELECT j.audio_uri FROM jobs j WHERE j.tenant_id = $1 AND j.job_id = $2 "
            "AND NOT EXISTS (SELECT 1 FROM jobs o WHERE o.tenant_id = j.tenant_id "
            "AND o.audio_uri = j.audio_uri AND o.job_id <> j.job_id)",
            tenant_id,
            job_id,
        )

    async def apply(self, event: Event) -> Applied:
        """Apply `event` in one transaction with whatever else is in hand (its window).

        The plain job events (`_WINDOWED`) wait for the window being written, if any,
        and are then written together: one transaction, one lock, read and write per job,
        whatever the number of its events. Should the window fail (a conflicting upload, a
        lost connection), each of its events is applied again alone, so that it alone
        takes its own path (dead letter, retry).
        """
        if not isinstance(event, _WINDOWED):
            return await self._apply_alone(event)
        future: asyncio.Future[Applied | None] = asyncio.get_running_loop().create_future()
        self._pending.append((event, future))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush())
        applied = await future
        return applied if applied is not None else await self._apply_alone(event)

    async def _flush(self) -> None:
        """Write windows until none is pending: one at a time, each taking what arrived
        while the previous one was written (a group commit: no wait at low load)."""
        window: list[tuple[Event, asyncio.Future[Applied | None]]] = []
        try:
            await asyncio.sleep(self._linger)
            while self._pending:
                taken = self._pending[: self._max_window]
                del self._pending[: self._max_window]
                window = [(e, f) for e, f in taken if not f.done()]  # not given up on meanwhile
                if not window:
                    continue
                results: list[Applied | None]
                if len(window) == 1:
                    results = [None]  # alone: its caller's own transaction, no window
                else:
                    try:
                        results = list(await self._apply_window([e for e, _ in window]))
                    except Exception as exc:  # each event then meets its own error alone
                        log.info("window_applied_alone", events=len(window), error=repr(exc))
                        results = [None] * len(window)
                for (_, future), applied in zip(window, results, strict=True):
                    if not future.done():
                        future.set_result(applied)
        except BaseException:
            # Cancelled (shutting down): no caller may wait for a window never written.
            for _, future in [*window, *self._pending]:
                future.cancel()
            self._pending.clear()
            raise

    async def _apply_window(self, events: Sequence[Event]) -> list[Applied]:
        """The window's events in one transaction; raises (all rolled back) if one conflicts."""
        first: dict[UUID, int] = {}
        for i, e in enumerate(events):
            first.setdefault(e.event_id, i)
        unique = [events[i] for i in first.values()]
        jobs = list(dict.fromkeys((e.tenant_id, e.job_id) for e in unique))
        async with self._pool.acquire() as conn, conn.transaction():
            # Every job's lock, in key order (two windows never wait on each other in a
            # cycle), with every tracking record; then the rows, read once the locks are held.
            fresh: set[UUID] = set(
                await conn.fetchval(
                    _RECORD_WINDOW_AND_LOCK,
                    [e.event_id for e in unique],
                    [e.tenant_id for e in unique],
                    [e.job_id for e in unique],
                    [e.message_type for e in unique],
                    [e.occurred_at for e in unique],
                    sorted({job_lock_key(e) for e in unique}),
                )
            )
            rows = await conn.fetch(
                _SELECT_JOBS_OR_TOMBSTONES, [t for t, _ in jobs], [j for _, j in jobs]
            )
            found = {(r["key_tenant_id"], r["key_job_id"]): r for r in rows}
            before: dict[tuple[str, UUID], JobState | None] = {}
            state: dict[tuple[str, UUID], JobState | None] = {}
            for key, record in found.items():
                before[key] = state[key] = JobState.from_record(record) if record["found"] else None
            results: list[Applied] = []
            tombstoned: list[UUID] = []
            completions: dict[UUID, tuple[int, TranscriptCompletedV1]] = {}
            for i, event in enumerate(events):
                if first[event.event_id] != i or event.event_id not in fresh:
                    results.append(Applied(duplicate=True))
                    continue
                key = (event.tenant_id, event.job_id)
                if found[key]["tombstoned"]:
                    tombstoned.append(event.event_id)
                    results.append(Applied(duplicate=False, tombstoned=True))
                    continue
                if conflicting(state[key], event):
                    raise ConflictingJobError(f"job {event.job_id} conflicts")
                after = state[key] = apply_event(state[key], event)
                results.append(
                    Applied(
                        duplicate=False,
                        status=after.status,
                        chunk_audio_spent=failed_for_good(event, after),
                    )
                )
                if isinstance(event, TranscriptCompletedV1):
                    completions[event.event_id] = (i, event)
            changed = [s for key, s in state.items() if s is not None and s != before[key]]
            if changed:
                await conn.executemany(_UPSERT_JOB, [s.values() for s in changed])
            if tombstoned:
                # Nothing of a deleted job is kept, its tracking records included.
                await conn.execute(
                    "DELETE FROM processed_events WHERE event_id = ANY($1::uuid[])", tombstoned
                )
            # The transcript of the completion that won, once per job, if it is of this window.
            won: list[tuple[int, TranscriptCompletedV1]] = []
            for key, final in state.items():
                old = before[key]
                winner = final.completed_event_id if final is not None else None
                if winner in completions and (old is None or old.completed_event_id != winner):
                    won.append(completions[winner])
            if won:
                await _replace_transcripts(conn, [c for _, c in won])
                for i, completed in won:
                    results[i] = dataclasses.replace(
                        results[i], segments_written=len(completed.segments)
                    )
        return results

    async def _apply_alone(self, event: Event) -> Applied:
        """The event in its own transaction."""
        async with self._pool.acquire() as conn, conn.transaction():
            if isinstance(event, TranscriptionDeleteRequestedV1):
                return await self._delete(conn, event)
            # Events of one job may be applied by several consumers at once; the row is
            # read, merged and written back under the job's lock so no merge is lost. The
            # lock comes with the tracking record, in one round trip; the row is read in
            # the next statement, whose snapshot is taken once the lock is held.
            if not await record_event_and_lock(conn, event):
                return await self._duplicate(conn, event)
            record = await conn.fetchrow(_SELECT_JOB_OR_TOMBSTONE, event.tenant_id, event.job_id)
            assert record is not None  # `FROM (SELECT 1) LEFT JOIN`: always one row
            if record["tombstoned"]:
                # Nothing of a deleted job is kept, its tracking records included.
                await conn.execute(
                    "DELETE FROM processed_events WHERE event_id = $1", event.event_id
                )
                return Applied(duplicate=False, tombstoned=True)
            before = JobState.from_record(record) if record["found"] else None
            if isinstance(event, TranscriptionCancelRequestedV1):
                return await self._cancel(conn, before, event)
            if conflicting(before, event):
                # Rolls back the tracking record too: nothing of this event is kept.
                raise ConflictingJobError(
                    f"job {event.job_id} of tenant {event.tenant_id!r} was defined by an "
                    "earlier upload with other audio or options"
                )
            after = apply_event(before, event)
            if isinstance(event, _CHUNK_EVENTS):
                return await self._chunk(conn, before, after, event)
            await conn.execute(_UPSERT_JOB, *after.values())
            written = 0
            if (
                isinstance(event, TranscriptCompletedV1)
                and after.completed_event_id == event.event_id
                and (before is None or before.completed_event_id != event.event_id)
            ):
                written = await _replace_transcript(conn, event)
            return Applied(
                duplicate=False,
                status=after.status,
                segments_written=written,
                chunk_audio_spent=failed_for_good(event, after),
            )

    async def _chunk(
        self,
        conn: PoolConnectionProxy[asyncpg.Record],
        before: JobState | None,
        after: JobState,
        event: TranscriptionChunkedV1 | TranscriptionChunkTranscribedV1,
    ) -> Applied:
        """Keep the chunk event; complete the job, or announce its progress, from the rows."""
        if before is not None and before.status in _ENDED_FOR_CHUNKS:
            # A first plan of a completed job (it completed whole, then a redelivery of its
            # upload met a worker with a lower threshold): every chunk it wrote is garbage.
            replanned = before.status is JobStatus.COMPLETED and isinstance(
                event, TranscriptionChunkedV1
            )
            return Applied(
                duplicate=False, status=before.status, dropped=True, chunk_audio_spent=replanned
            )
        await conn.execute(_UPSERT_JOB, *after.values())
        if isinstance(event, TranscriptionChunkedV1):
            if after.chunked_at == event.occurred_at:
                await chunks.store_plan(conn, event)
        else:
            await chunks.store_result(conn, event)
        if after.chunk_count is None:
            return Applied(duplicate=False, status=after.status)  # a result before its plan
        progress = await chunks.progress_of(conn, after.tenant_id, after.job_id, after.chunk_count)
        if progress.complete:
            completed = await chunks.completion(conn, after, producer=self._producer)
            final = apply_event(after, completed)
            await conn.execute(_UPSERT_JOB, *final.values())
            written = await _replace_transcript(conn, completed)
            # Its copy coming back from the bus is then a duplicate, not a second completion.
            await record_event(conn, completed)
            await enqueue(conn, completed)
            return Applied(
                duplicate=False,
                status=final.status,
                segments_written=written,
                decided=(completed,),
                chunk_audio_spent=True,
            )
        announced = chunks.progress_event(after, progress, producer=self._producer)
        if after.status != JobStatus.PROCESSING or announced.progress <= after.progress:
            return Applied(duplicate=False, status=after.status)
        final = apply_event(after, announced)
        await conn.execute(_UPSERT_JOB, *final.values())
        await record_event(conn, announced)
        await enqueue(conn, announced)
        return Applied(duplicate=False, status=final.status, decided=(announced,))

    async def _cancel(
        self,
        conn: PoolConnectionProxy[asyncpg.Record],
        before: JobState | None,
        request: TranscriptionCancelRequestedV1,
    ) -> Applied:
        cancelled = decide_cancel(before, request, producer=self._producer, now=utc_now())
        if cancelled is None:
            return Applied(duplicate=False, status=before.status if before else None)
        after = apply_event(before, cancelled)
        await conn.execute(_UPSERT_JOB, *after.values())
        # The announcement comes back through this indexer's own queue: already applied.
        await record_event(conn, cancelled)
        return Applied(duplicate=False, status=after.status, announce=cancelled)

    async def _duplicate(self, conn: PoolConnectionProxy[asyncpg.Record], event: Event) -> Applied:
        """A redelivery changes nothing, but re-announces what its first delivery decided.

        The first delivery may have committed and then lost its connection before its
        announcement was confirmed; the same event id makes the repeat harmless.
        """
        if isinstance(event, TranscriptionChunkedV1):
            # A redelivered upload split again after its job completed: the same plan (the
            # same id), its chunks written again, garbage as soon as they are.
            status = await conn.fetchval(
                "SELECT status FROM jobs WHERE tenant_id = $1 AND job_id = $2",
                event.tenant_id,
                event.job_id,
            )
            return Applied(duplicate=True, chunk_audio_spent=status == JobStatus.COMPLETED)
        if not isinstance(event, TranscriptionCancelRequestedV1):
            return Applied(duplicate=True)
        row = await conn.fetchrow(
            "SELECT status, cancelled_at FROM jobs WHERE tenant_id = $1 AND job_id = $2 "
            "AND cancelled_event_id = $3",
            event.tenant_id,
            event.job_id,
            cancelled_event_id(event),
        )
        if row is None:
            return Applied(duplicate=True)
        return Applied(
            duplicate=True,
            status=JobStatus(row["status"]),
            announce=TranscriptionCancelledV1(
                event_id=cancelled_event_id(event),
                occurred_at=row["cancelled_at"],
                job_id=event.job_id,
                tenant_id=event.tenant_id,
                correlation_id=event.correlation_id,
                producer=self._producer,
                request_event_id=event.event_id,
            ),
        )

    async def _delete(
        self, conn: PoolConnectionProxy[asyncpg.Record], request: TranscriptionDeleteRequestedV1
    ) -> Applied:
        """Replace everything of the job with its tombstone (the media is already gone)."""
        await conn.execute("SELECT pg_advisory_xact_lock($1)", job_lock_key(request))
        tombstone = await _tombstone(conn, request)
        if tombstone is None:
            deleted_at: datetime = max(utc_now(), request.occurred_at)
            # Transcripts and segments go with the row (ON DELETE CASCADE).
            await conn.execute(
                "DELETE FROM jobs WHERE tenant_id = $1 AND job_id = $2",
                request.tenant_id,
                request.job_id,
            )
            await conn.execute(
                "DELETE FROM processed_events WHERE tenant_id = $1 AND job_id = $2",
                request.tenant_id,
                request.job_id,
            )
            # Chunks go with the row; what the outbox still holds of it is not announced.
            await conn.execute(
                "DELETE FROM event_outbox WHERE tenant_id = $1 AND job_id = $2",
                request.tenant_id,
                request.job_id,
            )
            await conn.execute(
                "INSERT INTO job_tombstones (tenant_id, job_id, deleted_at, request_event_id, "
                "reason) VALUES ($1, $2, $3, $4, $5)",
                request.tenant_id,
                request.job_id,
                deleted_at,
                request.event_id,
                str(request.reason),
            )
        elif tombstone["request_event_id"] == request.event_id:
            deleted_at = tombstone["deleted_at"]  # a redelivery: announce the same again
        else:
            return Applied(duplicate=True, tombstoned=True)  # deleted by another request
        return Applied(
            duplicate=tombstone is not None,
            tombstoned=tombstone is not None,
            announce=TranscriptionDeletedV1(
                event_id=deleted_event_id(request),
                occurred_at=deleted_at,
                job_id=request.job_id,
                tenant_id=request.tenant_id,
                correlation_id=request.correlation_id,
                producer=self._producer,
                request_event_id=request.event_id,
                reason=request.reason,
            ),
        )


async def record_event(conn: PoolConnectionProxy[asyncpg.Record], event: Event) -> bool:
    """Write the event's tracking record in the caller's transaction; False if it was there.

    The one exactly-once mechanism of every projection: the record commits with the
    projection's writes, or neither does.
    """
    recorded: bool | None = await conn.fetchval(
        _RECORD_EVENT,
        event.event_id,
        event.tenant_id,
        event.job_id,
        event.message_type,
        event.occurred_at,
    )
    return bool(recorded)


async def record_event_and_lock(conn: PoolConnectionProxy[asyncpg.Record], event: Event) -> bool:
    """`record_event`, and the job's transaction-scoped advisory lock, in one statement."""
    recorded: bool | None = await conn.fetchval(
        _RECORD_EVENT_AND_LOCK,
        event.event_id,
        event.tenant_id,
        event.job_id,
        event.message_type,
        event.occurred_at,
        job_lock_key(event),
    )
    return bool(recorded)


async def _tombstone(
    conn: PoolConnectionProxy[asyncpg.Record], event: Event
) -> asyncpg.Record | None:
    return await conn.fetchrow(
        "SELECT deleted_at, request_event_id FROM job_tombstones "
        "WHERE tenant_id = $1 AND job_id = $2",
        event.tenant_id,
        event.job_id,
    )


async def _replace_transcript(
    conn: PoolConnectionProxy[asyncpg.Record], event: TranscriptCompletedV1
) -> int:
    return await _replace_transcripts(conn, [event])


async def _replace_transcripts(
    conn: PoolConnectionProxy[asyncpg.Record], events: Sequence[TranscriptCompletedV1]
) -> int:
    """Write each event's transcript (one per job) in place of any older one: 3 round trips
    for the whole list. Returns the segments written."""
    # The cascade removes an older transcript's segments (a redelivered job transcribed twice).
    await conn.execute(
        "DELETE FROM transcripts t USING unnest($1::text[], $2::uuid[]) AS k(tenant_id, job_id) "
        "WHERE t.tenant_id = k.tenant_id AND t.job_id = k.job_id",
        [e.tenant_id for e in events],
        [e.job_id for e in events],
    )
    # The tenant's search languages in the same statement (migration 0010): no round trip.
    await conn.executemany(
        _INSERT_TRANSCRIPT,
        [
            (
                e.tenant_id,
                e.job_id,
                e.event_id,
                e.language,
                e.language_probability,
                e.duration_seconds,
                e.model,
                e.text,
                len(e.segments),
                e.occurred_at,
            )
            for e in events
        ],
    )
    records = [
        (
            e.tenant_id,
            e.job_id,
            s.id,
            s.start,
            s.end,
            s.text,
            s.avg_logprob,
            s.no_speech_prob,
            _WORDS.dump_json(s.words, exclude_none=True).decode() if s.words is not None else None,
            e.language,
            s.speaker,
        )
        for e in events
        for s in e.segments
    ]
    if records:
        await conn.copy_records_to_table("segments", records=records, columns=_SEGMENT_COLUMNS)
    return len(records)


class PostgresTenants:
    """`TenantDirectory` with a cache of known tenants, asking the database on a miss."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool
        self._known: set[str] = set()

    async def refresh(self) -> frozenset[str]:
        """Reload the whole tenant list."""
        rows = await self._pool.fetch("SELECT tenant_id FROM tenants")
        self._known = {r["tenant_id"] for r in rows}
        return frozenset(self._known)

    async def is_known(self, tenant_id: str) -> bool:
        if tenant_id in self._known:
            return True
        # A miss may be a tenant another replica seeded after this one started. Unknown
        # tenants are rare (each is dead-lettered), so one indexed lookup per miss is cheap.
        found = await self._pool.fetchval(
            "SELECT EXISTS (SELECT 1 FROM tenants WHERE tenant_id = $1)", tenant_id
        )
        if found:
            self._known.add(tenant_id)
        return bool(found)
