"""A downstream service's own queue of `transcript.completed.v1`, as a consumer binds one."""

from __future__ import annotations

import aio_pika

from contracts import TranscriptCompletedV1
from scribe_runtime.topology import declare_topology


async def bind_downstream(amqp_url: str, queue_name: str) -> None:
    """Declare the topology and `queue_name`, bound to every `transcript.completed.v1`."""
    await declare_topology(amqp_url)
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel()
        queue = await channel.declare_queue(queue_name, durable=True)
        await queue.bind("scribe.events", routing_key="transcript.completed.v1")


async def drain_downstream(amqp_url: str, queue_name: str) -> list[TranscriptCompletedV1]:
    """Every completion the queue holds now, taken off it."""
    connection = await aio_pika.connect(amqp_url)
    events = []
    async with connection:
        channel = await connection.channel()
        queue = await channel.declare_queue(queue_name, durable=True, passive=True)
        while (message := await queue.get(no_ack=True, fail=False)) is not None:
            assert message.type == "transcript.completed.v1"
            events.append(TranscriptCompletedV1.model_validate_json(message.body))
    return events
