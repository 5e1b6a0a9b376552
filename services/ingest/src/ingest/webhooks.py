"""`/v1/webhooks`: register endpoints, rotate their secrets, read and replay deliveries.

Writes answer 202: the change is an event the indexer projects (ingest never writes
PostgreSQL), visible to reads within moments. Another tenant's endpoint is a 404.
"""

from __future__ import annotations

from typing import Annotated, Any, Final
from uuid import UUID

from fastapi import APIRouter, Query, Response

from ingest.deps import Tenant, Webhooks
from ingest.errors import ErrorBody
from ingest.failures import WebhookNotFoundError
from ingest.webhook_models import (
    DeliveryList,
    ReplayAccepted,
    WebhookAccepted,
    WebhookCreate,
    WebhookList,
    WebhookOut,
)

router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"])

ERRORS: Final[dict[int | str, dict[str, Any]]] = {
    400: {"model": ErrorBody, "description": "`malformed_request`: the body is not JSON."},
    401: {"model": ErrorBody, "description": "`unauthenticated`: no valid API key."},
    404: {"model": ErrorBody, "description": "`not_found`: no such webhook for this tenant."},
    422: {
        "model": ErrorBody,
        "description": "`validation_error`, or `invalid_webhook_url`: the SSRF guard refused "
        "the URL (not http(s), or a private, loopback or link-local address not allow-listed).",
    },
    503: {"model": ErrorBody, "description": "`broker_unavailable` / `database_unavailable`."},
}


def _id(value: str) -> UUID:
    try:
        return UUID(value)
    except ValueError:
        raise WebhookNotFoundError(f"no webhook {value!r}") from None


@router.post("", status_code=202, responses=ERRORS, summary="Register an endpoint")
async def create_webhook(
    body: WebhookCreate, tenant: Tenant, webhooks: Webhooks
) -> WebhookAccepted:
    """Register an endpoint for job events. The answer holds the signing secret, once."""
    return await webhooks.register(tenant, body)


@router.get("", responses=ERRORS, summary="List endpoints")
async def list_webhooks(tenant: Tenant, webhooks: Webhooks) -> WebhookList:
    """The tenant's endpoints (without secrets)."""
    return await webhooks.list(tenant)


@router.get("/{webhook_id}", responses=ERRORS, summary="Get an endpoint")
async def get_webhook(webhook_id: str, tenant: Tenant, webhooks: Webhooks) -> WebhookOut:
    """One endpoint (without its secret)."""
    return await webhooks.get(tenant, _id(webhook_id))


@router.delete("/{webhook_id}", status_code=202, responses=ERRORS, summary="Delete an endpoint")
async def delete_webhook(webhook_id: str, tenant: Tenant, webhooks: Webhooks) -> Response:
    """Stop deliveries to the endpoint (retries still pending are cancelled)."""
    await webhooks.delete(tenant, _id(webhook_id))
    return Response(status_code=202)


@router.post(
    "/{webhook_id}/rotate-secret", status_code=202, responses=ERRORS, summary="Rotate the secret"
)
async def rotate_webhook_secret(
    webhook_id: str, tenant: Tenant, webhooks: Webhooks
) -> WebhookAccepted:
    """A new signing secret, shown once; deliveries are signed with it once projected."""
    return await webhooks.rotate(tenant, _id(webhook_id))


@router.get("/{webhook_id}/deliveries", responses=ERRORS, summary="Delivery log")
async def list_deliveries(
    webhook_id: str,
    tenant: Tenant,
    webhooks: Webhooks,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> DeliveryList:
    """The endpoint's newest deliveries: each attempt, its status code, the next retry."""
    return await webhooks.deliveries(tenant, _id(webhook_id), limit)


@router.post(
    "/{webhook_id}/deliveries/{delivery_id}/replay",
    status_code=202,
    responses=ERRORS,
    summary="Replay a delivery",
)
async def replay_delivery(
    webhook_id: str, delivery_id: str, tenant: Tenant, webhooks: Webhooks
) -> ReplayAccepted:
    """Send the delivery again, with the same `webhook-id` (receivers may deduplicate)."""
    return await webhooks.replay(tenant, _id(webhook_id), _id(delivery_id))
