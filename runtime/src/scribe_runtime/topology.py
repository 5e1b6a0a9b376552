"""RabbitMQ topology: the exchanges, quorum queues, dead-letter queues and bindings.

Every service declares the whole topology at start-up (idempotently), so a message
published before its consumer ever ran is still routed to a durable queue, never dropped.
Mirrored in `infra/rabbitmq/definitions.json`; a test keeps the two in step.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, cast

import aio_pika
from aio_pika.abc import AbstractChannel
from faststream.rabbit import ExchangeType, QueueType, RabbitExchange, RabbitQueue

from contracts import routing

if TYPE_CHECKING:
    from faststream.rabbit.schemas.queue import QuorumQueueArgs

DELIVERY_LIMIT: Final = 5
"""Deliveries a message may have before RabbitMQ dead-letters it (crash loops)."""


@dataclass(frozen=True, slots=True)
class QueueSpec:
    """A consumer's durable quorum queue and what it is bound to."""

    name: str
    bindings: tuple[str, ...]
    delivery_limit: int = DELIVERY_LIMIT

    @property
    def dead_letter_queue(self) -> str:
        """`<queue>.dlq`."""
        return routing.dead_letter_queue(self.name)

    def arguments(self) -> dict[str, Any]:
        """Queue arguments: quorum, delivery limit, dead-lettering to `scribe.dlx`."""
        return {
            "x-queue-type": "quorum",
            "x-delivery-limit": self.delivery_limit,
            "x-dead-letter-exchange": routing.DEAD_LETTER_EXCHANGE,
            "x-dead-letter-routing-key": self.name,
        }

    def rabbit_queue(self) -> RabbitQueue:
        """The queue for a FastStream subscriber (declared by `declare_topology`)."""
        return RabbitQueue(
            self.name,
            queue_type=QueueType.QUORUM,
            arguments=cast("QuorumQueueArgs", self.arguments()),
            declare=False,
        )


TRANSCRIBER_QUEUE: Final = QueueSpec(
    name="transcriber.audio-uploaded", bindings=(routing.AUDIO_UPLOADED_V1,)
)
INDEXER_QUEUE: Final = QueueSpec(
    name="indexer.job-events",
    bindings=(
        routing.AUDIO_UPLOADED_V1,
        routing.TRANSCRIPTION_STARTED_V1,
        routing.TRANSCRIPTION_PROGRESS_V1,
        routing.TRANSCRIPT_COMPLETED_V1,
        routing.TRANSCRIPTION_FAILED_V1,
    ),
)
QUEUES: Final[tuple[QueueSpec, ...]] = (TRANSCRIBER_QUEUE, INDEXER_QUEUE)

EVENTS_EXCHANGE: Final = RabbitExchange(
    routing.EXCHANGE, type=ExchangeType.TOPIC, durable=True, declare=False
)
DEAD_LETTER_EXCHANGE: Final = RabbitExchange(
    routing.DEAD_LETTER_EXCHANGE, type=ExchangeType.DIRECT, durable=True, declare=False
)


async def declare_on(channel: AbstractChannel, queues: tuple[QueueSpec, ...] = QUEUES) -> None:
    """Declare exchanges, queues, DLQs and bindings on an open channel. Idempotent."""
    events = await channel.declare_exchange(
        routing.EXCHANGE, aio_pika.ExchangeType.TOPIC, durable=True
    )
    dlx = await channel.declare_exchange(
        routing.DEAD_LETTER_EXCHANGE, aio_pika.ExchangeType.DIRECT, durable=True
    )
    for spec in queues:
        dlq = await channel.declare_queue(
            spec.dead_letter_queue, durable=True, arguments={"x-queue-type": "quorum"}
        )
        await dlq.bind(dlx, routing_key=spec.name)
        queue = await channel.declare_queue(spec.name, durable=True, arguments=spec.arguments())
        for key in spec.bindings:
            await queue.bind(events, routing_key=key)


async def declare_topology(amqp_url: str, queues: tuple[QueueSpec, ...] = QUEUES) -> None:
    """Connect, declare the topology, disconnect."""
    connection = await aio_pika.connect(amqp_url, timeout=10)
    async with connection:
        channel = await connection.channel()
        await declare_on(channel, queues)


def definitions(vhost: str = "/", queues: tuple[QueueSpec, ...] = QUEUES) -> dict[str, Any]:
    """The topology as a RabbitMQ definitions document (`infra/rabbitmq/definitions.json`)."""
    exchanges = [
        {"name": routing.EXCHANGE, "type": "topic"},
        {"name": routing.DEAD_LETTER_EXCHANGE, "type": "direct"},
    ]
    result_queues: list[dict[str, Any]] = []
    bindings: list[dict[str, Any]] = []
    for spec in queues:
        result_queues.append({"name": spec.name, "arguments": spec.arguments()})
        result_queues.append(
            {"name": spec.dead_letter_queue, "arguments": {"x-queue-type": "quorum"}}
        )
        bindings.extend(
            {"source": routing.EXCHANGE, "destination": spec.name, "routing_key": key}
            for key in spec.bindings
        )
        bindings.append(
            {
                "source": routing.DEAD_LETTER_EXCHANGE,
                "destination": spec.dead_letter_queue,
                "routing_key": spec.name,
            }
        )
    common = {"vhost": vhost}
    return {
        "vhosts": [{"name": vhost}],
        "exchanges": [
            {
                **e,
                **common,
                "durable": True,
                "auto_delete": False,
                "internal": False,
                "arguments": {},
            }
            for e in exchanges
        ],
        "queues": [{**q, **common, "durable": True, "auto_delete": False} for q in result_queues],
        "bindings": [
            {**b, **common, "destination_type": "queue", "arguments": {}} for b in bindings
        ],
    }


if __name__ == "__main__":
    import json
    import sys

    json.dump(definitions(), sys.stdout, indent=2, sort_keys=True)
    sys.stdout.write("\n")
