"""The dispatcher's endpoint cache against a real PostgreSQL: never staler than a NOTIFY.

The indexer (the writer) projects endpoint events; migration 0013's trigger announces each
change; `CachedEndpoints`, reading as the SELECT-only role, drops that tenant's entry. With
its listener connection gone it answers every lookup from PostgreSQL until LISTEN is back.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from uuid import UUID, uuid4

import asyncpg
import pytest

from contracts.webhooks import WebhookEndpointDeletedV1, WebhookEndpointRegisteredV1
from indexer.migrate import prepare_database
from indexer.webhooks import PostgresWebhookStore
from tests.support.servers import READER, as_role, unique_name
from tests.support.waiting import eventually_async
from webhooks.endpoints import LISTENER_NAME, CachedEndpoints, Endpoint

pytestmark = pytest.mark.integration

SECRET = "whsec_" + "A" * 43 + "="
WITHIN = 20.0  # seconds: a bound for a NOTIFY's delivery on a loaded machine, not a timing


@pytest.fixture
async def writer(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    await prepare_database(
        database_url, reader_role=READER, reader_password=None, tenants=("acme", "globex")
    )
    async with asyncpg.create_pool(database_url, min_size=1, max_size=2) as pool:
        yield pool


@pytest.fixture
async def reader(writer: asyncpg.Pool, database_url: str) -> AsyncIterator[asyncpg.Pool]:
    async with asyncpg.create_pool(as_role(database_url, READER), min_size=1, max_size=2) as pool:
        yield pool


async def listening(endpoints: CachedEndpoints) -> bool:
    return endpoints.listening


async def register(writer: asyncpg.Pool, tenant: str = "acme") -> UUID:
    event = WebhookEndpointRegisteredV1(
        tenant_id=tenant,
        producer="test/1",
        job_id=uuid4(),
        url="http://127.0.0.1/h",
        event_types=["transcript.completed"],
        secret=SECRET,
    )
    await PostgresWebhookStore(writer).apply(event)
    return event.endpoint_id


async def delete(writer: asyncpg.Pool, endpoint: UUID, tenant: str = "acme") -> None:
    await PostgresWebhookStore(writer).apply(
        WebhookEndpointDeletedV1(tenant_id=tenant, producer="test/1", job_id=endpoint)
    )


def ids(found: list[Endpoint]) -> list[UUID]:
    return [e.id for e in found]


async def test_an_endpoint_registered_after_the_tenant_was_cached_is_seen(
    writer: asyncpg.Pool, reader: asyncpg.Pool, database_url: str
) -> None:
    async with CachedEndpoints(reader, as_role(database_url, READER)) as endpoints:
        await eventually_async(lambda: listening(endpoints), within=WITHIN, what="LISTEN")
        assert await endpoints.subscribed("acme", "transcript.completed") == []
        assert await endpoints.subscribed("acme", "transcript.completed") == []
        assert endpoints.hits == 1  # the second answered from memory: no endpoint, no query

        endpoint = await register(writer)

        async def seen() -> bool:
            return ids(await endpoints.subscribed("acme", "transcript.completed")) == [endpoint]

        await eventually_async(seen, within=WITHIN, what="the new endpoint")
        found = await endpoints.get("acme", endpoint)
        assert found is not None
        assert found.secret == SECRET
        # Scoped as before: another tenant's lookup neither sees it nor is invalidated by it.
        assert await endpoints.subscribed("globex", "transcript.completed") == []
        assert await endpoints.get("globex", endpoint) is None
        assert await endpoints.subscribed("acme", "transcription.failed") == []


async def test_a_deleted_endpoint_stops_being_delivered(
    writer: asyncpg.Pool, reader: asyncpg.Pool, database_url: str
) -> None:
    kept, gone = await register(writer), await register(writer)
    async with CachedEndpoints(reader, as_role(database_url, READER)) as endpoints:
        await eventually_async(lambda: listening(endpoints), within=WITHIN, what="LISTEN")
        assert set(ids(await endpoints.subscribed("acme", "transcript.completed"))) == {kept, gone}
        assert await endpoints.get("acme", gone) is not None
        hits = endpoints.hits
        assert await endpoints.get("acme", gone) is not None
        assert endpoints.hits == hits + 1

        await delete(writer, gone)

        async def forgotten() -> bool:
            return await endpoints.get("acme", gone) is None

        await eventually_async(forgotten, within=WITHIN, what="the deleted endpoint forgotten")
        assert ids(await endpoints.subscribed("acme", "transcript.completed")) == [kept]

        # A TRUNCATE (an operator, a test) names no tenant: every entry goes.
        await writer.execute("TRUNCATE webhook_endpoints")

        async def emptied() -> bool:
            return await endpoints.subscribed("acme", "transcript.completed") == []

        await eventually_async(emptied, within=WITHIN, what="the truncated endpoints forgotten")


async def test_without_its_listener_the_cache_is_bypassed_then_back_after_reconnecting(
    writer: asyncpg.Pool, reader: asyncpg.Pool, database_url: str
) -> None:
    # The listener logs in as a role of its own (no privilege at all: LISTEN needs none),
    # so that the test can keep it from reconnecting while the reader's pool carries on.
    role = unique_name("listener")
    await writer.execute(f'CREATE ROLE "{role}" LOGIN')
    try:
        async with CachedEndpoints(
            reader, as_role(database_url, role), reconnect_delays=(0.1,)
        ) as endpoints:
            await eventually_async(lambda: listening(endpoints), within=WITHIN, what="LISTEN")
            assert await endpoints.subscribed("acme", "transcript.completed") == []
            assert await endpoints.subscribed("acme", "transcript.completed") == []
            assert endpoints.hits == 1

            await writer.execute(f'ALTER ROLE "{role}" NOLOGIN')
            terminated = await writer.fetchval(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE application_name = $1 AND datname = current_database()",
                LISTENER_NAME,
            )
            assert terminated == 1

            async def down() -> bool:
                return not endpoints.listening

            await eventually_async(down, within=WITHIN, what="the listener seen lost")
            # Down, and unable to reconnect: whatever was cached is gone, every lookup reads.
            endpoint = await register(writer)
            assert ids(await endpoints.subscribed("acme", "transcript.completed")) == [endpoint]
            await delete(writer, endpoint)
            assert await endpoints.subscribed("acme", "transcript.completed") == []
            hits = endpoints.hits
            await endpoints.subscribed("acme", "transcript.completed")
            assert endpoints.hits == hits

            await writer.execute(f'ALTER ROLE "{role}" LOGIN')
            await eventually_async(lambda: listening(endpoints), within=WITHIN, what="reconnect")
            # Cached again, and invalidated again.
            assert await endpoints.subscribed("acme", "transcript.completed") == []
            assert await endpoints.subscribed("acme", "transcript.completed") == []
            assert endpoints.hits == hits + 1
            again = await register(writer)

            async def seen() -> bool:
                return ids(await endpoints.subscribed("acme", "transcript.completed")) == [again]

            await eventually_async(seen, within=WITHIN, what="the endpoint after reconnecting")
    finally:
        await writer.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1", role
        )
        await writer.execute(f'DROP ROLE IF EXISTS "{role}"')


async def test_the_cache_keeps_at_most_its_bound_of_tenants(
    writer: asyncpg.Pool, reader: asyncpg.Pool, database_url: str
) -> None:
    async with CachedEndpoints(reader, as_role(database_url, READER), max_tenants=2) as endpoints:
        await eventually_async(lambda: listening(endpoints), within=WITHIN, what="LISTEN")
        for tenant in ("t1", "t2", "t1", "t3"):  # t3 pushes out t2, the least recently used
            await endpoints.subscribed(tenant, "transcript.completed")
        assert (endpoints.hits, endpoints.misses) == (1, 3)
        await endpoints.subscribed("t1", "transcript.completed")
        await endpoints.subscribed("t2", "transcript.completed")
        assert (endpoints.hits, endpoints.misses) == (2, 4)


async def test_an_unexpected_listener_error_is_retried_not_the_end_of_caching(
    reader: asyncpg.Pool, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    endpoints = CachedEndpoints(reader, as_role(database_url, READER), reconnect_delays=(0.05,))
    listen_once = endpoints._listen_once
    calls = 0

    async def failing_once() -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("an unexpected reply")
        await listen_once()

    monkeypatch.setattr(endpoints, "_listen_once", failing_once)
    async with endpoints:
        await eventually_async(
            lambda: listening(endpoints), within=WITHIN, what="LISTEN after the error"
        )
        assert calls == 2
