"""Publishing events and dead-lettering messages the way the contract says."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Final

import structlog
from faststream.rabbit import Channel, RabbitBroker

from contracts import routing
from contracts.envelope import Event
from scribe_runtime import metrics
from scribe_runtime.amqp import (
    HEADER_DEAD_LETTER_CODE,
    HEADER_DEAD_LETTER_QUEUE,
    HEADER_DEAD_LETTER_REASON,
    HEADER_DEAD_LETTERED_AT,
    HEADER_JOB_ID,
    HEADER_ORIGINAL_ROUTING_KEY,
    HEADER_PRODUCER,
    HEADER_TENANT_ID,
    PUBLISH_TIMEOUT_SECONDS,
    Delivery,
    republish,
)
from scribe_runtime.failover import (
    FAILOVER_RECONNECT_SECONDS,
    broker_urls,
    channel_renewer,
    connection_class,
    publish_confirmed,
)
from scribe_runtime.topology import DEAD_LETTER_EXCHANGE, EVENTS_EXCHANGE, event_routing_key

log = structlog.get_logger(__name__)

_MAX_REASON: Final = 1000


def make_broker(
    amqp_url: str,
    *,
    service: str,
    prefetch: int | None = None,
    graceful_timeout: float = 30.0,
) -> RabbitBroker:
    """A FastStream broker with publisher confirms and returns of unroutable messages raised.

    `broker.stop()` stops taking messages, waits up to `graceful_timeout` seconds for the
    ones in hand, then closes: anything still unacked goes back to the queue.

    `amqp_url` may list a cluster's nodes, comma-separated (`scribe_runtime.failover`):
    the connection then goes to each in turn until one answers, at start and after a
    node is lost. With one address or several, a connection lost while its channels are
    being restored is dropped and made again (`failover.FailoverConnection`), never left
    waiting for itself. The caller has already reached one (`declare_topology` fails fast), so
    the broker waits for a node rather than failing on the first that does not answer.
    """
    urls = broker_urls(amqp_url)
    broker = RabbitBroker(
        urls[0],
        app_id=service,
        default_channel=Channel(
            publisher_confirms=True, on_return_raises=True, prefetch_count=prefetch
        ),
        # FastStream logs two lines per message at INFO; ours say more, once.
        log_level=10,
        graceful_timeout=graceful_timeout,
        # Handlers take a `Delivery` as their one argument (`amqp.as_delivery`): resolving
        # an injected `RabbitMessage` per message cost a worker-thread hop (DESIGN.md).
        apply_types=False,
        fail_fast=len(urls) == 1,
        reconnect_interval=FAILOVER_RECONNECT_SECONDS if len(urls) > 1 else 5.0,
    )
    # One address too: the connection's restore must not hang there either (`failover`).
    # FastStream 0.7 passes its connection arguments to `aio_pika.connect_robust` as they
    # are and has no parameter for the connection class (checked in 0.7.8).
    broker._connection_kwargs["connection_class"] = connection_class(urls)
    return broker


def event_headers(event: Event) -> dict[str, Any]:
    """AMQP headers mirroring the envelope, for routing and filtering without the body."""
    return {
        HEADER_TENANT_ID: event.tenant_id,
        HEADER_JOB_ID: str(event.job_id),
        HEADER_PRODUCER: event.producer,
    }


def event_properties(event: Event) -> dict[str, Any]:
    """The AMQP properties of an event's message, as the contract fixes them."""
    return {
        "message_id": str(event.event_id),
        "correlation_id": str(event.correlation_id) if event.correlation_id else None,
        "timestamp": event.occurred_at,
        "headers": event_headers(event),
        "timeout": PUBLISH_TIMEOUT_SECONDS,
    }


async def publish_event(broker: RabbitBroker, event: Event) -> None:
    """Publish any event to `scribe.events`, undeclared; returns once the broker confirmed it.

    For tools and tests that publish in a service's stead (`scribe publish`, benchmarks).
    A service publishes through its `scribe_runtime.publishing.EventPublisher`, which
    declares each event so the service's AsyncAPI document lists it.
    """
    body = event.model_dump_json().encode()
    try:
        await publish_confirmed(
            lambda: broker.publish(
                body,
                exchange=EVENTS_EXCHANGE,
                routing_key=event_routing_key(event),
                persist=True,
                mandatory=True,
                message_type=event.message_type,
                content_type=routing.CONTENT_TYPE,
                **event_properties(event),
            ),
            renewer=channel_renewer(broker),
        )
    except BaseException:
        metrics.EVENT_PUBLISH_FAILURES.labels(event.message_type).inc()
        raise
    metrics.EVENTS_PUBLISHED.labels(event.message_type).inc()


async def dead_letter(
    broker: RabbitBroker, delivery: Delivery, *, queue: str, code: str, reason: str
) -> None:
    """Copy a message to `<queue>.dlq` with the reason in its headers (the caller then acks)."""
    headers = dict(delivery.headers)
    headers[HEADER_DEAD_LETTER_CODE] = code
    headers[HEADER_DEAD_LETTER_REASON] = reason[:_MAX_REASON]
    headers[HEADER_DEAD_LETTER_QUEUE] = queue
    headers[HEADER_DEAD_LETTERED_AT] = datetime.now(UTC).isoformat()
    headers.setdefault(HEADER_ORIGINAL_ROUTING_KEY, delivery.routing_key)
    await republish(
        broker, delivery, exchange=DEAD_LETTER_EXCHANGE, routing_key=queue, headers=headers
    )
    metrics.EVENTS_DEAD_LETTERED.labels(queue, code).inc()
    log.warning(
        "message_dead_lettered",
        queue=queue,
        code=code,
        reason=reason[:_MAX_REASON],
        message_id=delivery.message_id,
        message_type=delivery.type,
    )
