"""The read side's port: every query of the read API, and how its rows become read models.

`JobReader` runs each read in one read-only transaction over the read-only PostgreSQL role,
scoped to a tenant. The pool opens no connection up front, so ingest starts (and keeps
taking uploads) while PostgreSQL is away; a read then raises `UnavailableError`
(`database_unavailable`) until it is back. The routes in `ingest.reads` only parse input,
call a method here and shape the answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import weakref
from collections.abc import AsyncIterator, Callable, Sequence, Sized
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import PurePosixPath
from typing import Any, Final, Generic, TypeAlias, TypeVar
from urllib.parse import unquote, urlsplit
from uuid import UUID

import asyncpg
import structlog
from asyncpg.pool import PoolConnectionProxy

from ingest import metrics
from ingest.failures import (
    DATABASE_UNAVAILABLE,
    INVALID_QUERY_VALUE,
    InvalidInputError,
    UnavailableError,
)
from ingest.links import job_links
from ingest.read_models import (
    AudioInfo,
    JobError,
    RequestedOptions,
    SegmentOut,
    TranscriptionOut,
    TranscriptionSummary,
    TranscriptOut,
    WordOut,
)
from ingest.search import SearchQuery, SearchResult, search
from ingest.settings import IngestSettings
from ingest.webhook_models import DeliveryAttemptOut, DeliveryOut, WebhookOut
from scribe_runtime.database import TRANSIENT_ERRORS

log = structlog.get_logger(__name__)

RETRY_AFTER_SECONDS: Final = 2
"""A database blip (failover, restart) usually passes within seconds."""
LARGE_TRANSCRIPT_SEGMENTS: Final = 200
"""From this many segments (about 15 minutes of speech) a transcript is built, and its
answers rendered, off the event loop (`off_loop`): a 10-hour transcript with words costs
~0.6 CPU-s to build and as much again to render, a stall of every request of every tenant
on this replica if done on the loop."""

_UNAVAILABLE_ERRORS: Final = TRANSIENT_ERRORS

Connection: TypeAlias = "PoolConnectionProxy[asyncpg.Record]"
T = TypeVar("T")


_LARGE_WORK: Final[weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore]] = (
    weakref.WeakKeyDictionary()
)


def is_large(segments: Sized) -> bool:
    """Whether a transcript of these segments is built and rendered off the loop."""
    return len(segments) >= LARGE_TRANSCRIPT_SEGMENTS


async def off_loop(large: bool, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """`fn(*args, **kwargs)` on a worker thread when `large`, else right here.

    The work still holds the GIL, but the interpreter hands it to the event loop every few
    milliseconds, so other requests go on meanwhile; small work is not worth the hop. One
    large piece at a time per process: under the GIL a second thread adds no throughput,
    only a third contender for the loop's turn.
    """
    if not large:
        return fn(*args, **kwargs)
    loop = asyncio.get_running_loop()
    gate = _LARGE_WORK.get(loop)
    if gate is None:
        gate = _LARGE_WORK[loop] = asyncio.Semaphore(1)
    async with gate:
        return await asyncio.to_thread(fn, *args, **kwargs)


async def _keep_session(conn: asyncpg.Connection) -> None:
    """The pool's reset on release: none beyond asyncpg's rollback of an open transaction.

    asyncpg's default (`RESET ALL; UNLISTEN *; pg_advisory_unlock_all(); CLOSE ALL`) is a
    round trip per request; the reader leaves nothing in the session to reset: its one
    setting, the tenant, is set with `set_config(..., true)` and ends with its transaction.
    """


_KEEP_HEAP: Final = "SELECT bit_length(B'1'::bit(40000000))"
"""One 5 MB value (40M bits, zeroed), made and freed by the backend: see `keep_backend_heap`."""


async def keep_backend_heap(conn: asyncpg.Connection) -> None:
    """Have a new connection's backend keep the memory a search needs from one to the next.

    PostgreSQL's backends allocate with the C library's `malloc`. With glibc, after each
    statement the free memory at the top of the heap goes back to the kernel once it
    exceeds the trim threshold: twice the largest block the backend has freed so far,
    128 KiB at first. A search for common words over 1M segments uses ~3 MB of heap in
    blocks smaller than that, so each one was handed back and the next search faulted the
    same pages in again: 755 minor page faults a search, ~2 ms of its ~10 ms, on every
    connection of the pool for as long as it lived (the bare statement on a connection
    that had once run a larger query took 0). glibc raises its thresholds when a block
    above them is freed, so one 5 MB value at connect sets them for the backend's life
    (mmap 5 MB, trim 10 MB): 0 faults a search after it. It costs ~6.5 ms once per
    connection, and a backend may then hold up to 10 MB of heap it is not using (100 MB
    over the default pool of 10, on the database server); with a C library that has no
    such rules it only costs the 6.5 ms. PostgreSQL has no setting for this. Operators
    can set it for every client in the server's environment, with both of glibc's
    tunables: `GLIBC_TUNABLES=glibc.malloc.mmap_threshold=8388608:glibc.malloc.
    trim_threshold=16777216` took a fresh connection from 100-140 faults a search to 7-8
    (50,000 segments); `trim_threshold` alone turns glibc's adjustment off, so blocks over
    128 KiB are mapped and unmapped every time: 100-116, and this query no longer helps.
    """
    await conn.execute(_KEEP_HEAP)


@asynccontextmanager
async def open_reader_pool(settings: IngestSettings) -> AsyncIterator[asyncpg.Pool]:
    """The read-only pool, open for the block's duration."""
    pool = await asyncpg.create_pool(
        settings.database_url,
        min_size=0,  # connect on first use: a missing database must not stop ingest starting
        max_size=settings.reader_pool_size,
        timeout=settings.database_timeout_seconds,
        command_timeout=settings.database_timeout_seconds,
        max_inactive_connection_lifetime=60.0,
        reset=_keep_session,
        init=keep_backend_heap,
    )
    try:
        yield pool
    finally:
        try:
            await asyncio.wait_for(pool.close(), timeout=10)
        except TimeoutError:
            pool.terminate()


