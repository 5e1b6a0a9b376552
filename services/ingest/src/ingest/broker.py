"""The broker adapter: publish `audio.uploaded.v1` (and the webhook commands) with confirms."""

from __future__ import annotations

import asyncio
from typing import Final

import structlog
from faststream.rabbit import RabbitBroker

from contracts.audio import AudioUploadedV1
from contracts.envelope import Event
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
    WebhookEndpointRegisteredV1,
    WebhookEndpointSecretRotatedV1,
    WebhookEndpointDeletedV1,
    WebhookDeliveryRequestedV1,
)
"""Uploads, and the webhook endpoint changes and replays (the indexer writes them)."""


class BrokerPublisher:
    """`UploadedPublisher` over FastStream: persistent, mandatory, confirmed, bounded in time."""

    def __init__(self, broker: RabbitBroker, *, timeout_seconds: float) -> None:
        self.broker = broker
        self.timeout_seconds = timeout_seconds
        # Declared here, before the broker starts, so ingest's AsyncAPI document lists it.
        self._events = EventPublisher(broker, PUBLISHES)

    async def publish(self, event: AudioUploadedV1) -> None:
        await self.publish_declared(event)

    async def publish_declared(self, event: Event) -> None:
        """Publish any declared event; `PublishFailedError` unless the broker confirmed it."""
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
