"""Dead letters: list them with their reasons, replay them to their original routing key."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass

import aio_pika
from aio_pika.abc import AbstractIncomingMessage

from scribe_runtime import failover
from scribe_runtime.amqp import (
    BROKER_HEADERS,
    DEAD_LETTER_HEADERS,
    HEADER_DEAD_LETTER_CODE,
    HEADER_DEAD_LETTER_REASON,
    HEADER_JOB_ID,
    HEADER_ORIGINAL_ROUTING_KEY,
    HEADER_REPLAYED_FROM,
    HEADER_RETRY,
    header_text,
    latest_death,
)
from scribe_runtime.amqp import original_routing_key as _original_routing_key
from scribe_runtime.topology import POOL_QUEUE_PREFIX, QUEUES, QueueSpec

_SHED_ON_REPLAY = BROKER_HEADERS | DEAD_LETTER_HEADERS | {HEADER_RETRY}
"""RabbitMQ's bookkeeping, our retry count and death record: a replayed message starts a
fresh life."""


@dataclass(frozen=True)
class DeadLetter:
    """What an operator needs to know about one dead-lettered message."""

    queue: str
    message_id: str | None
    message_type: str | None
    job_id: str | None
    routing_key: str | None
    code: str
    reason: str
    count: int


def original_routing_key(message: AbstractIncomingMessage) -> str | None:
    """Where the message was going before it died: our header, else RabbitMQ's x-death."""
    return _original_routing_key(message.headers or {}, message.type)


def describe(queue: str, message: AbstractIncomingMessage) -> DeadLetter:
    """Reason and identity of a dead letter, from our headers or RabbitMQ's `x-death`."""
    headers = dict(message.headers or {})
    code = header_text(headers, HEADER_DEAD_LETTER_CODE)
    reason = header_text(headers, HEADER_DEAD_LETTER_REASON)
    count = 1
    death = latest_death(headers)
    if death is not None:
        code = code or f"rabbitmq_{death.reason}"
        reason = reason or (
            f"dead-lettered by RabbitMQ ({death.reason}) from {death.queue} "
            f"after {death.count} time(s)"
        )
        count = death.count if death.count is not None else 1
    job_id = header_text(headers, HEADER_JOB_ID)
    if job_id is None:
        try:
            body = json.loads(message.body)
            job_id = str(body.get("job_id")) if isinstance(body, dict) else None
        except ValueError:
            job_id = None
    return DeadLetter(
        queue=queue,
        message_id=message.message_id,
        message_type=message.type,
        job_id=job_id,
        routing_key=original_routing_key(message),
        code=code or "unknown",
        reason=reason or "no reason recorded",
        count=count,
    )


def select_queues(name: str | None) -> list[QueueSpec]:
    """The consuming queues whose DLQs to look at (by queue or DLQ name)."""
    if name is None:
        return list(QUEUES)
    chosen = [q for q in QUEUES if name in (q.name, q.dead_letter_queue)]
    queue = name.removesuffix(".dlq")
    if not chosen and queue.startswith(POOL_QUEUE_PREFIX):
        # A pool an operator added (not among the defaults): its queue is named by its model.
        chosen = [QueueSpec(name=queue, bindings=())]
    if not chosen:
        known = ", ".join(q.name for q in QUEUES)
        raise ValueError(f"unknown queue {name!r}; known: {known}")
    return chosen


async def list_dead_letters(amqp_url: str, queues: Iterable[QueueSpec]) -> list[DeadLetter]:
    """Read every dead letter without consuming it (all are requeued when the channel closes)."""
    result: list[DeadLetter] = []
    connection = await failover.connect(amqp_url)
    async with connection:
        for spec in queues:
            channel = await connection.channel()
            queue = await channel.declare_queue(spec.dead_letter_queue, passive=True)
            while (message := await queue.get(no_ack=False, fail=False)) is not None:
                result.append(describe(spec.name, message))
            await channel.close()  # unacked messages go back, in order
    return result


async def replay(
    amqp_url: str, queues: Iterable[QueueSpec], job_ids: set[str] | None = None
) -> list[DeadLetter]:
    """Send dead letters back to the queue they died in, ids and properties kept.

    They go to that queue only (through the default exchange), not through `scribe.events`
    again: the other subscribers already had the event, and replaying one consumer's
    failure should not re-notify them. The original routing key stays in the
    `HEADER_ORIGINAL_ROUTING_KEY` header; consumers decode by the AMQP `type`. Each
    message leaves the DLQ (ack) only after the broker confirmed its replay.
    """
    replayed: list[DeadLetter] = []
    connection = await failover.connect(amqp_url)
    async with connection:
        for spec in queues:
            channel = await connection.channel(publisher_confirms=True)
            exchange = channel.default_exchange
            queue = await channel.declare_queue(spec.dead_letter_queue, passive=True)
            # Only what is there now: a message that dies again while we replay lands back
            # in this DLQ, and must not be picked up and replayed in an endless loop.
            for _ in range(queue.declaration_result.message_count or 0):
                message = await queue.get(no_ack=False, fail=False)
                if message is None:
                    break
                letter = describe(spec.name, message)
                if job_ids is not None and letter.job_id not in job_ids:
                    continue  # left unacked: returns to the DLQ when the channel closes
                if not letter.routing_key:
                    continue
                headers = {
                    k: v for k, v in dict(message.headers or {}).items() if k not in _SHED_ON_REPLAY
                }
                headers[HEADER_REPLAYED_FROM] = spec.dead_letter_queue
                headers[HEADER_ORIGINAL_ROUTING_KEY] = letter.routing_key
                await exchange.publish(
                    aio_pika.Message(
                        message.body,
                        headers=headers,
                        content_type=message.content_type,
                        correlation_id=message.correlation_id,
                        message_id=message.message_id,
                        type=message.type,
                        timestamp=message.timestamp,
                        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                    ),
                    routing_key=spec.name,
                    mandatory=True,
                )
                await message.ack()
                replayed.append(letter)
            await channel.close()
    return replayed
