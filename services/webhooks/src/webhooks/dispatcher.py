"""Fan-out and delivery: job events become signed HTTP POSTs, retried with backoff.

Two steps, two queues (`scribe_runtime.topology`):

1. `webhooks.job-events`: each terminal (or progress) event becomes one
   `webhook.delivery.requested.v1` per endpoint that subscribed to its type. Its
   `delivery_id` (and so the `webhook-id` header) derives from the endpoint and the job
   event, so a redelivered job event repeats the same delivery, never a new one.
2. `webhooks.deliveries`: each request is POSTed, signed per Standard Webhooks with the
   endpoint's current secret. Anything but a 2xx is retried through the queue's TTL'd
   stages (5 s ... 10 h); after the last one the delivery is `failed` in the log and can
   be replayed. Every attempt is published as `webhook.delivery.attempted.v1`, which
   the indexer projects into the delivery log.

An endpoint is its tenant's to choose, so it may be hostile: it may answer one header
line every few seconds for ever, stream an endless body, or resolve to a public address
for the check and a private one a moment later. So an attempt has one deadline for all of
it (resolve, connect, send, the status line and headers), the body of the answer is never
read, the request goes to the very address the SSRF guard checked, and each tenant has at
most `max_in_flight_per_tenant` attempts running in a dispatcher: a tenant's further
deliveries wait in the first retry stage, spending no retry, so the queue's other
tenants are never behind them.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Final
from uuid import UUID, uuid5

import httpx
import structlog
from standardwebhooks.webhooks import Webhook

from contracts.envelope import Event
from contracts.webhooks import (
    DeliveryOutcome,
    WebhookDeliveryAttemptedV1,
    WebhookDeliveryRequestedV1,
    WebhookEventType,
)
from scribe_runtime.amqp import Delivery, retries_done
from scribe_runtime.database import TRANSIENT_ERRORS
from scribe_runtime.netguard import ForbiddenUrlError, PinnedUrl, pinned_urls, resolve_allowed_url
from scribe_runtime.retry import DeferredError, TransientError
from webhooks.endpoints import Endpoint, EndpointDirectory

log = structlog.get_logger(__name__)

DELIVERY_NAMESPACE: Final = UUID("3e0d5a4c-7b8f-4c6e-9a1d-2f5b6c7d8e9f")
"""uuid5 namespace of delivery ids: stable per (endpoint, job event)."""
USER_AGENT: Final = "Scribe-Webhooks/0.1"
MAX_ERROR: Final = 1000

Publish = Callable[[Event], Awaitable[None]]


def delivery_id_for(endpoint_id: UUID, event_id: UUID) -> UUID:
    """The delivery of one job event to one endpoint, the same however often computed."""
    return uuid5(DELIVERY_NAMESPACE, f"{endpoint_id}/{event_id}")


def payload_of(event: Event) -> dict[str, object]:
    """The body: Standard Webhooks' `{type, timestamp, data}`, `data` the event itself."""
    return {
        "type": event.TYPE,
        "timestamp": event.occurred_at.isoformat(),
        "data": event.model_dump(mode="json"),
    }


def signed_headers(secret: str, message_id: str, at: datetime, body: str) -> dict[str, str]:
    """The Standard Webhooks headers of one attempt (signed by the reference library)."""
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": Webhook(secret).sign(message_id, at, body),
        "content-type": "application/json",
        "user-agent": USER_AGENT,
    }


