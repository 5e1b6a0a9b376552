"""RabbitMQ topology: the exchanges, quorum queues, dead-letter queues and bindings.

Every service declares the whole topology at start-up (idempotently), so a message
published before its consumer ever ran is still routed to a durable queue, never dropped.
Mirrored in `infra/rabbitmq/definitions.json`; a test keeps the two in step.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Literal, cast

import aio_pika
import structlog
from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractQueue
from aiormq.exceptions import ChannelPreconditionFailed
from faststream.rabbit import ExchangeType, QueueType, RabbitExchange, RabbitQueue

from contracts import routing
from contracts.chunks import TranscriptionChunkRequestedV1
from contracts.envelope import Event
from contracts.webhooks import WEBHOOK_EVENT_CLASSES
from scribe_runtime import failover

if TYPE_CHECKING:
    from faststream.rabbit.schemas.queue import QuorumQueueArgs

log = structlog.get_logger(__name__)

DELIVERY_LIMIT: Final = 5
"""Deliveries a message may have before RabbitMQ dead-letters it (crash loops)."""

RETRY_DELAYS_SECONDS: Final[tuple[float, ...]] = (1.0, 5.0, 25.0, 120.0)
"""Backoff of a transient failure: one TTL'd retry stage per delay, then the DLQ."""

X_QUORUM_INITIAL_GROUP_SIZE: Final = "x-quorum-initial-group-size"


def replicated(arguments: dict[str, Any], initial_group_size: int | None) -> dict[str, Any]:
    """A quorum queue's arguments with its replica count (`None`: RabbitMQ's default)."""
    if initial_group_size is None:
        return arguments
    return {**arguments, X_QUORUM_INITIAL_GROUP_SIZE: initial_group_size}


@dataclass(frozen=True, slots=True)
class QueueSpec:
    """A consumer's durable quorum queue and what it is bound to."""

    name: str
    bindings: tuple[str, ...]
    delivery_limit: int = DELIVERY_LIMIT
    retry_delays: tuple[float, ...] = RETRY_DELAYS_SECONDS
    exchange: str = routing.EXCHANGE
    """Where `bindings` apply: the events exchange, or `scribe.dlx` for dead-letter watchers."""

    @property
    def dead_letter_queue(self) -> str:
        """`<queue>.dlq`."""
        return routing.dead_letter_queue(self.name)

    def retry_queue(self, stage: int) -> str:
        """`<queue>.retry.<stage>` (1-based): holds a message for `retry_delays[stage-1]` s."""
        return f"{self.name}.retry.{stage}"

    def retry_queue_arguments(self, stage: int) -> dict[str, Any]:
        """A retry stage: quorum, TTL'd, dead-lettering back to the consuming queue.

        The message returns through the default exchange straight to `name`, not through
        `scribe.events`, so the queue's other subscribers never see it twice. Queue-level
        TTL on a quorum queue and at-least-once dead-lettering (which needs reject-publish
        overflow) both work on RabbitMQ 3.10; per-message TTL does not, hence a queue per
        delay.
        """
        return {
            "x-queue-type": "quorum",
            "x-message-ttl": round(self.retry_delays[stage - 1] * 1000),
            "x-dead-letter-exchange": "",
            "x-dead-letter-routing-key": self.name,
            "x-dead-letter-strategy": "at-least-once",
            "x-overflow": "reject-publish",
        }

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
"""The intake: every `audio.uploaded.v1` (ingest's and external producers'). Its consumer is
the pool router inside every transcriber (`transcriber.router`): it checks the tenant, picks
the pool of the job's model (the default pool when the job names none) and republishes the
message there with a confirm before it acks; a model no pool serves fails the job with
`model_unavailable`."""

PoolKind = Literal["audio", "chunk"]
"""The work items a pool takes: whole jobs (`audio.uploaded.v1`), chunks of long ones
(`transcription.chunk.requested.v1`)."""
_POOL_PURPOSES: Final[dict[str, str]] = {"audio": "audio-uploaded", "chunk": "chunk-requested"}
POOL_NAME: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*(?:\.[A-Za-z0-9_-]+)*$")
"""What a pool (a model name) may be called: routing-key and queue-name safe, at most 64."""
DEFAULT_POOLS: Final = ("tiny.en", "base")
"""Pools declared by every service and in `infra/rabbitmq/definitions.json`: the two offline
models. A worker of another model declares its own pool when it starts."""


