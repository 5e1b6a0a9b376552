"""The shared topology and consumer against a real RabbitMQ."""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import AsyncIterator

import aio_pika
import pytest
from faststream.rabbit import RabbitBroker

from contracts import AudioUploadedV1, routing
from contracts.examples import EXAMPLES
from scribe_runtime import amqp
from scribe_runtime.consumer import subscribe_events
from scribe_runtime.messaging import make_broker, publish_event
from scribe_runtime.retry import DeferredError, TransientError
from scribe_runtime.topology import QUEUES, TRANSCRIBER_QUEUE, QueueSpec, declare_topology
from tests.support.servers import RabbitServer
from tests.support.waiting import eventually_async

pytestmark = pytest.mark.integration

UPLOADED = EXAMPLES[AudioUploadedV1]


@pytest.fixture
async def broker(amqp_url: str) -> AsyncIterator[RabbitBroker]:
    await declare_topology(amqp_url)
    broker = make_broker(amqp_url, service="test")
    async with broker:
        await broker.start()
        yield broker


async def _get(
    channel: aio_pika.abc.AbstractChannel, queue: str
) -> aio_pika.abc.AbstractIncomingMessage:
    q = await channel.get_queue(queue, ensure=False)

    async def arrived() -> aio_pika.abc.AbstractIncomingMessage | None:
        return await q.get(fail=False, no_ack=False)

    return await eventually_async(arrived, within=5, interval=0.1, what=f"a message on {queue}")


async def test_topology_is_quorum_with_delivery_limit_and_dlq(
    amqp_url: str, rabbit_server: RabbitServer
) -> None:
    await declare_topology(amqp_url)
    await declare_topology(amqp_url)  # idempotent: a second start changes nothing
    for spec in QUEUES:
        info = rabbit_server.queue_info(amqp_url, spec.name)
        assert info["type"] == "quorum"
        assert info["durable"] is True
        assert info["arguments"]["x-delivery-limit"] == spec.delivery_limit
        assert info["arguments"]["x-dead-letter-exchange"] == "scribe.dlx"
        dlq = rabbit_server.queue_info(amqp_url, spec.dead_letter_queue)
        assert dlq["type"] == "quorum"


async def test_published_upload_arrives_intact_on_the_quorum_queue(
    broker: RabbitBroker, amqp_url: str
) -> None:
    await publish_event(broker, UPLOADED)

    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel()
        message = await _get(channel, TRANSCRIBER_QUEUE.name)
        assert message.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
        assert message.message_id == str(UPLOADED.event_id)
        assert message.type == "audio.uploaded.v1"
        assert message.content_type == "application/json"
        assert message.correlation_id == str(UPLOADED.correlation_id)
        assert message.routing_key == "audio.uploaded.v1"
        assert AudioUploadedV1.model_validate_json(message.body) == UPLOADED
        await message.ack()


async def test_malformed_and_unknown_version_are_dead_lettered_and_consumption_goes_on(
    amqp_url: str,
) -> None:
    await declare_topology(amqp_url)
    broker = make_broker(amqp_url, service="test")
    consumed: asyncio.Queue[AudioUploadedV1] = asyncio.Queue()

    async def on_audio_uploaded(event: AudioUploadedV1, _delivery: amqp.Delivery) -> None:
        await consumed.put(event)

    subscribe_events(broker, TRANSCRIBER_QUEUE, (AudioUploadedV1,), on_audio_uploaded)
    unknown_version = UPLOADED.model_dump(mode="json") | {"version": 99}
    async with broker:
        await broker.start()
        for body in (b"{not json", json.dumps(unknown_version).encode()):
            await broker.publish(
                body,
                exchange=routing.EXCHANGE,
                routing_key=routing.AUDIO_UPLOADED_V1,
                persist=True,
            )
        await publish_event(broker, UPLOADED)
        event = await asyncio.wait_for(consumed.get(), timeout=10)
        assert event == UPLOADED
        assert consumed.empty()

    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel()
        reasons = {}
        for _ in range(2):
            dead = await _get(channel, TRANSCRIBER_QUEUE.dead_letter_queue)
            headers = dead.headers
            reasons[headers[amqp.HEADER_DEAD_LETTER_CODE]] = headers[amqp.HEADER_DEAD_LETTER_REASON]
            await dead.ack()
    assert "not JSON" in str(reasons["malformed_event"])
    assert "no version 99" in str(reasons["unsupported_event_version"])
    # Nothing left behind on the work queue: bad messages were acked, not requeued.
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel()
        queue = await channel.declare_queue(TRANSCRIBER_QUEUE.name, passive=True)
        assert queue.declaration_result.message_count == 0


async def test_a_deferred_message_comes_back_through_a_retry_stage_without_spending_a_retry(
    amqp_url: str,
) -> None:
    """A `DeferredError` (the handler's share is taken: webhooks per tenant) is neither a
    failure nor a retry: the message waits out the first stage and returns with its retry
    count as it was, however often it is deferred, while a `TransientError` counts."""
    spec = QueueSpec(name="test.deferrals", bindings=(), retry_delays=(0.2, 0.2))
    await declare_topology(amqp_url, (spec,))
    broker = make_broker(amqp_url, service="test")
    seen: list[tuple[int, float]] = []
    handled: asyncio.Queue[int] = asyncio.Queue()

    async def on_upload(event: AudioUploadedV1, delivery: amqp.Delivery) -> None:
        seen.append((amqp.retries_done(delivery.headers), time.monotonic()))
        if len(seen) <= 3:
            raise DeferredError("busy")
        if len(seen) == 4:
            raise TransientError("briefly gone")
        await handled.put(amqp.retries_done(delivery.headers))

    subscribe_events(broker, spec, (AudioUploadedV1,), on_upload)
    async with broker:
        await broker.start()
        await broker.publish(
            UPLOADED.model_dump_json().encode(),
            routing_key=spec.name,
            message_type=UPLOADED.message_type,
            message_id=str(UPLOADED.event_id),
            content_type=routing.CONTENT_TYPE,
            persist=True,
        )
        assert await asyncio.wait_for(handled.get(), 30) == 1  # the TransientError's retry
    assert [done for done, _ in seen] == [0, 0, 0, 0, 1]
    gaps = [later - earlier for (_, earlier), (_, later) in itertools.pairwise(seen)]
    assert all(gap >= 0.15 for gap in gaps), gaps  # each went through a TTL'd stage
