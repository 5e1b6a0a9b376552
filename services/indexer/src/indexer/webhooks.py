"""The webhook projection: endpoints and the delivery log, one transaction per event.

Same discipline as the job projection (`indexer.store`): the tracking record and the
rows commit together, a duplicate changes nothing, and any arrival order gives the same
rows (see migration 0008).
"""

from __future__ import annotations

import json
from typing import TypeAlias
from uuid import UUID

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from contracts.envelope import Event
from contracts.webhooks import (
    WebhookDeliveryAttemptedV1,
    WebhookDeliveryRequestedV1,
    WebhookEndpointDeletedV1,
    WebhookEndpointRegisteredV1,
    WebhookEndpointSecretRotatedV1,
)
from indexer.store import Applied, record_event

Connection: TypeAlias = "PoolConnectionProxy[asyncpg.Record]"


class PostgresWebhookStore:
    """`ProjectionStore` of the webhook events over the writer's pool."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def media_of(self, tenant_id: str, job_id: UUID) -> str | None:
        """Webhook events name no audio: there is never media to erase."""
        return None

    async def apply(self, event: Event) -> Applied:
        async with self._pool.acquire() as conn, conn.transaction():
            if not await record_event(conn, event):
                return Applied(duplicate=True)
            await _project(conn, event)
            return Applied(duplicate=False)


async def _project(conn: Connection, event: Event) -> None:
    if isinstance(event, WebhookEndpointRegisteredV1):
        await conn.execute(
            "INSERT INTO webhook_endpoints (tenant_id, endpoint_id, url, event_types, "
            "description, secret, secret_at, registered_at, updated_at) "
            "VALUES ($1, $2, $3, $4, $5, $6, $7, $7, $7) "
            "ON CONFLICT (tenant_id, endpoint_id) DO UPDATE SET "
            "url = EXCLUDED.url, event_types = EXCLUDED.event_types, "
            "description = EXCLUDED.description, registered_at = EXCLUDED.registered_at, "
            # A rotation projected before its registration keeps its (newer) secret.
            "secret = CASE WHEN webhook_endpoints.secret_at IS NULL "
            "  OR webhook_endpoints.secret_at < EXCLUDED.secret_at "
            "  THEN EXCLUDED.secret ELSE webhook_endpoints.secret END, "
            "secret_at = GREATEST(webhook_endpoints.secret_at, EXCLUDED.secret_at), "
            "updated_at = GREATEST(webhook_endpoints.updated_at, EXCLUDED.updated_at)",
            event.tenant_id,
            event.endpoint_id,
            event.url,
            list(event.event_types),
            event.description,
            event.secret,
            event.occurred_at,
        )
    elif isinstance(event, WebhookEndpointSecretRotatedV1):
        await conn.execute(
            "INSERT INTO webhook_endpoints (tenant_id, endpoint_id, secret, secret_at, "
            "updated_at) VALUES ($1, $2, $3, $4, $4) "
            "ON CONFLICT (tenant_id, endpoint_id) DO UPDATE SET "
            "secret = CASE WHEN webhook_endpoints.secret_at IS NULL "
            "  OR webhook_endpoints.secret_at < EXCLUDED.secret_at "
            "  THEN EXCLUDED.secret ELSE webhook_endpoints.secret END, "
            "secret_at = GREATEST(webhook_endpoints.secret_at, EXCLUDED.secret_at), "
            "updated_at = GREATEST(webhook_endpoints.updated_at, EXCLUDED.updated_at)",
            event.tenant_id,
            event.endpoint_id,
            event.secret,
            event.occurred_at,
        )
    elif isinstance(event, WebhookEndpointDeletedV1):
        await conn.execute(
            "INSERT INTO webhook_endpoints (tenant_id, endpoint_id, deleted_at, updated_at) "
            "VALUES ($1, $2, $3, $3) "
            "ON CONFLICT (tenant_id, endpoint_id) DO UPDATE SET "
            "deleted_at = LEAST(COALESCE(webhook_endpoints.deleted_at, EXCLUDED.deleted_at), "
            "  EXCLUDED.deleted_at), "
            "updated_at = GREATEST(webhook_endpoints.updated_at, EXCLUDED.updated_at)",
            event.tenant_id,
            event.endpoint_id,
            event.occurred_at,
        )
    elif isinstance(event, WebhookDeliveryRequestedV1):
        await conn.execute(
            "INSERT INTO webhook_deliveries (tenant_id, delivery_id, endpoint_id, job_id, "
            "message_id, event_type, payload, created_at, requested_at) "
            "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8) "
            "ON CONFLICT (tenant_id, delivery_id) DO UPDATE SET "
            "created_at = LEAST(webhook_deliveries.created_at, EXCLUDED.created_at), "
            "requested_at = GREATEST(webhook_deliveries.requested_at, EXCLUDED.requested_at)",
            event.tenant_id,
            event.delivery_id,
            event.endpoint_id,
            event.job_id,
            event.message_id,
            event.event_type,
            json.dumps(event.payload),
            event.occurred_at,
        )
    elif isinstance(event, WebhookDeliveryAttemptedV1):
        await conn.execute(
            "INSERT INTO webhook_delivery_attempts (event_id, tenant_id, delivery_id, "
            "endpoint_id, attempt, outcome, status_code, error, duration_ms, attempted_at, "
            "next_attempt_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
            event.event_id,
            event.tenant_id,
            event.delivery_id,
            event.endpoint_id,
            event.attempt,
            event.outcome,
            event.status_code,
            event.error,
            event.duration_ms,
            event.occurred_at,
            event.next_attempt_at,
        )
    else:
        raise TypeError(f"the webhook projection does not handle {type(event).__name__}")