class UnknownPoolError(ValueError):
    """A model name no pool can be called (not routing-key safe)."""


def pool_routing_key(model: str, kind: PoolKind = "audio") -> str:
    """`pool.<model>.<purpose>` on `scribe.events`: where a pool's work items of `kind` go.

    The one place that names a pool on the wire; its queue is `pool_queue(model, kind)`.
    Chunk work items of a long job go to the pool of their `model` the same way.
    """
    if len(model) > 64 or not POOL_NAME.match(model):
        raise UnknownPoolError(f"{model!r} cannot name a model pool")
    return f"pool.{model}.{_POOL_PURPOSES[kind]}"


def event_routing_key(event: Event) -> str:
    """Where `event` is published on `scribe.events`: its own `<type>.v<version>`, except a
    long job's chunk work item, which goes to the pool of its model."""
    if isinstance(event, TranscriptionChunkRequestedV1):
        return pool_routing_key(event.model, "chunk")
    return event.routing_key()


POOL_QUEUE_PREFIX: Final = "transcriber.pool."


def pool_queue(model: str, kind: PoolKind = "audio") -> QueueSpec:
    """`transcriber.pool.<model>.<purpose>`: the pool's quorum queue, bound to its key."""
    key = pool_routing_key(model, kind)
    return QueueSpec(name=f"transcriber.{key}", bindings=(key,))


def pool_queues(models: tuple[str, ...]) -> tuple[QueueSpec, ...]:
    """Both queues of each pool in `models` (whole jobs, then chunks)."""
    return tuple(pool_queue(m, kind) for m in models for kind in ("audio", "chunk"))


INDEXER_QUEUE: Final = QueueSpec(
    name="indexer.job-events",
    bindings=(
        routing.AUDIO_UPLOADED_V1,
        routing.TRANSCRIPTION_STARTED_V1,
        routing.TRANSCRIPTION_PROGRESS_V1,
        routing.TRANSCRIPT_COMPLETED_V1,
        routing.TRANSCRIPTION_FAILED_V1,
        routing.TRANSCRIPTION_CANCEL_REQUESTED_V1,
        routing.TRANSCRIPTION_CANCELLED_V1,
        routing.TRANSCRIPTION_DELETE_REQUESTED_V1,
        routing.TRANSCRIPTION_CHUNKED_V1,
        routing.TRANSCRIPTION_CHUNK_TRANSCRIBED_V1,
    ),
)
INGEST_DELETIONS_QUEUE: Final = QueueSpec(
    name="ingest.job-deletions", bindings=(routing.TRANSCRIPTION_DELETED_V1,)
)
"""Ingest erases what it keeps of a deleted job on the media volume (its idempotency record
and cancel mark); the indexer, which erased the rest, announces the deletion."""


def dead_letter_watch_queue(models: tuple[str, ...] = DEFAULT_POOLS) -> QueueSpec:
    """The indexer's watch over the intake's and the pools' dead letters (jobs and chunks)."""
    return QueueSpec(
        name="indexer.dead-letters",
        bindings=(TRANSCRIBER_QUEUE.name, *(q.name for q in pool_queues(models))),
        exchange=routing.DEAD_LETTER_EXCHANGE,
        retry_delays=(),
    )


