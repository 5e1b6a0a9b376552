"""Ingest's AsyncAPI document: the broker its lifespan builds, and what it publishes."""

from __future__ import annotations

from typing import Any, cast

from ingest.broker import BrokerPublisher
from ingest.job_requests import JobLifecycle, subscribe_deletions
from scribe_runtime.asyncapi import DOCUMENTED_AMQP_URL, asyncapi_document
from scribe_runtime.messaging import make_broker


def document() -> dict[str, Any]:
    """AsyncAPI 3.0 for `scribe-ingest` (committed as `docs/asyncapi/ingest.json`)."""
    broker = make_broker(DOCUMENTED_AMQP_URL, service="scribe-ingest")  # as in the lifespan
    publisher = BrokerPublisher(broker, timeout_seconds=10.0)  # declares; never publishes
    nothing = cast(Any, None)  # wiring only: no route or message ever reaches these
    subscribe_deletions(
        broker, JobLifecycle(queries=nothing, marks=nothing, publisher=publisher, keys=nothing)
    )
    return asyncapi_document(
        broker,
        title="Scribe ingest",
        description="The HTTP front door (OpenAPI at `/docs`). Each accepted upload or "
        "`audio_url` becomes one `audio.uploaded.v1`, published persistent and mandatory "
        "with publisher confirms before the `202`; its `correlation_id` is the request's "
        "`X-Correlation-ID` (or a new one). `POST /v1/transcriptions/{id}/cancel` and "
        "`DELETE /v1/transcriptions/{id}` publish `transcription.cancel_requested.v1` and "
        "`transcription.delete_requested.v1` the same way. On `transcription.deleted.v1` "
        "ingest erases its own files of the job (idempotency record, cancel mark).",
    )
