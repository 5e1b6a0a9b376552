"""Webhook endpoints as ingest sees them: register, rotate, delete, replay.

Ingest writes nothing: each change is an event on the bus (`webhook.endpoint.*.v1`,
`webhook.delivery.requested.v1` for a replay) that the indexer projects, so the API
answers 202 and the change shows in reads once projected (milliseconds, normally).
The signing secret is made here, returned once, and travels in the registration event.
"""

from __future__ import annotations

import asyncio
import base64
import secrets
from collections.abc import Awaitable, Callable
from typing import Final
from uuid import UUID, uuid4

import structlog

from contracts.envelope import Event
from contracts.webhooks import (
    WebhookDeliveryRequestedV1,
    WebhookEndpointDeletedV1,
    WebhookEndpointRegisteredV1,
    WebhookEndpointSecretRotatedV1,
)
from ingest.failures import (
    BROKER_UNAVAILABLE,
    INVALID_WEBHOOK_URL,
    WEBHOOK_LIMIT_REACHED,
    ConflictError,
    InvalidInputError,
    UnavailableError,
    WebhookNotFoundError,
)
from ingest.queries import JobReader
from ingest.uploads import PublishFailedError
from ingest.webhook_models import (
    DeliveryList,
    ReplayAccepted,
    WebhookAccepted,
    WebhookCreate,
    WebhookList,
    WebhookOut,
)
from scribe_runtime.netguard import ForbiddenUrlError, resolve_allowed_url
from scribe_runtime.worker import producer_name

log = structlog.get_logger(__name__)

PRODUCER: Final = producer_name("scribe-ingest")
SECRET_BYTES: Final = 32
"""256 bits: as long as the HMAC-SHA256 key can usefully be."""
PROJECTION_WAIT_SECONDS: Final = 2.0
"""How long a registration waits to see itself projected before answering anyway."""

Publish = Callable[[Event], Awaitable[None]]