_TENANT_LITERAL: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
"""`contracts.envelope.TenantId`: no quote, no backslash, so it is a safe SQL literal."""


def _begin_for(tenant: str) -> str:
    """`BEGIN READ ONLY` and the transaction's tenant for row-level security, one query."""
    if not _TENANT_LITERAL.fullmatch(tenant):
        raise ValueError(f"not a tenant id: {tenant!r}")
    return f"BEGIN READ ONLY; SELECT set_config('scribe.tenant_id', '{tenant}', true)"


@dataclass(frozen=True, slots=True)
class JobFilter:
    """Which jobs a listing shows."""

    statuses: Sequence[str] | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    """Up to `limit` items, and whether more follow."""

    items: list[T]
    has_more: bool


@dataclass(frozen=True, slots=True)
class DeliveryRequest:
    """What a replay sends again: the job, the `webhook-id`, the body."""

    job_id: UUID
    message_id: str
    event_type: Any
    payload: dict[str, object]


_LIVE_ENDPOINT: Final = "deleted_at IS NULL AND url IS NOT NULL"


@dataclass(frozen=True, slots=True)
class TranscriptLookup:
    """A job's status, and its transcript once there is one."""

    status: str
    transcript: TranscriptOut | None


class JobReader:
    """Jobs, transcripts and search, read-only and tenant-scoped."""

    def __init__(
        self, pool: asyncpg.Pool, *, timeout_seconds: float, search_candidate_limit: int
    ) -> None:
        self.pool = pool
        self.timeout_seconds = timeout_seconds
        self.search_candidate_limit = search_candidate_limit
        self._ending: set[asyncio.Task[None]] = set()
        """Transactions being ended after their reads (`_end`), held until done."""

    @classmethod
    def from_settings(cls, pool: asyncpg.Pool, settings: IngestSettings) -> JobReader:
        """A reader over `pool` with the configured limits."""
        return cls(
            pool,
            timeout_seconds=settings.database_timeout_seconds,
            search_candidate_limit=settings.search_candidate_limit,
        )

    @asynccontextmanager
    async def _connection(self, tenant: str) -> AsyncIterator[Connection]:
        """A read-only transaction that row-level security scopes to `tenant`.

        The WHERE clauses name the tenant too, but PostgreSQL is what enforces it: the
        reader role sees only rows of the tenant set here (migration 0002), and
        `set_config(..., true)` lasts for this transaction only, so a pooled connection
        never carries it to the next request. Once the block has what it read, the
        transaction ends (`_end`) while the caller goes on: the answer does not wait for
        a read-only COMMIT's round trip, and the connection is back in the pool only after
        its transaction has ended (or it is dropped).
        """
        begin = _begin_for(tenant)
        try:
            conn = await self.pool.acquire(timeout=self.timeout_seconds)
            try:
                # The transaction and its tenant in one round trip (a simple query may hold
                # two statements; a parameter may not, hence the checked literal).
                await conn.execute(begin)
                try:
                    yield conn
                except BaseException:
                    with contextlib.suppress(Exception):  # gone with the connection anyway
                        await conn.execute("ROLLBACK")
                    raise
            except BaseException:
                await self.pool.release(conn)
                raise
            ending = asyncio.get_running_loop().create_task(self._end(conn))
            self._ending.add(ending)
            ending.add_done_callback(self._ending.discard)
        except (asyncpg.DataError, OverflowError) as exc:
            # The routes range-check what they pass; this is the net under them: a value
            # PostgreSQL (or the driver) cannot take is the caller's input, never a 500.
            log.info("read_value_refused", error=type(exc).__name__)
            raise InvalidInputError(
                INVALID_QUERY_VALUE, "a value in the request is outside what can be queried"
            ) from None
        except _UNAVAILABLE_ERRORS as exc:
            log.warning("read_database_unavailable", error=repr(exc))
            raise UnavailableError(
                DATABASE_UNAVAILABLE,
                "the read database is unavailable; retry shortly",
                retry_after_seconds=RETRY_AFTER_SECONDS,
            ) from exc

    async def _end(self, conn: Connection) -> None:
        """COMMIT a read-only transaction, then give its connection back to the pool.

        Nothing was written, so a failed COMMIT loses nothing the caller read: it is logged,
        and the release rolls back whatever is still open or, failing that, drops the
        connection (asyncpg's reset), so no transaction, and no tenant, reaches the next
        holder of the connection.
        """
        try:
            await conn.execute("COMMIT")
        except Exception as exc:
            log.warning("read_commit_failed", error=repr(exc))
        finally:
            try:
                await self.pool.release(conn)
            except Exception as exc:  # asyncpg has terminated the connection
                log.warning("read_release_failed", error=repr(exc))

    async def job(self, tenant: str, job_id: UUID) -> TranscriptionOut | None:
        """Everything about one job (its transcript once completed); None if unknown."""
        async with self._connection(tenant) as conn:
            row = await conn.fetchrow(
                "SELECT * FROM jobs WHERE tenant_id = $1 AND job_id = $2", tenant, job_id
            )
            if row is None:
                return None
            completed = row["status"] == "completed"
            rows = await _transcript_rows(conn, tenant, job_id) if completed else None
        # Built once the connection is back in the pool: a long one takes a while.
        return _transcription(row, await _build(rows))

    async def status(self, tenant: str, job_id: UUID) -> str | None:
        """A job's status; None if unknown (or deleted, or another tenant's)."""
        async with self._connection(tenant) as conn:
            status: str | None = await conn.fetchval(
                "SELECT status FROM jobs WHERE tenant_id = $1 AND job_id = $2", tenant, job_id
            )
        return status

    async def transcript(self, tenant: str, job_id: UUID) -> TranscriptLookup | None:
        """A job's status and transcript; None if the job is unknown."""
        async with self._connection(tenant) as conn:
            status = await conn.fetchval(
                "SELECT status FROM jobs WHERE tenant_id = $1 AND job_id = $2", tenant, job_id
            )
            if status is None:
                return None
            completed = status == "completed"
            rows = await _transcript_rows(conn, tenant, job_id) if completed else None
        return TranscriptLookup(status=status, transcript=await _build(rows))

    async def jobs(
        self,
        tenant: str,
        where: JobFilter,
        *,
        after: tuple[datetime, UUID] | None,
        limit: int,
    ) -> Page[TranscriptionSummary]:
        """Jobs newest first, after the keyset position `after` (created_at, job_id)."""
        params: list[Any] = [tenant]
        clauses = ["tenant_id = $1"]
        if where.statuses:
            params.append(list(where.statuses))
            clauses.append(f"status = ANY(${len(params)}::text[])")
        if where.created_after is not None:
            params.append(where.created_after)
            clauses.append(f"created_at >= ${len(params)}")
        if where.created_before is not None:
            params.append(where.created_before)
            clauses.append(f"created_at < ${len(params)}")
        if after is not None:
            params += list(after)
            clauses.append(f"(created_at, job_id) < (${len(params) - 1}, ${len(params)})")
        params.append(limit + 1)
        async with self._connection(tenant) as conn:
            rows = await conn.fetch(
                "SELECT job_id, status, progress, original_filename, duration_seconds, language, "
                "error_code, error_message, error_retryable, created_at, updated_at, completed_at "
                f"FROM jobs WHERE {' AND '.join(clauses)} "
                f"ORDER BY created_at DESC, job_id DESC LIMIT ${len(params)}",
                *params,
            )
        return Page(items=[_summary(r) for r in rows[:limit]], has_more=len(rows) > limit)

    async def search(
        self,
        tenant: str,
        text: str,
        *,
        limit: int,
        language: str | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        after: tuple[float, UUID, int] | None = None,
        speaker: str | None = None,
    ) -> SearchResult:
        """One page of ranked segments matching `text` (see `ingest.search`)."""
        query = SearchQuery(
            tenant_id=tenant,
            text=text,
            limit=limit,
            candidate_limit=self.search_candidate_limit,
            language=language,
            speaker=speaker,
            created_after=created_after,
            created_before=created_before,
            after=after,
        )
        with metrics.SEARCH_SECONDS.time():
            async with self._connection(tenant) as conn:
                return await search(conn, query)

    async def webhooks(self, tenant: str) -> list[WebhookOut]:
        """The tenant's live webhook endpoints, newest first."""
        async with self._connection(tenant) as conn:
            rows = await conn.fetch(
                "SELECT endpoint_id, url, event_types, description, registered_at, secret_at "
                f"FROM webhook_endpoints WHERE tenant_id = $1 AND {_LIVE_ENDPOINT} "
                "ORDER BY registered_at DESC, endpoint_id DESC",
                tenant,
            )
        return [_webhook(r) for r in rows]

    async def webhook(self, tenant: str, endpoint_id: UUID) -> WebhookOut | None:
        """One live endpoint; None if unknown, deleted or another tenant's."""
        async with self._connection(tenant) as conn:
            row = await conn.fetchrow(
                "SELECT endpoint_id, url, event_types, description, registered_at, secret_at "
                "FROM webhook_endpoints WHERE tenant_id = $1 AND endpoint_id = $2 "
                f"AND {_LIVE_ENDPOINT}",
                tenant,
                endpoint_id,
            )
        return _webhook(row) if row is not None else None

    async def webhook_deliveries(
        self, tenant: str, endpoint_id: UUID, limit: int
    ) -> list[DeliveryOut]:
        """An endpoint's newest deliveries, each with every attempt, oldest attempt first."""
        async with self._connection(tenant) as conn:
            rows = await conn.fetch(
                "SELECT d.delivery_id, d.message_id, d.event_type, d.job_id, d.created_at, "
                "d.requested_at, COALESCE(jsonb_agg(jsonb_build_object("
                "  'attempt', a.attempt, 'outcome', a.outcome, 'status_code', a.status_code, "
                "  'error', a.error, 'duration_ms', a.duration_ms, "
                "  'attempted_at', a.attempted_at, 'next_attempt_at', a.next_attempt_at) "
                "  ORDER BY a.attempted_at, a.event_id) FILTER (WHERE a.event_id IS NOT NULL), "
                "  '[]'::jsonb) AS attempts "
                "FROM webhook_deliveries d LEFT JOIN webhook_delivery_attempts a "
                "  ON a.tenant_id = d.tenant_id AND a.delivery_id = d.delivery_id "
                "WHERE d.tenant_id = $1 AND d.endpoint_id = $2 "
                "GROUP BY d.tenant_id, d.delivery_id "
                "ORDER BY d.created_at DESC, d.delivery_id DESC LIMIT $3",
                tenant,
                endpoint_id,
                limit,
            )
        return [_delivery(r) for r in rows]

    async def webhook_delivery_request(
        self, tenant: str, endpoint_id: UUID, delivery_id: UUID
    ) -> DeliveryRequest | None:
        """What to send again for a replay; None if the endpoint has no such delivery."""
        async with self._connection(tenant) as conn:
            row = await conn.fetchrow(
                "SELECT job_id, message_id, event_type, payload FROM webhook_deliveries "
                "WHERE tenant_id = $1 AND endpoint_id = $2 AND delivery_id = $3",
                tenant,
                endpoint_id,
                delivery_id,
            )
        if row is None:
            return None
        return DeliveryRequest(
            job_id=row["job_id"],
            message_id=row["message_id"],
            event_type=row["event_type"],
            payload=json.loads(row["payload"]),
        )


