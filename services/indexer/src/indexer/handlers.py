"""The indexer's message handler: tenant check, projection with bounded retries, one log line."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final, Protocol, TypeVar

import structlog

from contracts.envelope import Event
from contracts.errors import RefusalCode
from contracts.lifecycle import (
    TranscriptionCancelledV1,
    TranscriptionDeletedV1,
    TranscriptionDeleteRequestedV1,
)
from contracts.transcription import TranscriptCompletedV1, TranscriptionFailedV1
from indexer import metrics
from indexer.media import MediaEraser, UnerasableMediaError
from indexer.store import Applied, ConflictingJobError, ProjectionStore, TenantDirectory
from scribe_runtime.amqp import Delivery
from scribe_runtime.database import TRANSIENT_ERRORS
from scribe_runtime.retry import TransientError

log = structlog.get_logger(__name__)

UNKNOWN_TENANT: Final = RefusalCode.UNKNOWN_TENANT
"""Dead-letter code of an event whose tenant is not in the tenants table."""
MEDIA_NOT_ERASABLE: Final = "media_not_erasable"
"""Dead-letter code of a delete request whose media no adapter can erase (replay it later)."""

PUBLISHES: tuple[type[Event], ...] = (TranscriptionCancelledV1, TranscriptionDeletedV1)
"""What the indexer announces after applying a cancel or delete request."""

A = TypeVar("A")
Publish = Callable[[Event], Awaitable[None]]


class DeadLetter(Protocol):
    """Moves a message to the queue's DLQ with a reason (the caller then acks it)."""

    async def __call__(self, delivery: Delivery, *, code: str, reason: str) -> None: ...


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Exponential backoff for transient database errors."""

    attempts: int = 6
    first_delay: float = 0.2
    max_delay: float = 5.0

    def delays(self) -> list[float]:
        """The pauses between tries."""
        return [
            min(self.first_delay * 2**i, self.max_delay) for i in range(max(self.attempts - 1, 0))
        ]


async def with_retries(
    operation: Callable[[], Awaitable[A]],
    policy: RetryPolicy,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> A:
    """Run `operation`, retrying transient errors in-process for a blip.

    Past the policy's tries it raises `TransientError`: the consumer then moves the message
    to its queue's TTL'd retry stages (longer backoff, the consumer free meanwhile) and, if
    the database is still gone after them, to the DLQ for `scribe dlq replay`.
    """
    for delay in policy.delays():
        try:
            return await operation()
        except TRANSIENT_ERRORS as exc:
            log.warning("database_unavailable_retrying", error=repr(exc), retry_in_s=delay)
            await sleep(delay)
    try:
        return await operation()
    except TRANSIENT_ERRORS as exc:
        raise TransientError(
            f"database unavailable after {policy.attempts} tries: {exc!r}"
        ) from exc


class JobEventIndexer:
    """Projects every job event; unknown tenants go to the DLQ, never into the tables."""

    def __init__(
        self,
        store: ProjectionStore,
        tenants: TenantDirectory,
        dead_letter: DeadLetter,
        retry: RetryPolicy | None = None,
        *,
        publish: Publish | None = None,
        media: MediaEraser | None = None,
    ) -> None:
        self._store = store
        self._tenants = tenants
        self._dead_letter = dead_letter
        self._retry = retry or RetryPolicy()
        self._publish = publish
        self._media = media

    async def on_job_event(self, event: Event, delivery: Delivery) -> None:
        """Apply the event and return (the consumer then acks); raise to have it redelivered."""
        started = time.perf_counter()
        try:
            known = await self._tenants.is_known(event.tenant_id)
        except TRANSIENT_ERRORS as exc:
            raise TransientError(f"database unavailable: {exc!r}") from exc
        if not known:
            await self._dead_letter(
                delivery,
                code=UNKNOWN_TENANT,
                reason=f"tenant {event.tenant_id!r} is not configured on this indexer "
                "(SCRIBE_TENANTS)",
            )
            return
        if isinstance(event, TranscriptionDeleteRequestedV1):
            try:
                await self._erase_media(event)
            except UnerasableMediaError as exc:
                await self._dead_letter(delivery, code=MEDIA_NOT_ERASABLE, reason=str(exc))
                return
        try:
            applied = await with_retries(lambda: self._store.apply(event), self._retry)
        except ConflictingJobError as exc:
            await self._dead_letter(
                delivery, code=RefusalCode.CONFLICTING_JOB, reason=f"{exc}; the job is unchanged"
            )
            return
        if applied.announce is not None:
            if self._publish is None:
                raise RuntimeError("this indexer was built without a publisher")
            # Confirmed before the ack: a lost announcement means a redelivered request,
            # whose duplicate path announces the same event again.
            await self._publish(applied.announce)
        if applied.chunk_audio_spent:
            await self._erase_chunk_audio(event)
        record_metrics(event, applied)
        log.info(
            "job_event_indexed",
            event_type=event.message_type,
            event_id=str(event.event_id),
            duplicate=applied.duplicate,
            status=str(applied.status) if applied.status else None,
            segments=applied.segments_written,
            announced=applied.announce.message_type if applied.announce else None,
            decided=[e.message_type for e in applied.decided] or None,
            dropped=applied.dropped or None,
            tombstoned=applied.tombstoned or None,
            duration_ms=round((time.perf_counter() - started) * 1000, 2),
        )

    async def _erase_chunk_audio(self, event: Event) -> None:
        """Erase a finished long job's chunks: best effort, after the commit.

        What the job's state rests on is committed already (every chunk's result, or the
        failure no replay undoes), so nothing reads these files again. A store that fails
        to erase them is logged and left: the job is unaffected, and deleting the job
        (by a user, or by retention) erases them again.
        """
        if self._media is None:
            return
        try:
            await self._media.delete_chunks(event.tenant_id, event.job_id)
        except Exception as exc:
            log.warning("chunk_audio_not_erased", job_id=str(event.job_id), error=repr(exc))
            return
        log.info("chunk_audio_erased", job_id=str(event.job_id))

    async def _erase_media(self, request: TranscriptionDeleteRequestedV1) -> None:
        """Erase the media before the tombstone commits: a retry then finds it still to do."""
        uri = await with_retries(
            lambda: self._store.media_of(request.tenant_id, request.job_id), self._retry
        )
        if self._media is None:
            if uri is None:
                return
            raise RuntimeError("this indexer was built without a media eraser")
        # A long job's chunks are its own, whether or not its upload is shared.
        await self._media.delete_chunks(request.tenant_id, request.job_id)
        if uri is None:
            return
        await self._media.delete_media(uri)
        log.info("job_media_erased", job_id=str(request.job_id))


def record_metrics(event: Event, applied: Applied) -> None:
    """Lag (now minus `occurred_at`, once committed), duplicates, and finished jobs."""
    event_type = event.message_type
    metrics.LAG_SECONDS.labels(event_type).observe(
        max(0.0, (datetime.now(UTC) - event.occurred_at).total_seconds())
    )
    if applied.duplicate:
        metrics.DUPLICATES.labels(event_type).inc()
    elif any(isinstance(e, TranscriptCompletedV1) for e in applied.decided):
        # A long job's last chunk completed it (the completion's own delivery is a duplicate).
        metrics.JOB_OUTCOMES.labels("completed", "").inc()
    elif isinstance(event, TranscriptCompletedV1):
        metrics.JOB_OUTCOMES.labels("completed", "").inc()
    elif isinstance(event, TranscriptionFailedV1):
        metrics.JOB_OUTCOMES.labels("failed", str(event.code)).inc()
    elif isinstance(applied.announce, TranscriptionCancelledV1):
        # The cancelled event is applied with its request (its own delivery is a duplicate).
        metrics.JOB_OUTCOMES.labels("cancelled", "").inc()
    elif isinstance(applied.announce, TranscriptionDeletedV1):
        metrics.JOB_OUTCOMES.labels("deleted", str(applied.announce.reason)).inc()
