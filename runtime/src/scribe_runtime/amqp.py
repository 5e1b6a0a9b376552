"""AMQP on Scribe's terms: header names, what a delivery says, and the one raw republish.

Everything about a message that is not its event lives here: the `x-scribe-*` headers we
write, RabbitMQ's own bookkeeping headers (`x-delivery-count`, `x-death`) and how to read
them, and `republish`, the confirmed copy of a message that dead-lettering and retry
staging share. Application handlers get a `Delivery`, a plain frozen value built once per
message, never FastStream's `RabbitMessage`: FastStream's types stay in this module and
`scribe_runtime.consumer`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Final

from faststream.rabbit import RabbitBroker, RabbitExchange

from scribe_runtime.failover import channel_renewer, publish_confirmed

if TYPE_CHECKING:
    from aio_pika.abc import AbstractIncomingMessage
    from faststream.rabbit.message import RabbitMessage

PUBLISH_TIMEOUT_SECONDS: Final = 10.0
"""How long a confirmed publish may wait for the broker's confirm."""

# Headers Scribe writes. One definition each: nothing else spells them.
HEADER_TENANT_ID: Final = "x-scribe-tenant-id"
HEADER_JOB_ID: Final = "x-scribe-job-id"
HEADER_PRODUCER: Final = "x-scribe-producer"
HEADER_DEAD_LETTER_CODE: Final = "x-scribe-dead-letter-code"
"""Why a consumer dead-lettered a message: a stable code (`malformed_event`, ...)."""
HEADER_DEAD_LETTER_REASON: Final = "x-scribe-dead-letter-reason"
"""Why, for a human."""
HEADER_DEAD_LETTER_QUEUE: Final = "x-scribe-dead-letter-queue"
"""The queue whose consumer dead-lettered it."""
HEADER_DEAD_LETTERED_AT: Final = "x-scribe-dead-lettered-at"
"""When a consumer dead-lettered the message (ISO UTC): tells one death from the next."""
HEADER_ORIGINAL_ROUTING_KEY: Final = "x-scribe-original-routing-key"
"""Where a copied message was first routed (retry stages and DLQs change the key)."""
HEADER_RETRY: Final = "x-scribe-retry"
"""How many retry stages a message has been through (absent on the first try)."""
HEADER_REPLAYED_FROM: Final = "x-scribe-replayed-from"
"""The DLQ `scribe dlq replay` took the message from."""
HEADER_POOL: Final = "x-scribe-pool"
"""The model pool the router sent a job to (`scribe_runtime.topology.pool_routing_key`)."""

DEAD_LETTER_HEADERS: Final = frozenset(
    {
        HEADER_DEAD_LETTER_CODE,
        HEADER_DEAD_LETTER_REASON,
        HEADER_DEAD_LETTER_QUEUE,
        HEADER_DEAD_LETTERED_AT,
    }
)
"""What a consumer's dead-lettering adds; a replayed message sheds them."""

# RabbitMQ's own bookkeeping.
X_DELIVERY_COUNT: Final = "x-delivery-count"
X_DEATH: Final = "x-death"
BROKER_HEADERS: Final = frozenset(
    {X_DEATH, X_DELIVERY_COUNT, "x-first-death-exchange", "x-first-death-queue",
     "x-first-death-reason"}
)  # fmt: skip
"""RabbitMQ's per-life headers: a copied message (retry, replay) starts a fresh life."""


def text(value: object) -> str:
    """A header value as text (AMQP tables carry bytes for long strings)."""
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def header_text(headers: Mapping[str, Any], key: str) -> str | None:
    """`headers[key]` as text, or None when absent."""
    value = headers.get(key)
    return None if value is None else text(value)


def _count(value: object) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool):
        return max(0, value)
    if isinstance(value, (str, bytes)) and value.isdigit():
        return int(value)
    return None


def delivery_count(headers: Mapping[str, Any]) -> int:
    """Earlier deliveries of this message, as a quorum queue counts them (0 if none)."""
    return _count(headers.get(X_DELIVERY_COUNT)) or 0


def attempt(headers: Mapping[str, Any], redelivered: bool) -> int:
    """1 on first delivery; quorum queues count earlier deliveries in `x-delivery-count`."""
    count = _count(headers.get(X_DELIVERY_COUNT))
    if count is not None:
        return 1 + count
    # Classic queues keep no count: at least say it is not the first try.
    return 2 if redelivered else 1


def retries_done(headers: Mapping[str, Any]) -> int:
    """How many retry stages the message went through before this delivery."""
    return _count(headers.get(HEADER_RETRY)) or 0


