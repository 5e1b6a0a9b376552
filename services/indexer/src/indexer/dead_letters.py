"""The dead-letter watcher: a job whose upload dies in the transcriber's queue ends `failed`.

`scribe.dlx` routes each dead letter of `transcriber.audio-uploaded` both to that queue's
DLQ (kept for `scribe dlq list|replay`) and to `indexer.dead-letters`, consumed here. For
each one that is a valid `audio.uploaded.v1`, the watcher publishes
`transcription.failed.v1` with code `dead_lettered` and the reason (RabbitMQ's `x-death`
or the consumer's own headers), so the projection and every downstream subscriber hear the
job's end like any other failure. A replayed job that then completes still ends
`completed` (the projection ranks it above `failed`).

The failure's event id is derived from the dead letter's identity and time of death, so a
redelivered dead letter publishes the same event (deduplicated) while a replayed job that
dies again publishes a new one.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Any, Final

import structlog
from faststream import AckPolicy
from faststream.rabbit import RabbitBroker
from faststream.rabbit.annotations import RabbitMessage

from contracts import routing
from contracts.audio import AudioUploadedV1
from contracts.envelope import Event
from contracts.errors import ContractError, ErrorCode
from contracts.routing import decode_event
from contracts.transcription import TranscriptionFailedV1
from scribe_runtime.consumer import undecoded
from scribe_runtime.messaging import HEADER_DEAD_LETTERED_AT
from scribe_runtime.topology import DEAD_LETTER_WATCH_QUEUE, TRANSCRIBER_QUEUE

log = structlog.get_logger(__name__)

_NAMESPACE: Final = uuid.UUID("6f1c1d1e-4d55-4c1b-9a59-3d4c0f8e5a11")
_MAX_MESSAGE: Final = 4000

Publish = Callable[[Event], Awaitable[None]]


def _text(value: object) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def _latest_death(headers: dict[str, Any]) -> dict[str, Any] | None:
    deaths = headers.get("x-death")
    if isinstance(deaths, list) and deaths and isinstance(deaths[0], dict):
        return deaths[0]  # RabbitMQ keeps the most recent death first
    return None


def explain(headers: dict[str, Any], queue: str) -> tuple[str, str, int]:
    """(cause, human reason, deliveries) of a dead letter, from our headers or `x-death`."""
    code = headers.get(routing.HEADER_DEAD_LETTER_CODE)
    if code is not None:
        reason = _text(headers.get(routing.HEADER_DEAD_LETTER_REASON, ""))
        return _text(code), f"{_text(code)}: {reason}", 1 + _delivery_count(headers)
    death = _latest_death(headers)
    if death is None:
        return "unknown", "dead-lettered for an unrecorded reason", 1
    why = _text(death.get("reason"))
    deliveries = 1 + _delivery_count(headers)
    if why == "delivery_limit":
        text = (
            f"delivery_limit: the job failed or crashed its worker on every delivery "
            f"(limit {TRANSCRIBER_QUEUE.delivery_limit} redeliveries); "
            f"the message is in {routing.dead_letter_queue(queue)}"
        )
        deliveries = max(deliveries, TRANSCRIBER_QUEUE.delivery_limit + 1)
    else:
        text = f"{why}: dead-lettered by RabbitMQ from {_text(death.get('queue'))}"
    return f"rabbitmq_{why}", text, deliveries


def _delivery_count(headers: dict[str, Any]) -> int:
    count = headers.get("x-delivery-count")
    return count if isinstance(count, int) and not isinstance(count, bool) else 0


def failure_event_id(upload: AudioUploadedV1, headers: dict[str, Any]) -> uuid.UUID:
    """Stable per death: the same dead letter redelivered gives the same id."""
    death = _latest_death(headers) or {}
    when = headers.get(HEADER_DEAD_LETTERED_AT) or death.get("time")
    key = f"{upload.event_id}|{_text(when)}|{_text(death.get('count', ''))}"
    return uuid.uuid5(_NAMESPACE, key)


class DeadLetterWatcher:
    """Turns each dead-lettered upload into `transcription.failed.v1` (`dead_lettered`)."""

    def __init__(self, publish: Publish, producer: str) -> None:
        self._publish = publish
        self._producer = producer

    async def on_dead_letter(self, message: RabbitMessage) -> None:
        """Publish the job's failure, then return (acked); raise to have it redelivered."""
        raw = message.raw_message
        headers = dict(raw.headers or {})
        try:
            upload = decode_event(raw.body, raw.type)
        except ContractError as exc:
            # Never a job: a malformed message was refused before anyone accepted it.
            log.info(
                "dead_letter_without_job",
                message_id=raw.message_id,
                message_type=raw.type,
                reason=exc.reason[:200],
            )
            return
        if not isinstance(upload, AudioUploadedV1):
            log.info("dead_letter_without_job", message_id=raw.message_id, message_type=raw.type)
            return
        cause, reason, deliveries = explain(headers, TRANSCRIBER_QUEUE.name)
        failed = TranscriptionFailedV1(
            event_id=failure_event_id(upload, headers),
            job_id=upload.job_id,
            tenant_id=upload.tenant_id,
            correlation_id=upload.correlation_id,
            producer=self._producer,
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


def subscribe_dead_letters(broker: RabbitBroker, watcher: DeadLetterWatcher) -> Any:
    """Consume `indexer.dead-letters` with the watcher (ack after the failure is confirmed)."""

    async def on_indexer_dead_letters(message: RabbitMessage) -> None:
        await watcher.on_dead_letter(message)

    return broker.subscriber(
        DEAD_LETTER_WATCH_QUEUE.rabbit_queue(),
        ack_policy=AckPolicy.NACK_ON_ERROR,
        decoder=undecoded,  # a dead letter may be anything, JSON or not
        title=DEAD_LETTER_WATCH_QUEUE.name,
        description=f"Quorum queue `{DEAD_LETTER_WATCH_QUEUE.name}`, bound to `scribe.dlx` by "
        f"`{TRANSCRIBER_QUEUE.name}`: a copy of each upload dead-lettered there, published "
        "again as `transcription.failed.v1` with code `dead_lettered`.",
    )(on_indexer_dead_letters)
