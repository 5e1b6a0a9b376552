"""Registered endpoints, read through the SELECT-only role (the indexer writes them)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Protocol
from uuid import UUID

import asyncpg
from asyncpg.pool import PoolConnectionProxy

_LIVE = "deleted_at IS NULL AND url IS NOT NULL AND secret IS NOT NULL"


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


class PostgresEndpoints:
    """`EndpointDirectory` over the reader role: read-only, scoped to one tenant (RLS)."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    @asynccontextmanager
    async def _tenant(self, tenant: str) -> AsyncIterator[PoolConnectionProxy[asyncpg.Record]]:
        async with self._pool.acquire() as conn, conn.transaction(readonly=True):
            await conn.execute("SELECT set_config('scribe.tenant_id', $1, true)", tenant)
            yield conn

    async def subscribed(self, tenant: str, event_type: str) -> list[Endpoint]:
        async with self._tenant(tenant) as conn:
            rows = await conn.fetch(
                "SELECT endpoint_id, url, secret FROM webhook_endpoints "
                f"WHERE tenant_id = $1 AND $2 = ANY(event_types) AND {_LIVE} "
                "ORDER BY endpoint_id",
                tenant,
                event_type,
            )
        return [Endpoint(r["endpoint_id"], r["url"], r["secret"]) for r in rows]

    async def get(self, tenant: str, endpoint_id: UUID) -> Endpoint | None:
        async with self._tenant(tenant) as conn:
            row = await conn.fetchrow(
                "SELECT endpoint_id, url, secret FROM webhook_endpoints "
                f"WHERE tenant_id = $1 AND endpoint_id = $2 AND {_LIVE}",
                tenant,
                endpoint_id,
            )
        return Endpoint(row["endpoint_id"], row["url"], row["secret"]) if row else None
