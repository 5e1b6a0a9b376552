"""Transient failures: retry through TTL'd retry queues with backoff, then the DLQ.

A handler raises `TransientError` when its dependency (the database, the media store) is
briefly gone. The consumer then republishes the message to `<queue>.retry.<n>`, whose TTL
is the n-th backoff delay and which dead-letters back to `<queue>`; after the last stage
the message goes to `<queue>.dlq` with code `retries_exhausted`. Waiting in a queue, not
in the process, keeps the consumer free for other messages, survives a worker restart,
and does not count against the delivery limit (which is kept for crash loops).
"""

from __future__ import annotations

from typing import Final

import structlog
from faststream.rabbit import RabbitBroker

from scribe_runtime.amqp import (
    BROKER_HEADERS,
    HEADER_ORIGINAL_ROUTING_KEY,
    HEADER_RETRY,
    Delivery,
    republish,
    retries_done,
)
from scribe_runtime.messaging import dead_letter
from scribe_runtime.topology import QueueSpec

log = structlog.get_logger(__name__)

RETRIES_EXHAUSTED: Final = "retries_exhausted"
"""Dead-letter code of a message that failed transiently through every retry stage."""


class TransientError(Exception):
    """A failure that may pass by itself (a dependency restarting); the message is retried."""


class DeferredError(Exception):
    """Not a failure, not now: the handler's share of something is taken (another
    tenant's work must not wait behind it). The message goes through the first retry
    stage and comes back without spending one of its retries."""


async def retry_later(
    broker: RabbitBroker, delivery: Delivery, spec: QueueSpec, error: BaseException
) -> None:
    """Send the message to its next retry stage, or to the DLQ after the last one.

    Returns once the broker confirmed the copy; the caller then acks the original (a crash
    in between redelivers it: at least once, never lost).
    """
    done = retries_done(delivery.headers)
    if done >= len(spec.retry_delays):
        await dead_letter(
            broker,
            delivery,
            queue=spec.name,
            code=RETRIES_EXHAUSTED,
            reason=f"transient failure on every try ({done + 1} tries over "
            f"{sum(spec.retry_delays):g} s of backoff); last error: {error!r}",
        )
        return
    stage = done + 1
    headers = _fresh_headers(delivery)
    headers[HEADER_RETRY] = stage
    await republish(
        broker, delivery, exchange="", routing_key=spec.retry_queue(stage), headers=headers
    )
    log.warning(
        "message_retry_scheduled",
        queue=spec.name,
        retry=stage,
        of=len(spec.retry_delays),
        delay_s=spec.retry_delays[stage - 1],
        error=repr(error),
        message_id=delivery.message_id,
        message_type=delivery.type,
    )


async def defer(
    broker: RabbitBroker, delivery: Delivery, spec: QueueSpec, error: BaseException
) -> None:
    """Send the message through the first retry stage as it is: its retry count unchanged.

    Returns once the broker confirmed the copy; the caller then acks the original. A
    message deferred again and again waits again and again; it never reaches the DLQ
    this way, since deferring is what its handler asks for while it cannot start.
    """
    await republish(
        broker,
        delivery,
        exchange="",
        routing_key=spec.retry_queue(1),
        headers=_fresh_headers(delivery),
    )
    log.info(
        "message_deferred",
        queue=spec.name,
        delay_s=spec.retry_delays[0],
        reason=str(error),
        message_id=delivery.message_id,
        message_type=delivery.type,
    )


def _fresh_headers(delivery: Delivery) -> dict[str, object]:
    """The message's headers for its copy in a retry stage: RabbitMQ's bookkeeping dropped
    (the copy starts a fresh life in the queue), where it was going kept."""
    headers = {k: v for k, v in delivery.headers.items() if k not in BROKER_HEADERS}
    headers.setdefault(HEADER_ORIGINAL_ROUTING_KEY, delivery.routing_key)
    return headers