def _webhook(row: asyncpg.Record) -> WebhookOut:
    return WebhookOut(
        id=row["endpoint_id"],
        url=row["url"],
        event_types=row["event_types"],
        description=row["description"],
        created_at=row["registered_at"],
        secret_rotated_at=row["secret_at"] if row["secret_at"] != row["registered_at"] else None,
    )


def _delivery(row: asyncpg.Record) -> DeliveryOut:
    attempts = [DeliveryAttemptOut.model_validate(a) for a in json.loads(row["attempts"])]
    latest = attempts[-1] if attempts else None
    # A request newer than every attempt (a replay not yet tried) is pending again.
    pending = latest is None or row["requested_at"] > latest.attempted_at
    return DeliveryOut(
        id=row["delivery_id"],
        webhook_id=row["message_id"],
        event_type=row["event_type"],
        job_id=row["job_id"],
        status="pending" if pending or latest is None else latest.outcome,
        attempts=attempts,
        next_attempt_at=None if pending or latest is None else latest.next_attempt_at,
        created_at=row["created_at"],
    )


def shown_uri(uri: str | None) -> str | None:
    """A stored audio URI as a tenant may see it: a `file://` one without the server's path.

    Workers need the absolute path (the event keeps it); a caller only needs to recognise
    the audio, and a server path would tell them the media root and its layout.
    """
    if uri is None or not uri.startswith("file:"):
        return uri
    return f"media:{PurePosixPath(unquote(urlsplit(uri).path)).name}"


