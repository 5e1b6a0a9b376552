"""The consumer policy, one test body against FastStream's in-memory broker and RabbitMQ.

As in FastStream's own suite, each test takes a `broker` fixture parametrized over
`TestRabbitBroker` (in memory, no server) and a real RabbitMQ (isolated vhost, marked
`integration`). What runs in both: a valid event is decoded and handed to the handler with
its `Delivery`; a malformed or unknown-version body is copied to the queue's DLQ with the
reason in its headers, and consumption goes on. Messages are published straight to the
queue (default exchange), the same on both.

What only the real broker can show, and is tested against it elsewhere
(`tests/integration/test_broker_contract.py`, `test_indexer.py`, `tests/faults/`): the
in-memory broker has no queues, so no topic bindings from `scribe.events`, no quorum
delivery limit or `x-delivery-count`, no broker-side dead-lettering through `scribe.dlx`
(`x-death`), and no TTL'd retry stages.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator

import pytest
from faststream.rabbit import RabbitBroker, RabbitQueue, TestRabbitBroker

from contracts import AudioUploadedV1, routing
from contracts.errors import MalformedEventError, UnsupportedEventVersionError
from contracts.examples import EXAMPLES
from scribe_runtime import amqp
from scribe_runtime.amqp import Delivery, as_delivery
from scribe_runtime.consumer import subscribe_events
from scribe_runtime.messaging import make_broker
from scribe_runtime.topology import DEAD_LETTER_EXCHANGE, QueueSpec, declare_topology

UPLOADED = EXAMPLES[AudioUploadedV1]


class Consumer:
    """A consumer on its own queue, and a reader of that queue's DLQ."""

    def __init__(self, broker: RabbitBroker, spec: QueueSpec) -> None:
        self.broker = broker
        self.spec = spec
        self.handled: asyncio.Queue[tuple[AudioUploadedV1, Delivery]] = asyncio.Queue()
        self.dead: asyncio.Queue[Delivery] = asyncio.Queue()

        async def on_audio_uploaded(event: AudioUploadedV1, delivery: Delivery) -> None:
            await self.handled.put((event, delivery))

        async def on_dead_letter(delivery: Delivery) -> None:
            await self.dead.put(delivery)

        subscribe_events(broker, spec, (AudioUploadedV1,), on_audio_uploaded)
        broker.subscriber(
            RabbitQueue(spec.dead_letter_queue, routing_key=spec.name, declare=False),
            exchange=DEAD_LETTER_EXCHANGE,
            decoder=as_delivery,
        )(on_dead_letter)

    async def send(self, body: bytes, message_type: str, message_id: str) -> None:
        await self.broker.publish(
            body,
            routing_key=self.spec.name,
            message_type=message_type,
            message_id=message_id,
            content_type=routing.CONTENT_TYPE,
            persist=True,
        )


@pytest.fixture(params=["memory", pytest.param("rabbitmq", marks=pytest.mark.integration)])
async def consumer(request: pytest.FixtureRequest) -> AsyncIterator[Consumer]:
    spec = QueueSpec(name=f"test.policy-{uuid.uuid4().hex[:8]}", bindings=(), retry_delays=())
    if request.param == "memory":
        broker = make_broker("amqp://guest:guest@127.0.0.1:5672/", service="test")
        consumer = Consumer(broker, spec)
        async with TestRabbitBroker(broker):
            yield consumer
        return
    amqp_url: str = request.getfixturevalue("amqp_url")
    await declare_topology(amqp_url, (spec,))
    broker = make_broker(amqp_url, service="test")
    consumer = Consumer(broker, spec)
    async with broker:
        await broker.start()
        yield consumer


async def test_a_valid_event_reaches_the_handler_with_its_delivery(consumer: Consumer) -> None:
    await consumer.send(
        UPLOADED.model_dump_json().encode(), UPLOADED.message_type, str(UPLOADED.event_id)
    )
    event, delivery = await asyncio.wait_for(consumer.handled.get(), 10)
    assert event == UPLOADED
    assert (delivery.message_id, delivery.type, delivery.attempt) == (
        str(UPLOADED.event_id),
        routing.AUDIO_UPLOADED_V1,
        1,
    )
    assert consumer.dead.empty()


async def test_malformed_and_unknown_versions_go_to_the_dlq_and_consumption_goes_on(
    consumer: Consumer,
) -> None:
    unknown_version = UPLOADED.model_dump(mode="json") | {"version": 99}
    await consumer.send(b"{not json", routing.AUDIO_UPLOADED_V1, "bad-json")
    await consumer.send(json.dumps(unknown_version).encode(), "audio.uploaded.v99", "v99")
    await consumer.send(
        UPLOADED.model_dump_json().encode(), UPLOADED.message_type, str(UPLOADED.event_id)
    )
    event, _ = await asyncio.wait_for(consumer.handled.get(), 10)
    assert event == UPLOADED
    letters = {}
    for _ in range(2):
        letter = await asyncio.wait_for(consumer.dead.get(), 10)
        letters[letter.message_id] = letter
    assert letters["bad-json"].body == b"{not json"  # the message itself, not a re-encoding
    codes = {k: v.headers[amqp.HEADER_DEAD_LETTER_CODE] for k, v in letters.items()}
    assert codes == {
        "bad-json": MalformedEventError.code,
        "v99": UnsupportedEventVersionError.code,
    }
    for letter in letters.values():
        assert letter.headers[amqp.HEADER_DEAD_LETTER_QUEUE] == consumer.spec.name
        assert letter.headers[amqp.HEADER_DEAD_LETTER_REASON]
        assert letter.type in {routing.AUDIO_UPLOADED_V1, "audio.uploaded.v99"}
