"""Several broker addresses in `SCRIBE_AMQP_URL`: a node that does not answer is skipped.

On the shared single node, the "cluster" is a dead address listed first and the live node
second: every way Scribe connects (topology declaration, the FastStream broker, the CLI's
plain connections) must land on the live one. The 3-node failover itself, a node stopped
under load, is `tests/faults/test_cluster.py`.
"""

from __future__ import annotations

import asyncio
import uuid

import aio_pika
import pytest

from contracts import AudioUploadedV1
from scribe_runtime import failover
from scribe_runtime.messaging import make_broker, publish_event
from scribe_runtime.topology import (
    TRANSCRIBER_QUEUE,
    X_QUORUM_INITIAL_GROUP_SIZE,
    declare_topology,
    definitions,
)
from tests.support.ports import free_port

pytestmark = pytest.mark.integration


def _with_dead_node_first(amqp_url: str) -> str:
    dead = amqp_url.replace(amqp_url.split("@", 1)[1].split("/", 1)[0], f"127.0.0.1:{free_port()}")
    return f"{dead}, {amqp_url}"


def test_broker_urls_split_a_comma_separated_list() -> None:
    assert failover.broker_urls("amqp://a:5672/v") == ("amqp://a:5672/v",)
    assert failover.broker_urls(" amqp://a/v , amqp://b/v,") == ("amqp://a/v", "amqp://b/v")
    with pytest.raises(ValueError):
        failover.broker_urls(" , ")


async def test_topology_and_plain_connections_skip_a_node_that_does_not_answer(
    amqp_url: str,
) -> None:
    listed = _with_dead_node_first(amqp_url)
    await declare_topology(listed)
    connection = await failover.connect(listed, connect_timeout=5)
    async with connection:
        channel = await connection.channel()
        queue = await channel.declare_queue(TRANSCRIBER_QUEUE.name, passive=True)
        assert queue.name == TRANSCRIBER_QUEUE.name


async def test_no_node_answering_fails_fast_naming_every_address() -> None:
    ports = (free_port(), free_port())
    listed = ",".join(f"amqp://guest:guest@127.0.0.1:{port}/" for port in ports)
    with pytest.raises(ConnectionError, match="no broker node answered") as caught:
        await asyncio.wait_for(failover.connect(listed, connect_timeout=2), 30)
    assert all(f"127.0.0.1:{port}/" in str(caught.value) for port in ports)
    assert "guest:guest" not in str(caught.value)


async def test_the_broker_publishes_and_consumes_through_the_live_node(amqp_url: str) -> None:
    listed = _with_dead_node_first(amqp_url)
    await declare_topology(listed)
    broker = make_broker(listed, service="scribe-test")
    event = AudioUploadedV1(
        job_id=uuid.uuid4(),
        tenant_id="default",
        producer="test",
        audio_uri="file:///a.wav",  # type: ignore[arg-type]
    )
    async with broker:
        await asyncio.wait_for(broker.connect(), 30)
        await publish_event(broker, event)
    connection = await aio_pika.connect(amqp_url, timeout=10)
    async with connection:
        channel = await connection.channel()
        queue = await channel.declare_queue(TRANSCRIBER_QUEUE.name, passive=True)
        message = await queue.get(no_ack=True, fail=False, timeout=10)
    assert message is not None
    assert message.message_id == str(event.event_id)


async def test_a_changed_replica_count_never_fails_a_start(amqp_url: str) -> None:
    """RabbitMQ reads `x-quorum-initial-group-size` at creation only: a deployment that
    sets it later (one node grown to three) redeclares its queues without an error."""
    await declare_topology(amqp_url)
    await declare_topology(amqp_url, initial_group_size=1)
    await declare_topology(amqp_url, initial_group_size=3)


def test_definitions_carry_the_replica_count_only_when_set() -> None:
    plain = definitions()["queues"]
    assert all(X_QUORUM_INITIAL_GROUP_SIZE not in q["arguments"] for q in plain)
    three = definitions(initial_group_size=3)["queues"]
    assert {q["arguments"][X_QUORUM_INITIAL_GROUP_SIZE] for q in three} == {3}
    assert len(three) == len(plain)