@dataclass(frozen=True, slots=True)
class Death:
    """RabbitMQ's record of a message's latest death (the first `x-death` entry)."""

    reason: str
    queue: str
    count: int | None
    time: object
    routing_keys: tuple[str, ...]


def latest_death(headers: Mapping[str, Any]) -> Death | None:
    """The most recent `x-death` entry (RabbitMQ keeps it first), or None."""
    deaths = headers.get(X_DEATH)
    if not (isinstance(deaths, list) and deaths and isinstance(deaths[0], dict)):
        return None
    death = deaths[0]
    keys = death.get("routing-keys")
    return Death(
        reason=text(death.get("reason")),
        queue=text(death.get("queue")),
        count=_count(death.get("count")),
        time=death.get("time"),
        routing_keys=tuple(text(k) for k in keys) if isinstance(keys, list) else (),
    )


def original_routing_key(headers: Mapping[str, Any], message_type: str | None) -> str | None:
    """Where the message was going before it was copied or died: our header, else
    RabbitMQ's `x-death`, else its AMQP type (= its routing key, by contract)."""
    ours = header_text(headers, HEADER_ORIGINAL_ROUTING_KEY)
    if ours:
        return ours
    death = latest_death(headers)
    if death is not None and death.routing_keys:
        return death.routing_keys[0]
    return message_type


@dataclass(frozen=True, slots=True)
class Delivery:
    """One message as a handler sees it: the body and the properties that matter."""

    body: bytes
    message_id: str | None = None
    type: str | None = None
    routing_key: str = ""
    headers: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    redelivered: bool = False
    correlation_id: str | None = None
    timestamp: datetime | None = None
    content_type: str | None = None

    @property
    def attempt(self) -> int:
        """Which delivery of the message this is (1 = the first)."""
        return attempt(self.headers, self.redelivered)

    @classmethod
    def of(cls, raw: AbstractIncomingMessage) -> Delivery:
        """The delivery of an aio-pika message (what FastStream's `raw_message` is)."""
        return cls(
            body=raw.body,
            message_id=raw.message_id,
            type=raw.type,
            routing_key=raw.routing_key or "",
            # A read-only view, not a copy: built for every message on the hot path.
            headers=MappingProxyType(raw.headers or {}),
            redelivered=bool(raw.redelivered),
            correlation_id=raw.correlation_id,
            timestamp=raw.timestamp,
            content_type=raw.content_type,
        )


async def as_delivery(message: RabbitMessage) -> Delivery:
    """FastStream's decoder, replaced: the handler's one argument is the `Delivery`.

    FastStream's own decoder parses `application/json` bodies before any handler runs: a
    body that is not JSON raised inside FastStream, was redelivered up to the delivery
    limit and dead-lettered without a reason; and it parsed every body a second time.
    With the broker's `apply_types=False` (see `make_broker`), what the decoder returns is
    the handler's one argument: no dependency injection per message, so the handler
    alone judges the bytes.
    """
    return Delivery.of(message.raw_message)


async def republish(
    broker: RabbitBroker,
    delivery: Delivery,
    *,
    exchange: RabbitExchange | str,
    routing_key: str,
    headers: Mapping[str, Any],
) -> None:
    """Copy a delivered message, body and properties kept, persistently; returns once the
    broker confirmed it (the caller then acks the original: a crash in between
    redelivers it, at least once, never lost)."""
    await publish_confirmed(
        lambda: broker.publish(
            delivery.body,
            exchange=exchange,
            routing_key=routing_key,
            persist=True,
            mandatory=True,
            message_id=delivery.message_id,
            message_type=delivery.type,
            correlation_id=delivery.correlation_id,
            content_type=delivery.content_type,
            timestamp=delivery.timestamp,
            headers=dict(headers),
            timeout=PUBLISH_TIMEOUT_SECONDS,
        ),
        renewer=channel_renewer(broker),
    )


class UnroutableError(Exception):
    """The broker returned a mandatory message: no queue is bound to its routing key."""


async def route_copy(
    broker: RabbitBroker,
    delivery: Delivery,
    *,
    exchange: RabbitExchange | str,
    routing_key: str,
    headers: Mapping[str, Any],
) -> None:
    """`republish` to a key that may have no queue: `UnroutableError` when none took it.

    The copy starts a fresh life (RabbitMQ's per-life headers dropped), so its consumer
    counts its own deliveries.
    """
    from aiormq.exceptions import PublishError

    fresh = {k: v for k, v in headers.items() if k not in BROKER_HEADERS}
    try:
        await republish(broker, delivery, exchange=exchange, routing_key=routing_key, headers=fresh)
    except PublishError as exc:
        raise UnroutableError(f"no queue is bound to {routing_key!r}") from exc
