"""One way to consume events: decode by contract, dead-letter what is not, bind log context.

Every service registers its handlers through `subscribe_events`, so a malformed body, an
unknown type or an unknown version always ends in the queue's `.dlq` with the reason in a
header, and the consumer keeps going. Handlers get the decoded event and the message's
`Delivery` (`scribe_runtime.amqp`), never FastStream's message.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import structlog
from faststream import AckPolicy
from faststream.rabbit import Channel, RabbitBroker

from contracts.envelope import Event
from contracts.errors import ContractError, MalformedEventError
from contracts.routing import decode_event
from scribe_runtime import metrics
from scribe_runtime.amqp import Delivery, as_delivery
from scribe_runtime.asyncapi import record_consumer
from scribe_runtime.messaging import dead_letter
from scribe_runtime.retry import DeferredError, TransientError, defer, retry_later
from scribe_runtime.topology import QueueSpec

log = structlog.get_logger(__name__)

E = TypeVar("E", bound=Event)
Handler = Callable[[E, Delivery], Awaitable[None]]


def subscribe_events(
    broker: RabbitBroker,
    spec: QueueSpec,
    accepts: tuple[type[E], ...],
    handler: Handler[E],
    *,
    prefetch: int | None = None,
    validate: Callable[[E], str | None] | None = None,
) -> Any:
    """Register `handler` for the events of `accepts` arriving on `spec`'s queue.

    A contract violation (or a `validate` that returns a reason) is dead-lettered and
    acked. A `TransientError` from `handler` sends the message to its next retry stage
    (backoff), or to the DLQ after the last, and acks it; a `DeferredError` sends it
    through the first stage without counting a retry. Any other exception nacks the
    message for redelivery; the queue's delivery limit moves a crash loop to the DLQ.
    """

    # Children resolved once: `labels()` per message would hash and lock for nothing.
    handling_seconds = metrics.EVENT_HANDLING_SECONDS.labels(spec.name)

    async def on_message(delivery: Delivery) -> None:
        try:
            event = decode_event(delivery.body, delivery.type)
            if not isinstance(event, accepts):
                raise MalformedEventError(
                    f"{event.routing_key()} is not consumed by {spec.name}; "
                    f"expected one of {[c.routing_key() for c in accepts]}"
                )
            reason = validate(event) if validate else None
            if reason:
                raise MalformedEventError(reason)
        except ContractError as exc:
            await dead_letter(broker, delivery, queue=spec.name, code=exc.code, reason=exc.reason)
            metrics.EVENTS_CONSUMED.labels(
                spec.name, metrics.type_label(delivery.type), "rejected"
            ).inc()
            return
        started = time.perf_counter()
        with structlog.contextvars.bound_contextvars(
            job_id=str(event.job_id),
            correlation_id=str(event.correlation_id) if event.correlation_id else None,
            tenant_id=event.tenant_id,
        ):
            try:
                await handler(event, delivery)
            except TransientError as exc:
                # Acked once the copy is confirmed in its retry stage (or the DLQ).
                await retry_later(broker, delivery, spec, exc)
                return
            except DeferredError as exc:
                await defer(broker, delivery, spec, exc)
                metrics.EVENTS_CONSUMED.labels(spec.name, event.message_type, "deferred").inc()
                return
            except Exception:
                metrics.EVENTS_CONSUMED.labels(spec.name, event.message_type, "failed").inc()
                log.exception(
                    "event_handler_failed",
                    event_type=event.message_type,
                    event_id=str(event.event_id),
                    redelivered=delivery.redelivered,
                )
                raise
            elapsed = time.perf_counter() - started
            handling_seconds.observe(elapsed)
            metrics.EVENTS_CONSUMED.labels(spec.name, event.message_type, "handled").inc()
            log.debug(
                "event_handled",
                event_type=event.message_type,
                duration_ms=round(elapsed * 1000, 2),
            )

    on_message.__name__ = f"on_{spec.name.replace('.', '_').replace('-', '_')}"
    channel = Channel(prefetch_count=prefetch) if prefetch is not None else None
    record_consumer(broker, spec.name, accepts)
    return broker.subscriber(
        spec.rabbit_queue(),
        channel=channel,
        ack_policy=AckPolicy.NACK_ON_ERROR,
        decoder=as_delivery,
        title=spec.name,
        description=f"Quorum queue `{spec.name}`, bound by "
        f"{', '.join(f'`{key}`' for key in spec.bindings)}; delivery limit "
        f"{spec.delivery_limit}, then `{spec.dead_letter_queue}`.",
    )(on_message)


def subscribe_deliveries(
    broker: RabbitBroker,
    spec: QueueSpec,
    handler: Callable[[Delivery], Awaitable[None]],
    *,
    description: str,
) -> Any:
    """Register `handler` for every message on `spec`'s queue, undecoded (a dead letter may
    be anything, JSON or not). Returning acks; raising nacks for redelivery."""

    async def on_delivery(delivery: Any) -> None:  # `Any`: documented as any payload
        await handler(delivery)

    on_delivery.__name__ = f"on_{spec.name.replace('.', '_').replace('-', '_')}"
    return broker.subscriber(
        spec.rabbit_queue(),
        ack_policy=AckPolicy.NACK_ON_ERROR,
        decoder=as_delivery,
        title=spec.name,
        description=description,
    )(on_delivery)
