"""Transient failures: retry through TTL'd retry queues with backoff, then the DLQ.

A handler raises `TransientError` when its dependency (the database, the media store) is
briefly gone. The consumer then republishes the message to `<queue>.retry.<n>`, whose TTL
is the n-th backoff delay and which dead-letters back to `<queue>`; after the last stage
the message goes to `<queue>.dlq` with code `retries_exhausted`. Waiting in a queue, not
in the process, keeps the consumer free for other messages, survives a worker restart,
and does not count against the delivery limit (which is kept for crash loops).
"""

from __future__ import annotations

from typing import Any, Final

import structlog
from faststream.rabbit import RabbitBroker
from faststream.rabbit.message import RabbitMessage

from scribe_runtime.messaging import PUBLISH_TIMEOUT_SECONDS, dead_letter
from scribe_runtime.topology import RETRY_HEADER, QueueSpec

log = structlog.get_logger(__name__)

RETRIES_EXHAUSTED: Final = "retries_exhausted"
"""Dead-letter code of a message that failed transiently through every retry stage."""

# RabbitMQ's own bookkeeping: a retried message starts a fresh life in the queue.
_DROPPED_HEADERS: Final = frozenset(
    {"x-death", "x-delivery-count", "x-first-death-exchange", "x-first-death-queue",
     "x-first-death-reason"}
)  # fmt: skip


class TransientError(Exception):
    """A failure that may pass by itself (a dependency restarting); the message is retried."""


def retries_done(message: RabbitMessage) -> int:
    """How many retry stages the message went through before this delivery."""
    value = (message.raw_message.headers or {}).get(RETRY_HEADER)
    if isinstance(value, int) and not isinstance(value, bool):
        return max(0, value)
    if isinstance(value, (str, bytes)) and value.isdigit():
        return int(value)
    return 0


async def retry_later(
    broker: RabbitBroker, message: RabbitMessage, spec: QueueSpec, error: BaseException
) -> None:
    """Send the message to its next retry stage, or to the DLQ after the last one.

    Returns once the broker confirmed the copy; the caller then acks the original (a crash
    in between redelivers it: at least once, never lost).
    """
    raw = message.raw_message
    done = retries_done(message)
    if done >= len(spec.retry_delays):
        await dead_letter(
            broker,
            message,
            queue=spec.name,
            code=RETRIES_EXHAUSTED,
            reason=f"transient failure on every try ({done + 1} tries over "
            f"{sum(spec.retry_delays):g} s of backoff); last error: {error!r}",
        )
        return
    stage = done + 1
    headers: dict[str, Any] = {
        k: v for k, v in (raw.headers or {}).items() if k not in _DROPPED_HEADERS
    }
    headers[RETRY_HEADER] = stage
    headers.setdefault("x-scribe-original-routing-key", raw.routing_key or "")
    await broker.publish(
        raw.body,
        exchange="",
        routing_key=spec.retry_queue(stage),
        persist=True,
        mandatory=True,
        message_id=raw.message_id,
        message_type=raw.type,
        correlation_id=raw.correlation_id,
        content_type=raw.content_type,
        timestamp=raw.timestamp,
        headers=headers,
        timeout=PUBLISH_TIMEOUT_SECONDS,
    )
    log.warning(
        "message_retry_scheduled",
        queue=spec.name,
        retry=stage,
        of=len(spec.retry_delays),
        delay_s=spec.retry_delays[stage - 1],
        error=repr(error),
        message_id=raw.message_id,
        message_type=raw.type,
    )
