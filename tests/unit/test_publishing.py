"""A service's declared publishers: what they put on the wire, and what they refuse."""

from __future__ import annotations

import asyncio

import pytest
from faststream.rabbit import RabbitQueue, TestRabbitBroker

from contracts import AudioUploadedV1, TranscriptionFailedV1, routing
from contracts.examples import EXAMPLES
from scribe_runtime import amqp
from scribe_runtime.amqp import Delivery, as_delivery
from scribe_runtime.messaging import make_broker
from scribe_runtime.publishing import EventPublisher, UndeclaredEventError
from scribe_runtime.topology import EVENTS_EXCHANGE


async def test_a_declared_event_goes_out_as_the_contract_says_and_others_are_refused() -> None:
    broker = make_broker("amqp://guest:guest@127.0.0.1:5672/", service="scribe-test")
    events = EventPublisher(broker, (TranscriptionFailedV1,))
    received: asyncio.Queue[Delivery] = asyncio.Queue()

    async def on_failed(delivery: Delivery) -> None:
        await received.put(delivery)

    broker.subscriber(
        RabbitQueue("test.failed", routing_key="transcription.*.v1"),
        exchange=EVENTS_EXCHANGE,
        decoder=as_delivery,
    )(on_failed)
    failed = EXAMPLES[TranscriptionFailedV1]
    async with TestRabbitBroker(broker):
        await events.publish(failed)
        delivery = await asyncio.wait_for(received.get(), 5)
        with pytest.raises(UndeclaredEventError):
            await events.publish(EXAMPLES[AudioUploadedV1])
    assert events.routing_keys == {routing.TRANSCRIPTION_FAILED_V1}
    assert TranscriptionFailedV1.model_validate_json(delivery.body) == failed
    assert (delivery.message_id, delivery.type, delivery.content_type) == (
        str(failed.event_id),
        routing.TRANSCRIPTION_FAILED_V1,
        routing.CONTENT_TYPE,
    )
    assert delivery.correlation_id == str(failed.correlation_id)
    assert delivery.headers[amqp.HEADER_JOB_ID] == str(failed.job_id)
    assert delivery.headers[amqp.HEADER_TENANT_ID] == failed.tenant_id
    assert received.empty()
