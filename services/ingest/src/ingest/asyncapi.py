"""Ingest's AsyncAPI document: the broker its lifespan builds, and what it publishes."""

from __future__ import annotations

from typing import Any

from ingest.broker import BrokerPublisher
from scribe_runtime.asyncapi import DOCUMENTED_AMQP_URL, asyncapi_document
from scribe_runtime.messaging import make_broker


def document() -> dict[str, Any]:
    """AsyncAPI 3.0 for `scribe-ingest` (committed as `docs/asyncapi/ingest.json`)."""
    broker = make_broker(DOCUMENTED_AMQP_URL, service="scribe-ingest")  # as in the lifespan
    BrokerPublisher(broker, timeout_seconds=10.0)  # declares the publisher; never publishes
    return asyncapi_document(
        broker,
        title="Scribe ingest",
        description="The HTTP front door (OpenAPI at `/docs`). Each accepted upload or "
        "`audio_url` becomes one `audio.uploaded.v1`, published persistent and mandatory "
        "with publisher confirms before the `202`; its `correlation_id` is the request's "
        "`X-Correlation-ID` (or a new one).",
    )
