"""Ending and erasing jobs (the use case behind `ingest.lifecycle`'s routes).

Ingest cannot write PostgreSQL, so both are requests: it checks the job is the caller's
(another tenant's job is `not_found`, as if it did not exist), leaves a cancel mark on the
media volume for the transcribers (`scribe_runtime.cancellations`), and publishes
`transcription.cancel_requested.v1` or `transcription.delete_requested.v1` with confirms.
The indexer applies the request and announces the outcome (`transcription.cancelled.v1`,
`transcription.deleted.v1`).

Ingest also keeps two things of its own per job on the media volume: the idempotency
record of the key that created it and the cancel mark. On `transcription.deleted.v1` it
removes both (`JobLifecycle.on_transcription_deleted`, queue `ingest.job-deletions`); a
transient failure goes through that queue's retry stages.
"""

from __future__ import annotations

import uuid
from typing import Final, Protocol

import structlog
from faststream.rabbit import RabbitBroker

from contracts.envelope import Event
from contracts.lifecycle import (
    DeletionReason,
    TranscriptionCancelRequestedV1,
    TranscriptionDeletedV1,
    TranscriptionDeleteRequestedV1,
)
from ingest.failures import (
    BROKER_UNAVAILABLE,
    JOB_FINISHED,
    MEDIA_UNAVAILABLE,
    ConflictError,
    NotFoundError,
    UnavailableError,
)
from ingest.queries import JobReader
from ingest.uploads import PRODUCER, PUBLISH_RETRY_AFTER_SECONDS, PublishFailedError
from scribe_runtime.amqp import Delivery
from scribe_runtime.cancellations import CancelMarks
from scribe_runtime.consumer import subscribe_events
from scribe_runtime.retry import TransientError
from scribe_runtime.topology import INGEST_DELETIONS_QUEUE

log = structlog.get_logger(__name__)

_FINISHED: Final = frozenset({"completed", "failed"})


class RequestPublisher(Protocol):
    """Publishes a request event; returns once the broker confirmed it."""

    async def publish(self, event: Event) -> None:
        """Publish and await the confirm; raise `PublishFailedError` otherwise."""
        ...


class JobKeys(Protocol):
    """Ingest's idempotency records, by the job they created."""

    async def forget_job(self, tenant: str, job_id: uuid.UUID) -> None:
        """Remove the record of the key that created `job_id`, if any. Idempotent."""
        ...


class JobLifecycle:
    """The use case behind both routes, and ingest's share of erasing a deleted job."""

    def __init__(
        self,
        *,
        queries: JobReader,
        marks: CancelMarks,
        publisher: RequestPublisher,
        keys: JobKeys,
    ) -> None:
        self._queries = queries
        self._marks = marks
        self._publisher = publisher
        self._keys = keys

    async def cancel(self, tenant: str, job_id: uuid.UUID, correlation: uuid.UUID) -> str:
        """Request the cancel of a queued or running job; its status now."""
        status = await self._status(tenant, job_id)
        if status in _FINISHED:
            raise ConflictError(
                JOB_FINISHED,
                f"transcription {job_id} is {status}; only an unfinished job can be cancelled",
            )
        if status == "cancelled":
            return status  # already done: asking again changes nothing
        await self._mark(tenant, job_id)
        await self._send(
            TranscriptionCancelRequestedV1(
                job_id=job_id, tenant_id=tenant, correlation_id=correlation, producer=PRODUCER
            )
        )
        log.info("cancel_requested", job_id=str(job_id), status=status)
        return status

    async def delete(self, tenant: str, job_id: uuid.UUID, correlation: uuid.UUID) -> str:
        """Request the erasure of a job, whatever its status; its status now."""
        status = await self._status(tenant, job_id)
        # A job still queued or running must stop too: its media is about to go.
        await self._mark(tenant, job_id)
        await self._send(
            TranscriptionDeleteRequestedV1(
                job_id=job_id,
                tenant_id=tenant,
                correlation_id=correlation,
                producer=PRODUCER,
                reason=DeletionReason.REQUESTED,
            )
        )
        log.info("delete_requested", job_id=str(job_id), status=status)
        return status

    async def on_transcription_deleted(
        self, event: TranscriptionDeletedV1, delivery: Delivery
    ) -> None:
        """Erase ingest's own files of the deleted job; raise to have it retried."""
        try:
            await self._keys.forget_job(event.tenant_id, event.job_id)
            await self._marks.clear(event.tenant_id, event.job_id)
        except OSError as exc:
            raise TransientError(f"media volume unavailable: {exc!r}") from exc
        log.info("job_files_erased", job_id=str(event.job_id))

    async def _status(self, tenant: str, job_id: uuid.UUID) -> str:
        status = await self._queries.status(tenant, job_id)
        if status is None:
            raise NotFoundError(str(job_id))
        return status

    async def _mark(self, tenant: str, job_id: uuid.UUID) -> None:
        try:
            await self._marks.mark(tenant, job_id)
        except OSError as exc:
            log.warning("cancel_mark_failed", job_id=str(job_id), error=repr(exc))
            raise UnavailableError(
                MEDIA_UNAVAILABLE,
                "the media volume is unavailable; retry shortly",
                retry_after_seconds=PUBLISH_RETRY_AFTER_SECONDS,
            ) from exc

    async def _send(self, event: Event) -> None:
        try:
            await self._publisher.publish(event)
        except PublishFailedError as exc:
            raise UnavailableError(
                BROKER_UNAVAILABLE,
                "the request could not be queued; retry shortly",
                retry_after_seconds=PUBLISH_RETRY_AFTER_SECONDS,
            ) from exc


def subscribe_deletions(broker: RabbitBroker, lifecycle: JobLifecycle) -> None:
    """Consume `transcription.deleted.v1` from `ingest.job-deletions` (before the broker starts)."""
    subscribe_events(
        broker,
        INGEST_DELETIONS_QUEUE,
        (TranscriptionDeletedV1,),
        lifecycle.on_transcription_deleted,
    )
