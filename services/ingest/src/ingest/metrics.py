"""Prometheus metrics of the ingest process, and the open `/metrics` route that serves them.

`/metrics` is deliberately outside any authentication: Prometheus scrapes it like
`/healthz` and `/readyz`, and nothing in it names a tenant, a job or a user. Events
published are counted by `scribe_runtime.metrics` (`scribe_events_published_total`).
"""

from __future__ import annotations

from typing import Final

from fastapi import APIRouter, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

JOBS_ACCEPTED: Final = Counter(
    "scribe_ingest_jobs_accepted_total",
    "Submissions answered 202, by source (upload, url) and whether it replayed an "
    "earlier job (Idempotency-Key).",
    ["source", "replayed"],
)
SUBMISSIONS_REJECTED: Final = Counter(
    "scribe_ingest_submissions_rejected_total",
    "Submissions refused, by error code (unsupported_media, file_too_large, "
    "broker_unavailable, ...).",
    ["code"],
)
REQUESTS_REFUSED: Final = Counter(
    "scribe_ingest_requests_refused_total",
    "Every request answered with an error, by status and code (401 unauthenticated, "
    "422 validation_error, 429 too_many_uploads, 503 broker_unavailable, 500 "
    "internal_error, ...), counted where every error response is made (ingest.errors).",
    ["status", "code"],
)
UPLOAD_BYTES: Final = Histogram(
    "scribe_ingest_upload_bytes",
    "Size of each accepted uploaded file.",
    buckets=tuple(float(4**i * 16 * 1024) for i in range(10)),  # 16 KiB .. 4 GiB
)
UPLOAD_SECONDS: Final = Histogram(
    "scribe_ingest_upload_seconds",
    "Time from a submission's first byte to its answer (streaming, probing, publishing), "
    "by source and outcome (accepted, rejected).",
    ["source", "outcome"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900),
)
MEDIA_FREE_BYTES: Final = Gauge(
    "scribe_ingest_media_free_bytes",
    "Free bytes on the media root's filesystem, as of the last /readyz check.",
)
SEARCH_SECONDS: Final = Histogram(
    "scribe_ingest_search_seconds",
    "Time to run one search page against PostgreSQL (connection, query, snippets).",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)

router = APIRouter()


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    tags=["health"],
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {}}}},
)
def metrics() -> Response:
    """Every metric of this process in Prometheus' text format (open, like `/healthz`)."""
    # A plain `def`: FastAPI runs it on its thread pool, off the event loop.
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)