DEAD_LETTER_WATCH_QUEUE: Final = dead_letter_watch_queue()
"""A copy of every job, and every chunk of a long job, that dies in a transcriber queue (the
DLQ keeps its own copy for `scribe dlq`): the indexer turns each into
`transcription.failed.v1` (`dead_lettered`), so no job stays `processing` because one of
its messages was dead-lettered."""
INDEXER_WEBHOOK_QUEUE: Final = QueueSpec(
    name="indexer.webhook-events",
    bindings=tuple(cls.routing_key() for cls in WEBHOOK_EVENT_CLASSES),
)
"""Endpoint registrations, rotations, deletions and delivery attempts, for the indexer to
project (registration goes through the bus because only the indexer writes PostgreSQL)."""
WEBHOOK_FANOUT_QUEUE: Final = QueueSpec(
    name="webhooks.job-events",
    bindings=(
        routing.TRANSCRIPTION_PROGRESS_V1,
        routing.TRANSCRIPT_COMPLETED_V1,
        routing.TRANSCRIPTION_FAILED_V1,
    ),
)
"""The dispatcher's copy of the job events: each becomes one delivery per endpoint."""
WEBHOOK_DELIVERY_RETRY_SECONDS: Final[tuple[float, ...]] = (
    5.0,
    30.0,
    120.0,
    600.0,
    1800.0,
    7200.0,
    18000.0,
    36000.0,
)
"""After the first try: 5 s, 30 s, 2 min, 10 min, 30 min, 2 h, 5 h, 10 h (about 17.7 h
in all, close to the Standard Webhooks schedule). Runtime's 1/5/25/120 s (2.5 min) is for
a dependency restarting; a receiver can be down for a deploy or a night."""
WEBHOOK_DELIVERY_QUEUE: Final = QueueSpec(
    name="webhooks.deliveries",
    bindings=(routing.WEBHOOK_DELIVERY_REQUESTED_V1,),
    retry_delays=WEBHOOK_DELIVERY_RETRY_SECONDS,
)
"""One message per (endpoint, job event): an endpoint that is down waits in its own retry
stages and never holds back another endpoint, nor the pipeline."""
BUCKET_EVENTS_EXCHANGE_NAME: Final = "scribe.bucket-events"
"""Where object stores publish S3 event notifications (MinIO's and Ceph's AMQP targets,
a bridge from SQS/EventBridge): standard S3 event JSON, any routing key."""
BUCKET_EVENTS_QUEUE: Final = QueueSpec(
    name="ingest.bucket-events", bindings=("#",), exchange=BUCKET_EVENTS_EXCHANGE_NAME
)
"""Ingest turns each `ObjectCreated:*` record into `audio.uploaded.v1` (job id by bucket,
key and version/ETag, so a notification delivered twice is one job)."""
QUEUES: Final[tuple[QueueSpec, ...]] = (
    TRANSCRIBER_QUEUE,
    INDEXER_QUEUE,
    DEAD_LETTER_WATCH_QUEUE,
    INGEST_DELETIONS_QUEUE,
    INDEXER_WEBHOOK_QUEUE,
    WEBHOOK_FANOUT_QUEUE,
    WEBHOOK_DELIVERY_QUEUE,
    BUCKET_EVENTS_QUEUE,
    *pool_queues(DEFAULT_POOLS),
)

EVENTS_EXCHANGE: Final = RabbitExchange(
    routing.EXCHANGE, type=ExchangeType.TOPIC, durable=True, declare=False
)
DEAD_LETTER_EXCHANGE: Final = RabbitExchange(
    routing.DEAD_LETTER_EXCHANGE, type=ExchangeType.DIRECT, durable=True, declare=False
)


class _Declarer:
    """Declares queues on a channel, replacing the channel when a declaration closes it."""

    def __init__(self, connection: AbstractConnection, initial_group_size: int | None) -> None:
        self._connection = connection
        self._size = initial_group_size
        self._channel: AbstractChannel | None = None

    async def channel(self) -> AbstractChannel:
        if self._channel is None or self._channel.is_closed:
            self._channel = await self._connection.channel()
        return self._channel

    async def queue(self, name: str, arguments: dict[str, Any]) -> AbstractQueue:
        """Declare a quorum queue, with its replica count when one is set.

        RabbitMQ checks `x-quorum-initial-group-size` against an existing queue although
        it only acts on it at creation: a queue created before the count was set (or with
        another) keeps its members, and the declaration falls back to the queue as it is
        (grow it with `rabbitmq-queues grow`). Any other difference still fails the start.
        """
        attempts = [replicated(arguments, self._size)]
        if self._size is not None:
            attempts.append(arguments)
        for given in attempts:
            try:
                return await (await self.channel()).declare_queue(
                    name, durable=True, arguments=given
                )
            except ChannelPreconditionFailed as exc:
                if X_QUORUM_INITIAL_GROUP_SIZE not in str(exc):
                    raise
        log.warning(
            "queue_replica_count_kept",
            queue=name,
            wanted=self._size,
            hint="rabbitmq-queues grow <node> all",
        )
        return await (await self.channel()).declare_queue(name, passive=True)


