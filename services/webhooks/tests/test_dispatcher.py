"""The dispatcher over fakes: fan-out, Standard Webhooks signatures, the retry schedule.

The receiver is httpx's `MockTransport` and the endpoint directory a fake port; the real
broker, database and HTTP server run in `tests/e2e/test_webhooks.py`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from uuid import UUID, uuid4

import httpx
import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from contracts import TranscriptCompletedV1, TranscriptionFailedV1
from contracts.envelope import Event
from contracts.errors import ErrorCode
from contracts.webhooks import WebhookDeliveryAttemptedV1, WebhookDeliveryRequestedV1
from scribe_runtime.amqp import HEADER_RETRY, Delivery
from scribe_runtime.retry import DeferredError, TransientError
from scribe_runtime.topology import WEBHOOK_DELIVERY_QUEUE
from webhooks.dispatcher import Dispatcher, delivery_id_for
from webhooks.endpoints import Endpoint

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
ENDPOINT = Endpoint(UUID("7d3c2b1a-0f9e-4d8c-b7a6-958473625140"), "http://127.0.0.1/h", SECRET)


class FakeEndpoints:
    def __init__(self, *endpoints: Endpoint) -> None:
        self.endpoints = {e.id: e for e in endpoints}

    async def subscribed(self, tenant: str, event_type: str) -> list[Endpoint]:
        return list(self.endpoints.values())

    async def get(self, tenant: str, endpoint_id: UUID) -> Endpoint | None:
        return self.endpoints.get(endpoint_id)


class Harness:
    def __init__(self, status: int = 204, *endpoints: Endpoint) -> None:
        self.status = status
        self.requests: list[httpx.Request] = []
        self.published: list[Event] = []
        transport = httpx.MockTransport(self._answer)
        self.dispatcher = Dispatcher(
            FakeEndpoints(*(endpoints or (ENDPOINT,))),
            self._publish,
            httpx.AsyncClient(transport=transport),
            producer="scribe-webhooks/test",
            retry_delays=WEBHOOK_DELIVERY_QUEUE.retry_delays,
            allowed_hosts=frozenset({"127.0.0.1"}),
        )

    def _answer(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return httpx.Response(self.status)

    async def _publish(self, event: Event) -> None:
        self.published.append(event)

    def attempts(self) -> list[WebhookDeliveryAttemptedV1]:
        return [e for e in self.published if isinstance(e, WebhookDeliveryAttemptedV1)]


def completed() -> TranscriptCompletedV1:
    return TranscriptCompletedV1(
        job_id=uuid4(),
        tenant_id="acme",
        producer="t/1",
        language="en",
        language_probability=0.9,
        duration_seconds=1.0,
        model="tiny",
        text="hello",
        segments=[],
    )


async def request_for(harness: Harness, event: Event) -> WebhookDeliveryRequestedV1:
    await harness.dispatcher.on_job_event(event, Delivery(body=b""))
    (request,) = [e for e in harness.published if isinstance(e, WebhookDeliveryRequestedV1)]
    harness.published.clear()
    return request


async def test_a_delivery_is_signed_so_the_reference_library_verifies_it() -> None:
    harness = Harness()
    event = completed()
    request = await request_for(harness, event)
    assert request.delivery_id == delivery_id_for(ENDPOINT.id, event.event_id)
    await harness.dispatcher.on_delivery_requested(request, Delivery(body=b""))
    (sent,) = harness.requests
    headers = dict(sent.headers)
    body = Webhook(SECRET).verify(sent.content, headers)
    assert body["type"] == "transcript.completed"
    assert body["data"]["text"] == "hello"
    assert headers["webhook-id"] == request.message_id
    with pytest.raises(WebhookVerificationError):
        Webhook("whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD").verify(sent.content, headers)
    (attempt,) = harness.attempts()
    assert (attempt.outcome, attempt.status_code, attempt.attempt) == ("delivered", 204, 1)


async def test_the_same_job_event_always_makes_the_same_delivery() -> None:
    harness = Harness()
    event = completed()
    first = await request_for(harness, event)
    again = await request_for(harness, event)
    assert (first.delivery_id, first.message_id, first.event_id) == (
        again.delivery_id,
        again.message_id,
        again.event_id,
    )


async def test_a_failed_attempt_is_retried_with_backoff_and_the_last_is_failed() -> None:
    harness = Harness(503)
    failed = TranscriptionFailedV1(
        job_id=uuid4(),
        tenant_id="acme",
        producer="t/1",
        code=ErrorCode.UNSUPPORTED_MEDIA,
        message="no",
    )
    request = await request_for(harness, failed)
    with pytest.raises(TransientError):
        await harness.dispatcher.on_delivery_requested(request, Delivery(body=b""))
    (first,) = harness.attempts()
    assert (first.outcome, first.status_code) == ("retrying", 503)
    assert first.next_attempt_at is not None
    stages = len(WEBHOOK_DELIVERY_QUEUE.retry_delays)
    last = Delivery(body=b"", headers={HEADER_RETRY: stages})
    await harness.dispatcher.on_delivery_requested(request, last)  # no raise: it ends here
    final = harness.attempts()[-1]
    assert (final.outcome, final.attempt, final.next_attempt_at) == ("failed", stages + 1, None)
    # Every try carried the same webhook-id, so a receiver can deduplicate.
    assert {r.headers["webhook-id"] for r in harness.requests} == {request.message_id}


async def test_a_deleted_endpoint_cancels_its_pending_delivery() -> None:
    harness = Harness()
    request = await request_for(harness, completed())
    harness.dispatcher._endpoints = FakeEndpoints()  # deleted meanwhile
    await harness.dispatcher.on_delivery_requested(request, Delivery(body=b""))
    assert harness.requests == []
    assert harness.attempts()[-1].outcome == "cancelled"


async def test_a_private_url_not_allow_listed_is_never_requested() -> None:
    inside = Endpoint(uuid4(), "http://10.1.2.3/hook", SECRET)
    harness = Harness(204, inside)
    request = await request_for(harness, completed())
    with pytest.raises(TransientError):
        await harness.dispatcher.on_delivery_requested(request, Delivery(body=b""))
    assert harness.requests == []
    assert "SSRF" in (harness.attempts()[-1].error or "")


async def test_a_job_event_becomes_one_request_per_endpoint_and_none_without_endpoints() -> None:
    others = [Endpoint(uuid4(), f"http://127.0.0.1/h{i}", SECRET) for i in range(3)]
    harness = Harness(204, ENDPOINT, *others)
    event = completed()
    await harness.dispatcher.on_job_event(event, Delivery(body=b""))
    requests = [e for e in harness.published if isinstance(e, WebhookDeliveryRequestedV1)]
    assert sorted(r.endpoint_id for r in requests) == sorted([ENDPOINT.id, *(e.id for e in others)])
    assert {r.delivery_id for r in requests} == {
        delivery_id_for(r.endpoint_id, event.event_id) for r in requests
    }
    assert all(r.payload["type"] == "transcript.completed" for r in requests)
    published: list[Event] = []

    async def publish(e: Event) -> None:
        published.append(e)

    quiet = Dispatcher(
        FakeEndpoints(),
        publish,
        httpx.AsyncClient(transport=httpx.MockTransport(lambda r: httpx.Response(204))),
        producer="scribe-webhooks/test",
        retry_delays=WEBHOOK_DELIVERY_QUEUE.retry_delays,
        allowed_hosts=frozenset({"127.0.0.1"}),
    )
    await quiet.on_job_event(completed(), Delivery(body=b""))
    assert published == []


# --- Hostile endpoints: an endpoint is the tenant's to choose -------------------------------


def completed_for(tenant: str) -> TranscriptCompletedV1:
    return completed().model_copy(update={"tenant_id": tenant})


@asynccontextmanager
async def hostile_server(answer: bytes, then: bytes, every: float) -> AsyncIterator[str]:
    """A server on 127.0.0.1 that reads the request, writes `answer`, then `then` every
    `every` seconds for as long as the client listens; its URL."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(65536)
        with contextlib.suppress(ConnectionError):
            writer.write(answer)
            while True:
                await writer.drain()
                await asyncio.sleep(every)
                writer.write(then)

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        yield f"http://127.0.0.1:{port}/hook"