class Dispatcher:
    """The two handlers, over the endpoint directory, the publisher and an HTTP client."""

    def __init__(
        self,
        endpoints: EndpointDirectory,
        publish: Publish,
        http: httpx.AsyncClient,
        *,
        producer: str,
        retry_delays: tuple[float, ...],
        allowed_hosts: frozenset[str],
        timeout_seconds: float = 10.0,
        max_in_flight_per_tenant: int = 8,
    ) -> None:
        self._endpoints = endpoints
        self._publish = publish
        self._http = http
        self._producer = producer
        self._retry_delays = retry_delays
        self._allowed_hosts = allowed_hosts
        self._timeout = timeout_seconds
        self._max_in_flight = max_in_flight_per_tenant
        self._in_flight: Counter[str] = Counter()

    async def on_job_event(self, event: Event, delivery: Delivery) -> None:
        """Fan one job event out: a delivery request per subscribed endpoint."""
        event_type: WebhookEventType = event.TYPE  # type: ignore[assignment]  # queue's bindings
        try:
            endpoints = await self._endpoints.subscribed(event.tenant_id, event_type)
        except TRANSIENT_ERRORS as exc:
            raise TransientError(f"endpoint database unavailable: {exc!r}") from exc
        if not endpoints:
            return
        payload = payload_of(event)
        # Confirmed concurrently: the requests of different endpoints have no order.
        await asyncio.gather(
            *(self._publish(self._request(event, event_type, e, payload)) for e in endpoints)
        )
        log.info("webhook_deliveries_requested", endpoints=len(endpoints), type=event.TYPE)

    def _request(
        self,
        event: Event,
        event_type: WebhookEventType,
        endpoint: Endpoint,
        payload: dict[str, object],
    ) -> WebhookDeliveryRequestedV1:
        delivery_id = delivery_id_for(endpoint.id, event.event_id)
        return WebhookDeliveryRequestedV1(
            # Stable too: a repeated fan-out is a duplicate the indexer ignores.
            event_id=uuid5(DELIVERY_NAMESPACE, f"{delivery_id}/requested"),
            job_id=event.job_id,
            tenant_id=event.tenant_id,
            correlation_id=event.correlation_id,
            producer=self._producer,
            endpoint_id=endpoint.id,
            delivery_id=delivery_id,
            message_id=f"msg_{delivery_id.hex}",
            event_type=event_type,
            payload=payload,
        )

    async def on_delivery_requested(
        self, request: WebhookDeliveryRequestedV1, delivery: Delivery
    ) -> None:
        """One attempt; raises `TransientError` (a retry stage) unless it ends here."""
        done = retries_done(delivery.headers)
        last = done >= len(self._retry_delays)
        try:
            endpoint = await self._endpoints.get(request.tenant_id, request.endpoint_id)
        except TRANSIENT_ERRORS as exc:
            raise TransientError(f"endpoint database unavailable: {exc!r}") from exc
        if endpoint is None:
            await self._report(request, done + 1, "cancelled", error="the endpoint was deleted")
            return
        tenant = request.tenant_id
        if self._in_flight[tenant] >= self._max_in_flight:
            raise DeferredError(
                f"tenant {tenant!r} has {self._in_flight[tenant]} webhook attempts in flight"
            )
        self._in_flight[tenant] += 1
        started = time.perf_counter()
        try:
            status, error = await self._attempt(endpoint, request)
        finally:
            self._in_flight[tenant] -= 1
            if not self._in_flight[tenant]:
                del self._in_flight[tenant]
        duration_ms = round((time.perf_counter() - started) * 1000, 2)
        if error is None:
            await self._report(request, done + 1, "delivered", status, duration_ms=duration_ms)
            return
        if last:
            await self._report(request, done + 1, "failed", status, error, duration_ms)
            log.warning("webhook_delivery_failed", delivery_id=str(request.delivery_id))
            return
        await self._report(
            request,
            done + 1,
            "retrying",
            status,
            error,
            duration_ms,
            next_attempt_at=datetime.now(UTC) + timedelta(seconds=self._retry_delays[done]),
        )
        raise TransientError(f"webhook delivery {request.delivery_id} failed: {error}")

    async def _attempt(
        self, endpoint: Endpoint, request: WebhookDeliveryRequestedV1
    ) -> tuple[int | None, str | None]:
        """POST once; the status code (if any) and the error (None when delivered)."""
        body = json.dumps(request.payload, separators=(",", ":"), ensure_ascii=False)
        try:
            async with asyncio.timeout(self._timeout):
                # Checked again at each attempt: DNS may point elsewhere since registration.
                target = await resolve_allowed_url(endpoint.url, self._allowed_hosts)
                at = datetime.now(UTC)
                headers = signed_headers(endpoint.secret, request.message_id, at, body)
                status = await self._post(target.host, pinned_urls(target), headers, body)
        except TimeoutError:
            return None, f"no answer within {self._timeout:g} s"
        except ForbiddenUrlError as exc:
            return None, f"refused by the SSRF guard: {exc.reason}"
        except httpx.HTTPError as exc:
            return None, f"{type(exc).__name__}: {exc}"[:MAX_ERROR]
        return status, None if 200 <= status < 300 else f"HTTP {status}"

    async def _post(
        self, host: str, targets: list[PinnedUrl], headers: dict[str, str], body: str
    ) -> int:
        """The status of a POST to the first address that takes the connection.

        Only the status line and headers are read: the answer's body is closed unread,
        so an endpoint streaming without end costs nothing.
        """
        last: httpx.ConnectError | None = None
        for pinned in targets:
            request = self._http.build_request(
                "POST",
                pinned.url,
                content=body.encode(),
                headers={**headers, "host": pinned.host_header},
                extensions={"sni_hostname": pinned.sni_hostname} if pinned.sni_hostname else {},
            )
            try:
                response = await self._http.send(request, stream=True)
            except httpx.ConnectError as exc:
                last = exc
                continue
            await response.aclose()
            return response.status_code
        raise last or httpx.ConnectError(f"{host} has no address")

    async def _report(
        self,
        request: WebhookDeliveryRequestedV1,
        attempt: int,
        outcome: DeliveryOutcome,
        status_code: int | None = None,
        error: str | None = None,
        duration_ms: float = 0.0,
        *,
        next_attempt_at: datetime | None = None,
    ) -> None:
        await self._publish(
            WebhookDeliveryAttemptedV1(
                job_id=request.job_id,
                tenant_id=request.tenant_id,
                correlation_id=request.correlation_id,
                producer=self._producer,
                endpoint_id=request.endpoint_id,
                delivery_id=request.delivery_id,
                attempt=attempt,
                outcome=outcome,
                status_code=status_code,
                error=error,
                duration_ms=duration_ms,
                next_attempt_at=next_attempt_at,
            )
        )
        log.info(
            "webhook_delivery_attempted",
            delivery_id=str(request.delivery_id),
            webhook_id=request.message_id,
            attempt=attempt,
            outcome=outcome,
            status_code=status_code,
            error=error,
        )