async def declare_on(
    connection: AbstractConnection,
    queues: tuple[QueueSpec, ...] = QUEUES,
    *,
    initial_group_size: int | None = None,
) -> None:
    """Declare exchanges, queues, DLQs and bindings over an open connection. Idempotent.

    `initial_group_size`: replicas of each quorum queue (3 on a 3-node cluster), applied
    to the queues this creates; existing queues keep their members (`_Declarer.queue`).
    """
    declarer = _Declarer(connection, initial_group_size)
    channel = await declarer.channel()
    await channel.declare_exchange(routing.EXCHANGE, aio_pika.ExchangeType.TOPIC, durable=True)
    await channel.declare_exchange(
        routing.DEAD_LETTER_EXCHANGE, aio_pika.ExchangeType.DIRECT, durable=True
    )
    await channel.declare_exchange(
        BUCKET_EVENTS_EXCHANGE_NAME, aio_pika.ExchangeType.TOPIC, durable=True
    )
    for spec in queues:
        dlq = await declarer.queue(spec.dead_letter_queue, {"x-queue-type": "quorum"})
        await dlq.bind(routing.DEAD_LETTER_EXCHANGE, routing_key=spec.name)
        for stage in range(1, len(spec.retry_delays) + 1):
            await declarer.queue(spec.retry_queue(stage), spec.retry_queue_arguments(stage))
        queue = await declarer.queue(spec.name, spec.arguments())
        for key in spec.bindings:
            await queue.bind(spec.exchange, routing_key=key)


async def declare_topology(
    amqp_url: str,
    queues: tuple[QueueSpec, ...] = QUEUES,
    *,
    pools: tuple[str, ...] = (),
    initial_group_size: int | None = None,
) -> None:
    """Connect (to the first listed node that answers), declare the topology (and the queues
    of `pools` beyond the defaults), disconnect. A pool declared here is served: the router
    routes its model's jobs to it."""
    extra = tuple(m for m in pools if m not in DEFAULT_POOLS)
    if extra:
        queues = (*queues, *pool_queues(extra), dead_letter_watch_queue((*DEFAULT_POOLS, *extra)))
    connection = await failover.connect(amqp_url)
    async with connection:
        await declare_on(connection, queues, initial_group_size=initial_group_size)


def definitions(
    vhost: str = "/",
    queues: tuple[QueueSpec, ...] = QUEUES,
    *,
    initial_group_size: int | None = None,
) -> dict[str, Any]:
    """The topology as a RabbitMQ definitions document (`infra/rabbitmq/definitions.json`)."""
    size = initial_group_size
    exchanges = [
        {"name": routing.EXCHANGE, "type": "topic"},
        {"name": routing.DEAD_LETTER_EXCHANGE, "type": "direct"},
        {"name": BUCKET_EVENTS_EXCHANGE_NAME, "type": "topic"},
    ]
    result_queues: list[dict[str, Any]] = []
    bindings: list[dict[str, Any]] = []
    for spec in queues:
        result_queues.append({"name": spec.name, "arguments": replicated(spec.arguments(), size)})
        result_queues.append(
            {
                "name": spec.dead_letter_queue,
                "arguments": replicated({"x-queue-type": "quorum"}, size),
            }
        )
        result_queues.extend(
            {
                "name": spec.retry_queue(stage),
                "arguments": replicated(spec.retry_queue_arguments(stage), size),
            }
            for stage in range(1, len(spec.retry_delays) + 1)
        )
        bindings.extend(
            {"source": spec.exchange, "destination": spec.name, "routing_key": key}
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
    import argparse
    import json
    import sys

    parser = argparse.ArgumentParser(description="Print the topology as RabbitMQ definitions.")
    parser.add_argument(
        "--initial-group-size",
        type=int,
        default=None,
        help="replicas of each quorum queue (3 on a 3-node cluster); default: RabbitMQ's",
    )
    args = parser.parse_args()
    json.dump(
        definitions(initial_group_size=args.initial_group_size),
        sys.stdout,
        indent=2,
        sort_keys=True,
    )
    sys.stdout.write("\n")
