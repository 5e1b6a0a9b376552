"""Several broker addresses in `SCRIBE_AMQP_URL`: a node that does not answer is skipped.

On the shared single node, the "cluster" is a dead address listed first and the live node
second: every way Scribe connects (topology declaration, the FastStream broker, the CLI's
plain connections) must land on the live one. A connection lost again while its consumers
are being restored (what a cluster node stopping mid-failover can do) is made again. The
3-node failover itself, a node stopped under load, is `tests/faults/test_cluster.py`.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any
from urllib.parse import quote, urlsplit

import aio_pika
import httpx
import pytest
from aio_pika.robust_queue import RobustQueue
from aiormq import spec
from aiormq.exceptions import DeliveryError

from contracts import AudioUploadedV1
from contracts.lifecycle import TranscriptionDeletedV1
from ingest.broker import BrokerPublisher
from scribe_runtime import failover
from scribe_runtime.amqp import Delivery
from scribe_runtime.consumer import subscribe_events
from scribe_runtime.messaging import make_broker, publish_event
from scribe_runtime.topology import (
    INGEST_DELETIONS_QUEUE,
    TRANSCRIBER_QUEUE,
    X_QUORUM_INITIAL_GROUP_SIZE,
    declare_topology,
    definitions,
)
from tests.support.ports import free_port
from tests.support.servers import RabbitServer
from tests.support.waiting import eventually_async

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


class VhostConnections:
    """The vhost's client connections, closed from the broker's side (management API)."""

    def __init__(self, rabbit: RabbitServer, vhost_url: str) -> None:
        if not rabbit.management_available():
            pytest.fail("the RabbitMQ management plugin is not answering (rabbitmq_management)")
        vhost = quote(urlsplit(vhost_url).path.lstrip("/"), safe="")
        self.listing = f"{rabbit.management_url}/api/vhosts/{vhost}/connections"
        self.connection = f"{rabbit.management_url}/api/connections"
        self.auth = rabbit.credentials

    async def close_all(self) -> None:
        """Close every connection the management API lists now (it lists a new one late)."""
        async with httpx.AsyncClient(auth=self.auth, timeout=30) as client:
            listed = (await client.get(self.listing)).raise_for_status().json()
            for row in listed:
                await client.delete(f"{self.connection}/{quote(row['name'], safe='')}")


@pytest.mark.parametrize(
    ("fault", "several"),
    [("lost", False), ("lost", True), ("stalled", False)],
    ids=["lost-one-address", "lost-dead-node-first", "stalled"],
)
async def test_a_connection_whose_restore_fails_midway_is_made_again(
    amqp_url: str,
    rabbit_server: RabbitServer,
    monkeypatch: pytest.MonkeyPatch,
    fault: str,
    several: bool,
) -> None:
    """The broker closes the connection; the reconnected connection, while it redeclares
    its consumer's queue, is closed by the broker again (`lost`: what a cluster node does
    when a quorum queue's consume finds no leader, 541) or that declare never answers
    (`stalled`). aio-pika's restore used to wait for its own connection forever (ingest
    answered 503 `broker_unavailable` to every upload) or for the declare forever (the
    consumer never came back). Both come back, by themselves."""
    connections = VhostConnections(rabbit_server, amqp_url)
    if fault == "stalled":
        monkeypatch.setattr(failover, "RESTORE_SECONDS", 2.0)  # not to wait the 30 s
    await declare_topology(amqp_url)
    broker = make_broker(_with_dead_node_first(amqp_url) if several else amqp_url, service="t")
    publisher = BrokerPublisher(broker, timeout_seconds=10)
    heard: asyncio.Queue[uuid.UUID] = asyncio.Queue()

    async def on_deleted(event: TranscriptionDeletedV1, _: Delivery) -> None:
        await heard.put(event.job_id)

    subscribe_events(broker, INGEST_DELETIONS_QUEUE, (TranscriptionDeletedV1,), on_deleted)

    restore = RobustQueue.restore
    faulted = asyncio.Event()

    async def restore_with_a_fault(queue: RobustQueue, *args: Any, **kwargs: Any) -> None:
        if not faulted.is_set():
            faulted.set()
            connection = broker._connection
            assert connection is not None
            assert connection.connected.is_set()
            if fault == "stalled":
                await asyncio.Event().wait()  # until cancelled

            async def lost() -> bool:
                await connections.close_all()
                assert connection is not None
                return not connection.connected.is_set()

            await eventually_async(lost, within=60, what="the restoring connection closed")
        await restore(queue, *args, **kwargs)

    monkeypatch.setattr(RobustQueue, "restore", restore_with_a_fault)
    async with broker:
        await asyncio.wait_for(broker.start(), 30)

        async def restore_faulted() -> bool:
            if not faulted.is_set():
                await connections.close_all()
            return faulted.is_set()

        await eventually_async(restore_faulted, within=60, what="a restore began")
        # The consumer was restored on a new connection.
        deleted = TranscriptionDeletedV1(
            job_id=uuid.uuid4(), tenant_id="default", producer="test", request_event_id=uuid.uuid4()
        )
        await asyncio.wait_for(publish_event(broker, deleted), 60)
        assert await asyncio.wait_for(heard.get(), 60) == deleted.job_id
        # Ingest's own publisher takes uploads again: connected, confirmed, no 503.
        assert await broker.ping(timeout=60), "the connection never came back"
        await publisher.publish(
            AudioUploadedV1(
                job_id=uuid.uuid4(),
                tenant_id="default",
                producer="test",
                audio_uri="file:///a.wav",  # type: ignore[arg-type]
            )
        )


async def test_a_channel_the_broker_keeps_nacking_is_replaced_and_the_upload_accepted(
    amqp_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """RabbitMQ 3.10 nacks every publish of a channel whose first publish to a quorum queue
    met the queue's old leader on a node just stopped (`failover.ChannelRenewer`): ingest
    answered 503 to every upload after a cluster failover. Here the broker's nack is played
    on the channel ingest publishes on, for every publish of that AMQP channel; the upload
    must go through on a new one, and consumers on the broker's channel keep consuming."""
    await declare_topology(amqp_url)
    broker = make_broker(amqp_url, service="scribe-ingest")
    publisher = BrokerPublisher(broker, timeout_seconds=10)
    heard: asyncio.Queue[uuid.UUID] = asyncio.Queue()

    async def on_deleted(event: TranscriptionDeletedV1, _: Delivery) -> None:
        await heard.put(event.job_id)

    subscribe_events(broker, INGEST_DELETIONS_QUEUE, (TranscriptionDeletedV1,), on_deleted)
    nacked: list[int] = []
    async with broker:
        await asyncio.wait_for(broker.start(), 30)
        channel = await broker.config.channel_manager.get_channel()
        poisoned = await channel.get_underlay_channel()
        basic_publish = type(poisoned).basic_publish

        async def nacked_on_the_poisoned_channel(self: Any, *args: Any, **kwargs: Any) -> Any:
            if self is poisoned:
                nacked.append(1)
                raise DeliveryError(None, spec.Basic.Nack(delivery_tag=len(nacked), multiple=True))
            return await basic_publish(self, *args, **kwargs)

        monkeypatch.setattr(type(poisoned), "basic_publish", nacked_on_the_poisoned_channel)
        uploads = [
            AudioUploadedV1(
                job_id=uuid.uuid4(),
                tenant_id="default",
                producer="test",
                audio_uri="file:///a.wav",  # type: ignore[arg-type]
            )
            for _ in range(3)
        ]
        # Concurrent uploads, as ingest has them: all accepted, the channel renewed once.
        await asyncio.wait_for(asyncio.gather(*(publisher.publish(u) for u in uploads)), 30)
        assert nacked, "the poisoned channel was never published on"
        assert poisoned.is_closed
        assert await channel.get_underlay_channel() is not poisoned
        deleted = TranscriptionDeletedV1(
            job_id=uuid.uuid4(), tenant_id="default", producer="test", request_event_id=uuid.uuid4()
        )
        await asyncio.wait_for(publish_event(broker, deleted), 30)
        assert await asyncio.wait_for(heard.get(), 30) == deleted.job_id
    connection = await aio_pika.connect(amqp_url, timeout=10)
    async with connection:
        queue = await (await connection.channel()).declare_queue(
            TRANSCRIBER_QUEUE.name, passive=True
        )
        ids = set()
        while (message := await queue.get(no_ack=True, fail=False, timeout=10)) is not None:
            ids.add(message.message_id)
    assert ids == {str(u.event_id) for u in uploads}
