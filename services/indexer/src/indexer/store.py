"""PostgreSQL adapters: the projection store and the tenant directory.

One transaction per event: the tracking record (`processed_events`), the job row and, for
a winning `transcript.completed`, the transcript and its segments commit together or not
at all. A duplicate delivery finds its tracking record and changes nothing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Final, Protocol

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from contracts import TranscriptCompletedV1
from contracts.envelope import Event
from indexer.projection import JobState, JobStatus, apply_event, conflicting

_COLUMNS: Final = JobState.columns()
_SELECT_JOB: Final = f"SELECT {', '.join(_COLUMNS)} FROM jobs WHERE tenant_id = $1 AND job_id = $2"
_UPSERT_JOB: Final = (
    f"INSERT INTO jobs ({', '.join(_COLUMNS)}) "
    f"VALUES ({', '.join(f'${i}' for i in range(1, len(_COLUMNS) + 1))}) "
    "ON CONFLICT (tenant_id, job_id) DO UPDATE SET "
    + ", ".join(f"{c} = EXCLUDED.{c}" for c in _COLUMNS if c not in ("tenant_id", "job_id"))
)
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
)


@dataclass(frozen=True, slots=True)
class Applied:
    """What applying one event did."""

    duplicate: bool
    status: JobStatus | None = None
    segments_written: int = 0


class ConflictingJobError(Exception):
    """The event names another definition of its job than the job's first upload did."""


class ProjectionStore(Protocol):
    """Applies an event to the read model, durably, exactly once."""

    async def apply(self, event: Event) -> Applied: ...


class TenantDirectory(Protocol):
    """Which tenants exist."""

    async def is_known(self, tenant_id: str) -> bool: ...


def job_lock_key(event: Event) -> int:
    """A 64-bit advisory-lock key for the event's job (serialises its events across replicas)."""
    return int.from_bytes(event.job_id.bytes[:8], "big", signed=True)


class PostgresProjectionStore:
    """`ProjectionStore` over an asyncpg pool of the writer role."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def apply(self, event: Event) -> Applied:
        async with self._pool.acquire() as conn, conn.transaction():
            recorded = await conn.fetchval(
                "INSERT INTO processed_events (event_id, tenant_id, job_id, event_type, "
                "occurred_at) VALUES ($1, $2, $3, $4, $5) "
                "ON CONFLICT (event_id) DO NOTHING RETURNING true",
                event.event_id,
                event.tenant_id,
                event.job_id,
                event.message_type,
                event.occurred_at,
            )
            if not recorded:
                return Applied(duplicate=True)
            # Events of one job may be applied by several consumers at once; the row is
            # read, merged and written back under this lock so no merge is lost.
            await conn.execute("SELECT pg_advisory_xact_lock($1)", job_lock_key(event))
            record = await conn.fetchrow(_SELECT_JOB, event.tenant_id, event.job_id)
            before = JobState.from_record(record) if record is not None else None
            if conflicting(before, event):
                # Rolls back the tracking record too: nothing of this event is kept.
                raise ConflictingJobError(
                    f"job {event.job_id} of tenant {event.tenant_id!r} was defined by an "
                    "earlier upload with other audio or options"
                )
            after = apply_event(before, event)
            await conn.execute(_UPSERT_JOB, *after.values())
            written = 0
            if (
                isinstance(event, TranscriptCompletedV1)
                and after.completed_event_id == event.event_id
                and (before is None or before.completed_event_id != event.event_id)
            ):
                written = await _replace_transcript(conn, event)
            return Applied(duplicate=False, status=after.status, segments_written=written)


async def _replace_transcript(
    conn: PoolConnectionProxy[asyncpg.Record], event: TranscriptCompletedV1
) -> int:
    # The cascade removes an older transcript's segments (a redelivered job transcribed twice).
    await conn.execute(
        "DELETE FROM transcripts WHERE tenant_id = $1 AND job_id = $2",
        event.tenant_id,
        event.job_id,
    )
    await conn.execute(
        "INSERT INTO transcripts (tenant_id, job_id, event_id, language, language_probability, "
        "duration_seconds, model, text, segment_count, completed_at) "
        "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        event.tenant_id,
        event.job_id,
        event.event_id,
        event.language,
        event.language_probability,
        event.duration_seconds,
        event.model,
        event.text,
        len(event.segments),
        event.occurred_at,
    )
    if not event.segments:
        return 0
    records = [
        (
            event.tenant_id,
            event.job_id,
            s.id,
            s.start,
            s.end,
            s.text,
            s.avg_logprob,
            s.no_speech_prob,
            json.dumps([w.model_dump(mode="json") for w in s.words])
            if s.words is not None
            else None,
            event.language,
        )
        for s in event.segments
    ]
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
