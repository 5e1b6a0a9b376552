"""The webhook projection against a real PostgreSQL: any order, any duplication, one result.

And the dispatcher's read port, as the SELECT-only role: it sees an endpoint only for its
own tenant, with the newest secret, never once deleted.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid4

import asyncpg
import pytest

from contracts.envelope import Event
from contracts.webhooks import (
    WebhookDeliveryAttemptedV1,
    WebhookDeliveryRequestedV1,
    WebhookEndpointDeletedV1,
    WebhookEndpointRegisteredV1,
    WebhookEndpointSecretRotatedV1,
)
from indexer.migrate import prepare_database
from indexer.webhooks import PostgresWebhookStore
from ingest.failures import ConflictError
from ingest.queries import JobReader, open_reader_pool
from ingest.settings import IngestSettings
from ingest.webhook_models import WebhookAccepted, WebhookCreate, WebhookList
from ingest.webhook_registry import WebhookRegistry
from tests.support.servers import READER, as_role
from webhooks.endpoints import PostgresEndpoints

pytestmark = pytest.mark.integration

T0 = datetime.now(UTC) - timedelta(minutes=1)
OLD = "whsec_" + "A" * 43 + "="
NEW = "whsec_" + "B" * 43 + "="


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    await prepare_database(
        database_url, reader_role=READER, reader_password=None, tenants=("acme", "globex")
    )
    async with asyncpg.create_pool(database_url, min_size=1, max_size=2) as pool:
        yield pool


async def rows(pool: asyncpg.Pool) -> dict[str, list[Any]]:
    result = {}
    for table, order in (
        ("webhook_endpoints", "endpoint_id"),
        ("webhook_deliveries", "delivery_id"),
        ("webhook_delivery_attempts", "event_id"),
    ):
        found = await pool.fetch(f"SELECT to_jsonb(t) AS row FROM {table} t ORDER BY {order}")
        result[table] = [json.loads(r["row"]) for r in found]
    return result


def life_of_an_endpoint() -> list[Event]:
    endpoint, job, delivery = uuid4(), uuid4(), uuid4()
    common: dict[str, Any] = {"tenant_id": "acme", "producer": "test/1"}
    delivery_fields: dict[str, Any] = {
        **common,
        "job_id": job,
        "endpoint_id": endpoint,
        "delivery_id": delivery,
    }
    return [
        WebhookEndpointRegisteredV1(
            **common,
            job_id=endpoint,
            occurred_at=T0,
            url="http://127.0.0.1/h",
            event_types=["transcript.completed"],
            secret=OLD,
        ),
        WebhookEndpointSecretRotatedV1(
            **common, job_id=endpoint, occurred_at=T0 + timedelta(seconds=2), secret=NEW
        ),
        WebhookDeliveryRequestedV1(
            **delivery_fields,
            occurred_at=T0 + timedelta(seconds=1),
            message_id="msg_1",
            event_type="transcript.completed",
            payload={"type": "transcript.completed"},
        ),
        WebhookDeliveryAttemptedV1(
            **delivery_fields,
            occurred_at=T0 + timedelta(seconds=3),
            attempt=1,
            outcome="retrying",
            error="ConnectError",
        ),
        WebhookDeliveryAttemptedV1(
            **delivery_fields,
            occurred_at=T0 + timedelta(seconds=9),
            attempt=2,
            outcome="delivered",
            status_code=204,
        ),
    ]


async def test_any_order_with_duplicates_gives_the_same_rows(pool: asyncpg.Pool) -> None:
    events = life_of_an_endpoint()
    store = PostgresWebhookStore(pool)
    results = []
    for order in itertools.islice(itertools.permutations(events), 0, None, 17):
        await pool.execute(
            "TRUNCATE webhook_endpoints, webhook_deliveries, webhook_delivery_attempts, "
            "processed_events"
        )
        for event in (*order, *order[:2]):  # the first two delivered twice
            await store.apply(event)
        results.append(await rows(pool))
    assert len(results) > 5
    assert all(r == results[0] for r in results)
    (endpoint,) = results[0]["webhook_endpoints"]
    assert endpoint["secret"] == NEW  # the newest rotation, whatever arrived last
    assert len(results[0]["webhook_delivery_attempts"]) == 2


async def test_the_dispatcher_reads_only_live_endpoints_of_the_events_tenant(
    pool: asyncpg.Pool, database_url: str
) -> None:
    registered, rotated, *_ = life_of_an_endpoint()
    assert isinstance(registered, WebhookEndpointRegisteredV1)
    store = PostgresWebhookStore(pool)
    await store.apply(rotated)  # a rotation that overtook its registration
    await store.apply(registered)
    async with asyncpg.create_pool(as_role(database_url, READER), min_size=1) as reader:
        endpoints = PostgresEndpoints(reader)
        (found,) = await endpoints.subscribed("acme", "transcript.completed")
        assert (found.id, found.secret) == (registered.endpoint_id, NEW)
        assert await endpoints.subscribed("acme", "transcription.failed") == []
        assert await endpoints.subscribed("globex", "transcript.completed") == []
        assert await endpoints.get("globex", registered.endpoint_id) is None
        await store.apply(
            WebhookEndpointDeletedV1(
                tenant_id="acme", producer="test/1", job_id=registered.endpoint_id
            )
        )
        await store.apply(registered)  # a late duplicate cannot bring it back
        assert await endpoints.get("acme", registered.endpoint_id) is None
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await reader.execute("DELETE FROM webhook_endpoints")


async def test_a_burst_of_registrations_stops_at_the_tenants_limit(
    pool: asyncpg.Pool, database_url: str
) -> None:
    """Every job event becomes a delivery per endpoint, so a tenant's endpoints are
    bounded. Before: no bound at all; ten registrations at once (the indexer projecting
    each 30 ms after it is published) all passed."""
    store = PostgresWebhookStore(pool)
    projecting: set[asyncio.Task[object]] = set()

    async def publish(event: Event) -> None:  # the indexer, a little behind
        async def later() -> None:
            await asyncio.sleep(0.03)
            await store.apply(event)

        task = asyncio.create_task(later())
        projecting.add(task)
        task.add_done_callback(projecting.discard)

    settings = IngestSettings(database_url=as_role(database_url, READER))
    async with open_reader_pool(settings) as reader_pool:
        registry = WebhookRegistry(
            publish,
            JobReader.from_settings(reader_pool, settings),
            allowed_hosts=frozenset({"127.0.0.1"}),
            max_per_tenant=3,
        )
        hook = WebhookCreate(url="http://127.0.0.1/h")
        outcomes = await asyncio.gather(
            *(registry.register("acme", hook) for _ in range(10)), return_exceptions=True
        )
        accepted = [o for o in outcomes if isinstance(o, WebhookAccepted)]
        refused = [o for o in outcomes if isinstance(o, ConflictError)]
        assert (len(accepted), len(refused)) == (3, 7), outcomes
        assert {r.code for r in refused} == {"webhook_limit_reached"}
        assert "limit 3" in refused[0].message
        assert isinstance(await registry.register("globex", hook), WebhookAccepted)
        await asyncio.gather(*projecting)
        listed = await registry.list("acme")
        assert isinstance(listed, WebhookList)
        assert len(listed.data) == 3
