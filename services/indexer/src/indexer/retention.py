"""Retention: jobs finished longer ago than their tenant's `retain_days` are deleted.

A periodic task of the indexer, not a cron job: the indexer owns the data, already runs
wherever PostgreSQL is, and needs no extra scheduler to deploy. Each sweep publishes a
`transcription.delete_requested.v1` (reason `retention`) per expired job, so retention
erases exactly what a user's `DELETE` erases, through the same retried path, and
announces `transcription.deleted.v1` the same way. The request's id is derived from the
job's, so a job swept twice (a sweep interrupted, two replicas) is requested once; a
session advisory lock keeps a second replica from sweeping at the same time.

"Finished" is `completed`, `failed` or `cancelled`, timed from when it finished; queued
and running jobs are never swept. A tenant absent from `retain_days` keeps its jobs
forever (the default).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

import asyncpg
import structlog

from contracts.envelope import Event, utc_now
from contracts.lifecycle import DeletionReason, TranscriptionDeleteRequestedV1

log = structlog.get_logger(__name__)

_NAMESPACE: Final = uuid.UUID("3a8e6f0c-5d2b-4f71-9c3e-8b1a0d4e7f25")
_SWEEP_LOCK: Final = 0x5C0BE_0004
"""Session advisory lock key: one sweeper at a time across indexer replicas."""

Publish = Callable[[Event], Awaitable[None]]
Clock = Callable[[], datetime]

_EXPIRED: Final = (
    "SELECT job_id, status, finished_at FROM ("
    "  SELECT job_id, status, CASE status WHEN 'completed' THEN completed_at "
    "    WHEN 'failed' THEN failed_at WHEN 'cancelled' THEN cancelled_at END AS finished_at"
    "  FROM jobs WHERE tenant_id = $1 AND status IN ('completed', 'failed', 'cancelled')"
    ") finished WHERE finished_at < $2 ORDER BY finished_at, job_id LIMIT $3"
)


@dataclass(frozen=True, slots=True)
class Expired:
    """A job retention would delete."""

    tenant_id: str
    job_id: uuid.UUID
    status: str
    finished_at: datetime


def retention_request_id(tenant_id: str, job_id: uuid.UUID) -> uuid.UUID:
    """The one retention delete request of a job, whichever sweep sends it."""
    return uuid.uuid5(_NAMESPACE, f"{tenant_id}:{job_id}")


class RetentionSweep:
    """Finds expired jobs (`due`) and requests their deletion (`sweep`)."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        retain_days: Mapping[str, int],
        *,
        publish: Publish | None = None,
        producer: str = "scribe-indexer",
        clock: Clock = utc_now,
        batch: int = 500,
    ) -> None:
        self._pool = pool
        self._retain_days = dict(retain_days)
        self._publish = publish
        self._producer = producer
        self._clock = clock
        self._batch = batch

    async def due(self) -> list[Expired]:
        """Up to `batch` expired jobs per tenant, oldest first (the dry run's listing)."""
        now = self._clock()
        found: list[Expired] = []
        for tenant, days in sorted(self._retain_days.items()):
            rows = await self._pool.fetch(_EXPIRED, tenant, now - timedelta(days=days), self._batch)
            found += [Expired(tenant, r["job_id"], r["status"], r["finished_at"]) for r in rows]
        return found

    async def sweep(self) -> int:
        """Request the deletion of every expired job; how many were requested.

        Returns 0 without looking when another replica holds the sweep lock.
        """
        if self._publish is None:
            raise RuntimeError("a sweep that deletes needs a publisher")
        async with self._pool.acquire() as conn:
            if not await conn.fetchval("SELECT pg_try_advisory_lock($1)", _SWEEP_LOCK):
                return 0
            try:
                expired = await self.due()
                for job in expired:
                    await self._publish(
                        TranscriptionDeleteRequestedV1(
                            event_id=retention_request_id(job.tenant_id, job.job_id),
                            job_id=job.job_id,
                            tenant_id=job.tenant_id,
                            producer=self._producer,
                            reason=DeletionReason.RETENTION,
                        )
                    )
            finally:
                await conn.execute("SELECT pg_advisory_unlock($1)", _SWEEP_LOCK)
        if expired:
            log.info("retention_deletions_requested", jobs=len(expired))
        return len(expired)

    async def run(self, interval_seconds: float, stop: asyncio.Event) -> None:
        """Sweep every `interval_seconds` until `stop`; a failed sweep is retried next time."""
        while not stop.is_set():
            try:
                await self.sweep()
            except Exception as exc:
                log.warning("retention_sweep_failed", error=repr(exc))
            try:
                async with asyncio.timeout(interval_seconds):
                    await stop.wait()
            except TimeoutError:
                pass