def _error(row: asyncpg.Record) -> JobError | None:
    if row["status"] != "failed" or row["error_code"] is None:
        return None
    return JobError(
        code=row["error_code"], message=row["error_message"] or "", retryable=row["error_retryable"]
    )


def _transcription(row: asyncpg.Record, transcript: TranscriptOut | None) -> TranscriptionOut:
    return TranscriptionOut(
        id=row["job_id"],
        status=row["status"],
        progress=row["progress"],
        processed_seconds=row["processed_seconds"],
        eta_seconds=_eta(row),
        attempts=row["attempts"],
        error=_error(row),
        audio=AudioInfo(
            uri=shown_uri(row["audio_uri"]),
            sha256=row["sha256"],
            size_bytes=row["size_bytes"],
            content_type=row["content_type"],
            original_filename=row["original_filename"],
            duration_seconds=row["duration_seconds"],
        ),
        options=RequestedOptions(
            language=row["requested_language"],
            model=row["requested_model"],
            word_timestamps=row["word_timestamps"],
        ),
        model=row["model"],
        language=row["language"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        started_at=row["started_at"],
        completed_at=row["completed_at"] if row["status"] == "completed" else None,
        failed_at=row["failed_at"] if row["status"] == "failed" else None,
        cancelled_at=row["cancelled_at"] if row["status"] == "cancelled" else None,
        correlation_id=row["correlation_id"],
        transcript=transcript,
        links=job_links(row["job_id"], row["status"]),
    )


def _eta(row: asyncpg.Record) -> float | None:
    # An estimate means nothing once the job has ended.
    if row["status"] != "processing":
        return None
    eta: float | None = row["eta_seconds"]
    return eta


def _summary(row: asyncpg.Record) -> TranscriptionSummary:
    return TranscriptionSummary(
        id=row["job_id"],
        status=row["status"],
        progress=row["progress"],
        original_filename=row["original_filename"],
        duration_seconds=row["duration_seconds"],
        language=row["language"],
        error=_error(row),
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        completed_at=row["completed_at"] if row["status"] == "completed" else None,
        links=job_links(row["job_id"], row["status"]),
    )


TranscriptRows: TypeAlias = tuple[asyncpg.Record, list[asyncpg.Record]]
"""A transcript's row and its segments' rows, as read."""


async def _transcript_rows(conn: Connection, tenant: str, job_id: UUID) -> TranscriptRows | None:
    row = await conn.fetchrow(
        "SELECT language, language_probability, duration_seconds, model, text "
        "FROM transcripts WHERE tenant_id = $1 AND job_id = $2",
        tenant,
        job_id,
    )
    if row is None:
        return None
    segments = await conn.fetch(
        "SELECT segment_id, start_seconds, end_seconds, text, avg_logprob, no_speech_prob, words, "
        "speaker FROM segments WHERE tenant_id = $1 AND job_id = $2 ORDER BY segment_id",
        tenant,
        job_id,
    )
    return row, segments


async def _build(rows: TranscriptRows | None) -> TranscriptOut | None:
    """The transcript from its rows; off the event loop when it is long (`off_loop`)."""
    if rows is None:
        return None
    row, segments = rows
    return await off_loop(is_large(segments), _model, row, segments)


def _model(row: asyncpg.Record, segments: list[asyncpg.Record]) -> TranscriptOut:
    return TranscriptOut(**dict(row), segments=[_segment(s) for s in segments])


def _segment(row: asyncpg.Record) -> SegmentOut:
    words: list[dict[str, Any]] | None = (
        json.loads(row["words"]) if row["words"] is not None else None
    )
    return SegmentOut(
        id=row["segment_id"],
        start=row["start_seconds"],
        end=row["end_seconds"],
        text=row["text"],
        avg_logprob=row["avg_logprob"],
        no_speech_prob=row["no_speech_prob"],
        words=[WordOut(**w) for w in words] if words is not None else None,
        speaker=row["speaker"],
    )