def real_dispatcher(harness: Harness, url: str, timeout: float) -> Dispatcher:
    return Dispatcher(
        FakeEndpoints(Endpoint(ENDPOINT.id, url, SECRET)),
        harness._publish,
        httpx.AsyncClient(timeout=timeout, follow_redirects=False, trust_env=False),
        producer="scribe-webhooks/test",
        retry_delays=WEBHOOK_DELIVERY_QUEUE.retry_delays,
        allowed_hosts=frozenset({"127.0.0.1"}),
        timeout_seconds=timeout,
    )


async def test_an_endpoint_dripping_its_headers_is_cut_off_at_the_deadline() -> None:
    """Before: httpx's timeout is per read, so a header line every 0.2 s kept the attempt
    (and its slot) for ever."""
    harness = Harness()
    async with hostile_server(b"HTTP/1.1 200 OK\r\n", b"X-Slow: 1\r\n", 0.2) as url:
        dispatcher = real_dispatcher(harness, url, timeout=1.0)
        request = await request_for(harness, completed())
        started = time.monotonic()
        with pytest.raises(TransientError):
            await asyncio.wait_for(dispatcher.on_delivery_requested(request, Delivery(b"")), 15)
        assert time.monotonic() - started < 5
    (attempt,) = harness.attempts()
    assert (attempt.outcome, attempt.error) == ("retrying", "no answer within 1 s")


