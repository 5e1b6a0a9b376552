"""S3 event notifications from a real put on SeaweedFS become `audio.uploaded.v1`, once."""

from __future__ import annotations

import asyncio
from typing import Any

import aio_pika
import pytest

from contracts import AudioUploadedV1
from ingest.broker import BrokerPublisher
from ingest.bucket_events import BucketEvents
from scribe_runtime.amqp import HEADER_DEAD_LETTER_CODE
from scribe_runtime.messaging import make_broker
from scribe_runtime.objectstore import MediaUrl, S3Location, parse_grants
from scribe_runtime.topology import (
    BUCKET_EVENTS_EXCHANGE_NAME,
    BUCKET_EVENTS_QUEUE,
    TRANSCRIBER_QUEUE,
    declare_topology,
)
from services.ingest.tests import samples
from tests.support.bucket_events import s3_event
from tests.support.servers import SeaweedServer
from tests.support.waiting import eventually_async

pytestmark = pytest.mark.integration


async def _drain(channel: aio_pika.abc.AbstractChannel, queue: str) -> list[Any]:
    declared = await channel.declare_queue(queue, passive=True)
    found = []
    while (message := await declared.get(no_ack=True, fail=False)) is not None:
        found.append(message)
    return found


async def test_a_notification_delivered_twice_is_one_job_and_unowned_ones_are_refused(
    amqp_url: str, seaweed: SeaweedServer, s3_bucket: str
) -> None:
    key = "inbox/acme/board meeting.wav"
    with seaweed.client() as s3:
        s3.put_object(Bucket=s3_bucket, Key=key, Body=samples.wav_bytes(1.0))
        head = s3.head_object(Bucket=s3_bucket, Key=key)
    await declare_topology(amqp_url)
    broker = make_broker(amqp_url, service="scribe-ingest")
    BucketEvents(
        broker,
        BrokerPublisher(broker, timeout_seconds=10),
        media=MediaUrl(s3=S3Location(s3_bucket, "media")),
        grants=parse_grants({"acme": [f"s3://{s3_bucket}/inbox/acme/"]}),
    ).subscribe()
    body = s3_event(s3_bucket, key, head)
    unowned = s3_event("not-configured", "inbox/acme/x.wav", head)
    # Ingest's own write: announced by ingest, so the notification makes no second job.
    own = s3_event(s3_bucket, "media/acme/ab/abcdef", head)
    connection = await aio_pika.connect(amqp_url)
    async with broker, connection:
        await broker.start()
        channel = await connection.channel()
        exchange = await channel.get_exchange(BUCKET_EVENTS_EXCHANGE_NAME)
        for payload in (own, body, body, unowned):  # at-least-once: the store sent it twice
            await exchange.publish(aio_pika.Message(payload), routing_key="scribe/put")

        uploaded: list[Any] = []
        dead: list[Any] = []

        async def all_arrived() -> bool:
            uploaded.extend(await _drain(channel, TRANSCRIBER_QUEUE.name))
            dead.extend(await _drain(channel, BUCKET_EVENTS_QUEUE.dead_letter_queue))
            return len(uploaded) == 2 and len(dead) == 1

        await eventually_async(all_arrived, within=30, what="two uploads and one dead letter")
        await asyncio.sleep(1)  # nothing more comes
        uploaded.extend(await _drain(channel, TRANSCRIBER_QUEUE.name))

    events = [AudioUploadedV1.model_validate_json(m.body) for m in uploaded]
    assert len(events) == 2
    # One job: the same job id and the same event id, which the indexer records once.
    assert len({e.job_id for e in events}) == 1
    assert len({e.event_id for e in events}) == 1
    assert {m.message_id for m in uploaded} == {str(events[0].event_id)}
    event = events[0]
    assert event.tenant_id == "acme"
    assert str(event.audio_uri) == f"s3://{s3_bucket}/inbox/acme/board%20meeting.wav"
    assert event.size_bytes == head["ContentLength"]
    assert dead[0].headers[HEADER_DEAD_LETTER_CODE] == "bucket_not_configured"
