"""The dead-letter watcher: a job whose upload dies in the transcriber's queue ends `failed`.

`scribe.dlx` routes each dead letter of `transcriber.audio-uploaded` (the intake) and of
every pool's queue (`transcriber.pool.<model>.audio-uploaded`) both to that queue's
DLQ (kept for `scribe dlq list|replay`) and to `indexer.dead-letters`, consumed here. For
each one that is a valid `audio.uploaded.v1`, the watcher publishes
`transcription.failed.v1` with code `dead_lettered` and the reason (RabbitMQ's `x-death`
or the consumer's own headers), so the projection and every downstream subscriber hear the
job's end like any other failure. A replayed job that then completes still ends
`completed` (the projection ranks it above `failed`).

The failure's event id is derived from the dead letter's identity and time of death, so a
redelivered dead letter publishes the same event (deduplicated) while a replayed job that
dies again publishes a new one.

A long job's chunk work item (`transcription.chunk.requested.v1`) that dies in a pool's
chunk queue (`transcriber.pool.<model>.chunk-requested`) fails its job the same way, once:
the failure's id is derived from the job alone, so a second chunk of the job dying
publishes the same event again (deduplicated), never a second failure.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Final

import structlog

from contracts import routing
from contracts.audio import AudioUploadedV1
from contracts.chunks import TranscriptionChunkRequestedV1
from contracts.envelope import Event
from contracts.errors import ContractError, ErrorCode, RefusalCode
from contracts.routing import decode_event
from contracts.transcription import TranscriptionFailedV1
from scribe_runtime.amqp import (
    HEADER_DEAD_LETTER_CODE,
    HEADER_DEAD_LETTER_REASON,
    HEADER_DEAD_LETTERED_AT,
    Delivery,
    delivery_count,
    header_text,
    latest_death,
    text,
)
from scribe_runtime.topology import TRANSCRIBER_QUEUE

log = structlog.get_logger(__name__)

_NAMESPACE: Final = uuid.UUID("6f1c1d1e-4d55-4c1b-9a59-3d4c0f8e5a11")
_MAX_MESSAGE: Final = 4000
_REFUSALS: Final = frozenset(RefusalCode)

Publish = Callable[[Event], Awaitable[None]]

PUBLISHES: tuple[type[Event], ...] = (TranscriptionFailedV1,)
"""Every event the watcher publishes (the indexer's composition root declares them)."""


def chunk_failure_event_id(item: TranscriptionChunkRequestedV1) -> uuid.UUID:
    """The one failure of a long job by a dead chunk, whichever of its chunks died."""
    return uuid.uuid5(_NAMESPACE, f"chunks|{item.tenant_id}|{item.job_id}")


def explain(headers: Mapping[str, Any], queue: str) -> tuple[str, str, int]:
    """(cause, human reason, deliveries) of a dead letter, from our headers or `x-death`."""
    code = header_text(headers, HEADER_DEAD_LETTER_CODE)
    if code is not None:
        reason = header_text(headers, HEADER_DEAD_LETTER_REASON) or ""
        return code, f"{code}: {reason}", 1 + delivery_count(headers)
    death = latest_death(headers)
    if death is None:
        return "unknown", "dead-lettered for an unrecorded reason", 1
    deliveries = 1 + delivery_count(headers)
    if death.reason == "delivery_limit":
        why = (
            f"delivery_limit: the job failed or crashed its worker on every delivery "
            f"(limit {TRANSCRIBER_QUEUE.delivery_limit} redeliveries); "
            f"the message is in {routing.dead_letter_queue(queue)}"
        )
        deliveries = max(deliveries, TRANSCRIBER_QUEUE.delivery_limit + 1)
    else:
        why = f"{death.reason}: dead-lettered by RabbitMQ from {death.queue}"
    return f"rabbitmq_{death.reason}", why, deliveries


def failure_event_id(upload: AudioUploadedV1, headers: Mapping[str, Any]) -> uuid.UUID:
    """Stable per death: the same dead letter redelivered gives the same id."""
    death = latest_death(headers)
    when = headers.get(HEADER_DEAD_LETTERED_AT) or (death.time if death else None)
    count = "" if death is None or death.count is None else death.count
    return uuid.uuid5(_NAMESPACE, f"{upload.event_id}|{text(when)}|{count}")


class DeadLetterWatcher:
    """Turns each dead-lettered upload into `transcription.failed.v1` (`dead_lettered`)."""

    def __init__(self, publish: Publish, producer: str) -> None:
        self._publish = publish
        self._producer = producer

    async def on_dead_letter(self, delivery: Delivery) -> None:
        """Publish the job's failure, then return (acked); raise to have it redelivered."""
        headers = delivery.headers
        try:
            upload = decode_event(delivery.body, delivery.type)
        except ContractError as exc:
            # Never a job: a malformed message was refused before anyone accepted it.
            log.info(
                "dead_letter_without_job",
                message_id=delivery.message_id,
                message_type=delivery.type,
                reason=exc.reason[:200],
            )
            return
        # Dead letters are routed by the queue they died in: the intake or a pool's queue.
        queue = delivery.routing_key or TRANSCRIBER_QUEUE.name
        if isinstance(upload, TranscriptionChunkRequestedV1):
            await self._chunk_died(upload, headers, queue)
            return
        if not isinstance(upload, AudioUploadedV1):
            log.info(
                "dead_letter_without_job",
                message_id=delivery.message_id,
                message_type=delivery.type,
            )
            return
        cause, reason, deliveries = explain(headers, queue)
        if cause in _REFUSALS:
            # The transcriber refused the event itself (another tenant's, a conflicting
            # re-upload): the job it names, if any, is not this event's to end.
            log.info(
                "dead_letter_refused_event",
                message_id=delivery.message_id,
                job_id=str(upload.job_id),
                cause=cause,
            )
            return
        failed = TranscriptionFailedV1(
            event_id=failure_event_id(upload, headers),
            job_id=upload.job_id,
            tenant_id=upload.tenant_id,
            correlation_id=upload.correlation_id,
            producer=self._producer,
            job_fingerprint=upload.job_fingerprint(),
            code=ErrorCode.DEAD_LETTERED,
            message=f"dead-lettered ({reason})"[:_MAX_MESSAGE],
            # An operator can replay it once the cause is fixed (`scribe dlq replay`).
            retryable=True,
            attempts=deliveries,
        )
        await self._publish(failed)
        log.warning(
            "dead_lettered_job_failed",
            job_id=str(upload.job_id),
            correlation_id=str(upload.correlation_id) if upload.correlation_id else None,
            cause=cause,
            attempts=deliveries,
            event_id=str(failed.event_id),
        )

    async def _chunk_died(
        self, item: TranscriptionChunkRequestedV1, headers: Mapping[str, Any], queue: str
    ) -> None:
        cause, reason, deliveries = explain(headers, queue)
        if cause in _REFUSALS:
            log.info(
                "dead_letter_refused_event",
                job_id=str(item.job_id),
                chunk_index=item.chunk.index,
                cause=cause,
            )
            return
        failed = TranscriptionFailedV1(
            event_id=chunk_failure_event_id(item),
            job_id=item.job_id,
            tenant_id=item.tenant_id,
            correlation_id=item.correlation_id,
            producer=self._producer,
            job_fingerprint=item.job_fingerprint,
            code=ErrorCode.DEAD_LETTERED,
            message=(f"dead-lettered: chunk {item.chunk.index} of {item.chunk_count} ({reason})")[
                :_MAX_MESSAGE
            ],
            retryable=True,
            attempts=deliveries,
        )
        await self._publish(failed)
        log.warning(
            "dead_lettered_job_failed",
            job_id=str(item.job_id),
            chunk_index=item.chunk.index,
            cause=cause,
            attempts=deliveries,
            event_id=str(failed.event_id),
        )
