"""The broker adapter: publish ingest's events and wait for RabbitMQ's confirm.

`audio.uploaded.v1` for submissions; `transcription.cancel_requested.v1` and
`transcription.delete_requested.v1` for `ingest.lifecycle`; the webhook endpoint changes
and replays for `ingest.webhook_registry` (the indexer writes them).
"""

from __future__ import annotations

import asyncio
from typing import Final

import structlog
from faststream.rabbit import RabbitBroker

from contracts.audio import AudioUploadedV1
from contracts.envelope import Event
from contracts.lifecycle import TranscriptionCancelRequestedV1, TranscriptionDeleteRequestedV1
from contracts.webhooks import (
    WebhookDeliveryRequestedV1,
    WebhookEndpointDeletedV1,
    WebhookEndpointRegisteredV1,
    WebhookEndpointSecretRotatedV1,
)
from ingest.uploads import PublishFailedError
from scribe_runtime.publishing import EventPublisher

log = structlog.get_logger(__name__)

RECONNECT_GRACE_SECONDS: Final = 2.0
PUBLISHES: Final[tuple[type[Event], ...]] = (
    AudioUploadedV1,
    TranscriptionCancelRequestedV1,
    TranscriptionDeleteRequestedV1,
    WebhookEndpointRegisteredV1,
    WebhookEndpointSecretRotatedV1,
    WebhookEndpointDeletedV1,
    WebhookDeliveryRequestedV1,
)
"""Uploads, cancel and delete requests, and the webhook endpoint changes and replays."""


class BrokerPublisher:
    """`UploadedPublisher` over FastStream: persistent, mandatory, confirmed, bounded in time."""

    def __init__(self, broker: RabbitBroker, *, timeout_seconds: float) -> None:
        self.broker = broker
        self.timeout_seconds = timeout_seconds
        # Declared here, before the broker starts, so ingest's AsyncAPI document lists it.
        self._events = EventPublisher(broker, PUBLISHES)

    async def publish_declared(self, event: Event) -> None:
        """The webhook registry's name for `publish`: any declared event, confirmed."""
        await self.publish(event)

    async def publish(self, event: Event) -> None:
        # A lost connection is given a moment to come back (a broker restart, a blip);
        # longer than that, the client hears 503 now rather than after the full timeout.
        if not await self.broker.ping(timeout=min(RECONNECT_GRACE_SECONDS, self.timeout_seconds)):
            raise PublishFailedError("not connected to the broker")
        try:
            async with asyncio.timeout(self.timeout_seconds):
                await self._events.publish(event)
        except TimeoutError:
            raise PublishFailedError(f"no confirm within {self.timeout_seconds:g} s") from None
        except Exception as exc:
            # Whatever went wrong (connection closed, channel error, nack, unroutable
            # return), the broker did not take the job: the caller answers 503.
            log.warning("publish_failed", error=repr(exc), job_id=str(event.job_id))
            raise PublishFailedError(f"{type(exc).__name__}: {exc}") from exc

    async def is_connected(self) -> bool:
        """True while the broker's connection is up."""
        return await self.broker.ping(timeout=1.0)
