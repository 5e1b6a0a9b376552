"""The dispatcher's AsyncAPI document, from the broker `build_broker` wires."""

from __future__ import annotations

from typing import Any, cast

import httpx

from scribe_runtime.asyncapi import DOCUMENTED_AMQP_URL, asyncapi_document
from scribe_runtime.settings import SharedSettings
from webhooks.endpoints import EndpointDirectory
from webhooks.main import build_broker
from webhooks.settings import WebhooksSettings


def document() -> dict[str, Any]:
    """AsyncAPI 3.0 for `scribe-webhooks` (committed as `docs/asyncapi/webhooks.json`)."""
    endpoints = cast(EndpointDirectory, None)  # wiring only: nothing reads until it consumes
    http = cast(httpx.AsyncClient, None)
    broker = build_broker(
        DOCUMENTED_AMQP_URL, endpoints, http, SharedSettings(), WebhooksSettings()
    )
    return asyncapi_document(
        broker,
        title="Scribe webhooks",
        description="Delivers job events to the HTTP endpoints tenants registered, signed "
        "per Standard Webhooks (`webhook-id`, `webhook-timestamp`, `webhook-signature`). "
        "Each job event becomes one `webhook.delivery.requested.v1` per subscribed "
        "endpoint; each HTTP attempt is reported as `webhook.delivery.attempted.v1`, which "
        "the indexer projects into the delivery log.",
    )
