"""Registered endpoints, read through the SELECT-only role (the indexer writes them)."""

from __future__ import annotations

import asyncio
import contextlib
from collections import OrderedDict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Final, Protocol
from uuid import UUID

import asyncpg
import structlog
from asyncpg.pool import PoolConnectionProxy

from scribe_runtime.database import TRANSIENT_ERRORS

log = structlog.get_logger()

_LIVE = "deleted_at IS NULL AND url IS NOT NULL AND secret IS NOT NULL"
_CONNECTION_ERRORS: Final[tuple[type[BaseException], ...]] = (
    *TRANSIENT_ERRORS,
    asyncpg.PostgresError,
)


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where to deliver, and the secret to sign with."""

    id: UUID
    url: str
    secret: str


class EndpointDirectory(Protocol):
    """Which endpoints of a tenant want an event type; one endpoint by id."""

    async def subscribed(self, tenant: str, event_type: str) -> list[Endpoint]: ...

    async def get(self, tenant: str, endpoint_id: UUID) -> Endpoint | None: ...


@asynccontextmanager
async def _tenant(
    pool: asyncpg.Pool, tenant: str
) -> AsyncIterator[PoolConnectionProxy[asyncpg.Record]]:
    """A read-only transaction that RLS scopes to `tenant`."""
    async with pool.acquire() as conn, conn.transaction(readonly=True):
        await conn.execute("SELECT set_config('scribe.tenant_id', $1, true)", tenant)
        yield conn


class PostgresEndpoints:
    """`EndpointDirectory` over the reader role: read-only, scoped to one tenant (RLS)."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def subscribed(self, tenant: str, event_type: str) -> list[Endpoint]:
        async with _tenant(self._pool, tenant) as conn:
            rows = await conn.fetch(
                "SELECT endpoint_id, url, secret FROM webhook_endpoints "
                f"WHERE tenant_id = $1 AND $2 = ANY(event_types) AND {_LIVE} "
                "ORDER BY endpoint_id",
                tenant,
                event_type,
            )
        return [Endpoint(r["endpoint_id"], r["url"], r["secret"]) for r in rows]

    async def get(self, tenant: str, endpoint_id: UUID) -> Endpoint | None:
        async with _tenant(self._pool, tenant) as conn:
            row = await conn.fetchrow(
                "SELECT endpoint_id, url, secret FROM webhook_endpoints "
                f"WHERE tenant_id = $1 AND endpoint_id = $2 AND {_LIVE}",
                tenant,
                endpoint_id,
            )
        return Endpoint(row["endpoint_id"], row["url"], row["secret"]) if row else None


CHANNEL: Final = "scribe_webhook_endpoints"
"""Where migration 0013's trigger announces a tenant whose endpoints changed ('' = all)."""

LISTENER_NAME: Final = "scribe-webhooks/endpoint-listener"
"""The listener connection's `application_name`, to find it in `pg_stat_activity`."""


@dataclass(frozen=True, slots=True)
class _Live:
    endpoint: Endpoint
    event_types: frozenset[str]