async def test_an_endless_answer_body_is_never_read() -> None:
    """Before: the whole body was read into memory, so an endless one never finished."""
    harness = Harness()
    head = b"HTTP/1.1 200 OK\r\nContent-Length: 1000000000000\r\n\r\n"
    async with hostile_server(head, b"x" * 65536, 0.0) as url:
        dispatcher = real_dispatcher(harness, url, timeout=5.0)
        request = await request_for(harness, completed())
        await asyncio.wait_for(dispatcher.on_delivery_requested(request, Delivery(b"")), 15)
    (attempt,) = harness.attempts()
    assert (attempt.outcome, attempt.status_code) == ("delivered", 200)


async def test_the_request_goes_to_the_address_the_guard_checked() -> None:
    """Before: httpx resolved the name again, so a DNS answer that changed after the check
    (rebinding to a private address) was connected to."""
    harness = Harness(204, Endpoint(ENDPOINT.id, "http://localhost:8123/hook", SECRET))
    harness.dispatcher._allowed_hosts = frozenset({"localhost"})
    request = await request_for(harness, completed())
    await harness.dispatcher.on_delivery_requested(request, Delivery(body=b""))
    (sent,) = harness.requests
    assert sent.url.host in {"127.0.0.1", "::1"}
    assert sent.url.port == 8123
    assert sent.headers["host"] == "localhost:8123"
    Webhook(SECRET).verify(sent.content, dict(sent.headers))


async def test_a_tenant_at_its_limit_is_deferred_and_another_tenant_goes_through() -> None:
    release = asyncio.Event()

    async def answer(request: httpx.Request) -> httpx.Response:
        if json.loads(request.content)["data"]["tenant_id"] == "acme":
            await release.wait()
        return httpx.Response(204)

    published: list[Event] = []

    async def publish(event: Event) -> None:
        published.append(event)

    dispatcher = Dispatcher(
        FakeEndpoints(ENDPOINT),
        publish,
        httpx.AsyncClient(transport=httpx.MockTransport(answer)),
        producer="scribe-webhooks/test",
        retry_delays=WEBHOOK_DELIVERY_QUEUE.retry_delays,
        allowed_hosts=frozenset({"127.0.0.1"}),
        max_in_flight_per_tenant=2,
    )
    harness = Harness()
    acme = [await request_for(harness, completed_for("acme")) for _ in range(3)]
    slow = [
        asyncio.create_task(dispatcher.on_delivery_requested(r, Delivery(b""))) for r in acme[:2]
    ]
    await asyncio.sleep(0.1)
    with pytest.raises(DeferredError, match="'acme' has 2 webhook attempts in flight"):
        await dispatcher.on_delivery_requested(acme[2], Delivery(b""))
    globex = await request_for(harness, completed_for("globex"))
    await asyncio.wait_for(dispatcher.on_delivery_requested(globex, Delivery(b"")), 5)
    outcomes = [
        (e.tenant_id, e.outcome) for e in published if isinstance(e, WebhookDeliveryAttemptedV1)
    ]
    assert outcomes == [("globex", "delivered")]  # the deferral is no attempt
    release.set()
    await asyncio.gather(*slow)
    await dispatcher.on_delivery_requested(acme[2], Delivery(b""))  # its turn now
    assert len([e for e in published if isinstance(e, WebhookDeliveryAttemptedV1)]) == 4