def new_secret() -> str:
    """A Standard Webhooks secret: `whsec_` and base64 of random bytes."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


class WebhookRegistry:
    """The webhook use cases; reads through the read port, writes as events."""

    def __init__(
        self,
        publish: Publish,
        queries: JobReader,
        *,
        allowed_hosts: frozenset[str],
        max_per_tenant: int = 20,
    ) -> None:
        self._publish = publish
        self._queries = queries
        self._allowed_hosts = allowed_hosts
        self._max = max_per_tenant
        self._registering: dict[str, tuple[asyncio.Lock, list[int]]] = {}
        """Per tenant: the lock its registrations take turns on, and how many use it."""

    async def register(self, tenant: str, request: WebhookCreate) -> WebhookAccepted:
        """Check the URL (SSRF guard) and the tenant's endpoint count, make a secret,
        publish the registration.

        Every job event becomes a delivery per endpoint (a request event, a row in the
        delivery log, a POST), so the count is bounded (`max_per_tenant`): without it one
        tenant's thousands of endpoints would flood the broker and the indexer for every
        job, and point Scribe's POSTs at a host of its choosing thousands at a time. A
        tenant's registrations run one at a time on a replica, each waiting (briefly) to
        see itself projected, so a burst of them cannot all pass the count at once.
        """
        lock, users = self._registering.setdefault(tenant, (asyncio.Lock(), [0]))
        users[0] += 1
        try:
            async with lock:
                return await self._register(tenant, request)
        finally:
            users[0] -= 1
            if not users[0]:
                del self._registering[tenant]

    async def _register(self, tenant: str, request: WebhookCreate) -> WebhookAccepted:
        try:
            await resolve_allowed_url(request.url, self._allowed_hosts)
        except ForbiddenUrlError as exc:
            raise InvalidInputError(
                INVALID_WEBHOOK_URL,
                f"the webhook URL is refused: {exc.reason}",
                details=[{"loc": ["body", "url"], "msg": exc.reason, "type": exc.code}],
            ) from None
        live = await self._queries.webhooks(tenant)
        if len(live) >= self._max:
            raise ConflictError(
                WEBHOOK_LIMIT_REACHED,
                f"this tenant already has {len(live)} webhook endpoints (limit {self._max}); "
                "delete one first",
            )
        event_types = list(dict.fromkeys(request.event_types))
        event = WebhookEndpointRegisteredV1(
            job_id=uuid4(),
            tenant_id=tenant,
            producer=PRODUCER,
            url=request.url,
            event_types=event_types,
            secret=new_secret(),
            description=request.description,
        )
        await self._send(event)
        log.info("webhook_registered", endpoint_id=str(event.endpoint_id), url=request.url)
        await self._until_projected(tenant, event.endpoint_id)
        return WebhookAccepted(
            id=event.endpoint_id,
            url=event.url,
            event_types=event.event_types,
            description=event.description,
            secret=event.secret,
        )

    async def _until_projected(self, tenant: str, endpoint_id: UUID) -> None:
        """Wait (up to `PROJECTION_WAIT_SECONDS`) until reads see the endpoint, so the next
        registration of the tenant counts it; the answer is the same either way."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + PROJECTION_WAIT_SECONDS
        pause = 0.005
        while await self._queries.webhook(tenant, endpoint_id) is None:
            if loop.time() >= deadline:
                log.warning("webhook_registration_not_projected_yet", endpoint_id=str(endpoint_id))
                return
            await asyncio.sleep(pause)
            pause = min(pause * 2, 0.2)

    async def list(self, tenant: str) -> WebhookList:
        return WebhookList(data=await self._queries.webhooks(tenant))

    async def get(self, tenant: str, endpoint_id: UUID) -> WebhookOut:
        found = await self._queries.webhook(tenant, endpoint_id)
        if found is None:
            raise WebhookNotFoundError(f"no webhook {str(endpoint_id)!r}")
        return found

    async def delete(self, tenant: str, endpoint_id: UUID) -> None:
        await self.get(tenant, endpoint_id)
        await self._send(
            WebhookEndpointDeletedV1(job_id=endpoint_id, tenant_id=tenant, producer=PRODUCER)
        )
        log.info("webhook_deleted", endpoint_id=str(endpoint_id))

    async def rotate(self, tenant: str, endpoint_id: UUID) -> WebhookAccepted:
        await self.get(tenant, endpoint_id)
        event = WebhookEndpointSecretRotatedV1(
            job_id=endpoint_id, tenant_id=tenant, producer=PRODUCER, secret=new_secret()
        )
        await self._send(event)
        log.info("webhook_secret_rotated", endpoint_id=str(endpoint_id))
        return WebhookAccepted(id=endpoint_id, secret=event.secret)

    async def deliveries(self, tenant: str, endpoint_id: UUID, limit: int) -> DeliveryList:
        await self.get(tenant, endpoint_id)
        return DeliveryList(data=await self._queries.webhook_deliveries(tenant, endpoint_id, limit))

    async def replay(self, tenant: str, endpoint_id: UUID, delivery_id: UUID) -> ReplayAccepted:
        await self.get(tenant, endpoint_id)
        found = await self._queries.webhook_delivery_request(tenant, endpoint_id, delivery_id)
        if found is None:
            raise WebhookNotFoundError(f"no delivery {str(delivery_id)!r} of this webhook")
        event = WebhookDeliveryRequestedV1(
            job_id=found.job_id,
            tenant_id=tenant,
            producer=PRODUCER,
            endpoint_id=endpoint_id,
            delivery_id=delivery_id,
            message_id=found.message_id,
            event_type=found.event_type,
            payload=found.payload,
            replay=True,
        )
        await self._send(event)
        log.info("webhook_delivery_replayed", delivery_id=str(delivery_id))
        return ReplayAccepted(id=delivery_id, webhook_id=found.message_id)

    async def _send(self, event: Event) -> None:
        try:
            await self._publish(event)
        except PublishFailedError as exc:
            raise UnavailableError(
                BROKER_UNAVAILABLE,
                "the broker did not take the change; retry shortly",
                retry_after_seconds=2,
            ) from exc