class CachedEndpoints:
    """`PostgresEndpoints` with each tenant's live endpoints kept in memory.

    Most job events belong to tenants without an endpoint; asking PostgreSQL so for each
    one is a read-only transaction (four round trips) per event. Here a tenant's endpoints
    are read once and kept (an LRU of `max_tenants`) until PostgreSQL announces a change:
    migration 0013's trigger NOTIFYs `CHANNEL` with the tenant, delivered at commit to a
    dedicated connection that LISTENs, and the tenant's entry is dropped. So a lookup is
    never staler than the delivery of that notification.

    Whenever LISTEN is not in place (not yet connected, the connection lost, reconnecting)
    the cache is empty and bypassed: every lookup queries, as `PostgresEndpoints` does.
    Once LISTEN is back it is cleared again, since notifications of the gap are lost. A
    read that overlaps a notification (or a clear) is answered but not kept: it may have
    read the rows before the change it announces.
    """

    def __init__(
        self,
        pool: asyncpg.Pool,
        listener_dsn: str,
        *,
        max_tenants: int = 4096,
        check_interval: float = 5.0,
        reconnect_delays: tuple[float, ...] = (0.1, 0.5, 1.0, 2.0, 5.0),
    ) -> None:
        self._pool = pool
        self._dsn = listener_dsn
        self._max = max_tenants
        self._check_interval = check_interval
        self._reconnect_delays = reconnect_delays
        self._entries: OrderedDict[str, tuple[_Live, ...]] = OrderedDict()
        self._listening = False
        # Bumped by every notification and clear: a read that started before a bump is
        # not kept.
        self._generation = 0
        self._task: asyncio.Task[None] | None = None
        self.hits = 0
        self.misses = 0

    @property
    def listening(self) -> bool:
        """True while LISTEN is established, so lookups may be answered from memory."""
        return self._listening

    async def start(self) -> None:
        """Start listening in the background; lookups query until LISTEN is established."""
        if self._task is None and self._max > 0:
            self._task = asyncio.create_task(self._listen(), name="endpoint-listener")

    async def stop(self) -> None:
        """Stop listening and forget every entry."""
        task, self._task = self._task, None
        self._listening = False  # stopping, not lost: nothing to warn about
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._bypass()

    async def __aenter__(self) -> CachedEndpoints:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def subscribed(self, tenant: str, event_type: str) -> list[Endpoint]:
        return [e.endpoint for e in await self._live(tenant) if event_type in e.event_types]

    async def get(self, tenant: str, endpoint_id: UUID) -> Endpoint | None:
        for live in await self._live(tenant):
            if live.endpoint.id == endpoint_id:
                return live.endpoint
        return None

    async def _live(self, tenant: str) -> tuple[_Live, ...]:
        if self._listening:
            found = self._entries.get(tenant)
            if found is not None:
                self._entries.move_to_end(tenant)
                self.hits += 1
                return found
        self.misses += 1
        generation = self._generation
        async with _tenant(self._pool, tenant) as conn:
            rows = await conn.fetch(
                "SELECT endpoint_id, url, secret, event_types FROM webhook_endpoints "
                f"WHERE tenant_id = $1 AND {_LIVE} ORDER BY endpoint_id",
                tenant,
            )
        live = tuple(
            _Live(
                Endpoint(r["endpoint_id"], r["url"], r["secret"]),
                frozenset(r["event_types"] or ()),
            )
            for r in rows
        )
        if self._listening and generation == self._generation:
            self._entries[tenant] = live
            self._entries.move_to_end(tenant)
            if len(self._entries) > self._max:
                self._entries.popitem(last=False)
        return live

    def _on_notification(self, _conn: object, _pid: int, _channel: str, payload: object) -> None:
        self._generation += 1
        if payload:
            self._entries.pop(str(payload), None)
        else:
            self._entries.clear()

    def _bypass(self) -> None:
        if self._listening:
            log.warning("webhook_endpoint_cache_bypassed", reason="listener connection down")
        self._listening = False
        self._generation += 1
        self._entries.clear()

    def _enable(self) -> None:
        self._generation += 1
        self._entries.clear()
        self._listening = True
        log.info("webhook_endpoint_cache_enabled", channel=CHANNEL)

    async def _listen(self) -> None:
        failures = 0
        while True:
            try:
                await self._listen_once()
            except _CONNECTION_ERRORS as exc:
                error = repr(exc)
            except Exception as exc:
                # Anything else (a driver bug, an unexpected reply) must not end the task
                # unseen: the cache would stay bypassed for good with nothing said.
                log.exception("webhook_endpoint_listener_failed")
                error = repr(exc)
            else:
                error, failures = "connection lost", 0  # it was up: retry soon
            self._bypass()
            delay = self._reconnect_delays[min(failures, len(self._reconnect_delays) - 1)]
            failures += 1
            log.warning("webhook_endpoint_listener_down", error=error, retry_in_s=delay)
            await asyncio.sleep(delay)

    async def _listen_once(self) -> None:
        conn = await asyncpg.connect(
            self._dsn, timeout=10, server_settings={"application_name": LISTENER_NAME}
        )
        lost = asyncio.Event()

        def on_lost(_conn: object) -> None:
            # At once, not when this task next runs: no lookup may use the cache from now.
            self._bypass()
            lost.set()

        conn.add_termination_listener(on_lost)
        try:
            await conn.add_listener(CHANNEL, self._on_notification)
            self._enable()
            while not lost.is_set():
                try:
                    await asyncio.wait_for(lost.wait(), self._check_interval)
                except TimeoutError:
                    # A connection that died silently (a network partition) delivers nothing
                    # and says nothing; a round trip finds out.
                    await conn.fetchval("SELECT 1", timeout=self._check_interval)
        finally:
            self._bypass()
            conn.terminate()
