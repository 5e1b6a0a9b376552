"""`POST /v1/transcriptions/{id}/cancel` and `DELETE /v1/transcriptions/{id}`.

Both answer `202` once their request event is confirmed by the broker; the indexer
applies it (see `ingest.job_requests`, the use case).
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Final, Literal

import structlog
from fastapi import APIRouter, Header
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from ingest.deps import Lifecycle, Tenant
from ingest.errors import ErrorBody
from ingest.failures import NotFoundError
from ingest.links import JobLinks, job_links
from ingest.read_models import JobStatusName

router = APIRouter()


class RequestAccepted(BaseModel):
    """The request is on its way to the indexer; follow the job to see it applied."""

    id: uuid.UUID
    requested: Literal["cancel", "delete"]
    status: JobStatusName = Field(
        description="The job's status when the request was accepted; a cancel shows as "
        "`cancelled` once applied, a deleted job answers `404`."
    )
    links: JobLinks


CorrelationId = Annotated[
    uuid.UUID | None,
    Header(alias="X-Correlation-ID", description="Traces the request through every service."),
]

_ERRORS: Final[dict[int | str, dict[str, Any]]] = {
    401: {"model": ErrorBody, "description": "`unauthenticated`: no valid API key."},
    404: {
        "model": ErrorBody,
        "description": "`not_found`: no such job for this tenant (another tenant's job, a "
        "deleted job and a job never submitted answer alike).",
    },
    503: {
        "model": ErrorBody,
        "description": "`broker_unavailable`, `media_unavailable`, `database_unavailable`: "
        "nothing was requested; retry after `Retry-After` seconds.",
    },
}


@router.post(
    "/v1/transcriptions/{job_id}/cancel",
    status_code=202,
    response_model=RequestAccepted,
    summary="Cancel a queued or running job",
    description="A queued job never runs; a running one stops at its next segment and its "
    "worker takes the next job. The job then ends `cancelled` (terminal: no later event "
    "changes it) and `transcription.cancelled.v1` is published once. A job that finishes "
    "before the request is applied stays finished. Cancelling a cancelled job is a no-op "
    "`202`.",
    responses={
        **_ERRORS,
        409: {
            "model": ErrorBody,
            "description": "`job_finished`: the job is already `completed` or `failed`.",
        },
    },
)
async def cancel_transcription(
    job_id: str, tenant: Tenant, lifecycle: Lifecycle, correlation_id: CorrelationId = None
) -> JSONResponse:
    """Check the job, mark it cancelled for the workers, publish the request, answer 202."""
    job = _parse(job_id)
    correlation = correlation_id or uuid.uuid4()
    structlog.contextvars.bind_contextvars(correlation_id=str(correlation))
    status = await lifecycle.cancel(tenant, job, correlation)
    return _accepted(job, "cancel", status, correlation)


@router.delete(
    "/v1/transcriptions/{job_id}",
    status_code=202,
    response_model=RequestAccepted,
    summary="Delete a job: its media, transcript and every copy",
    description="Erases the job's stored audio, transcript, segments, words and idempotency "
    "record, whatever its status (a running job is stopped first); a tombstone (id, tenant, "
    "time) keeps a late or replayed event from bringing it back. "
    "`transcription.deleted.v1` tells downstream consumers to delete their copies. Once "
    "applied (usually within a second), `GET` answers `404` and search no longer finds it.",
    responses=_ERRORS,
)
async def delete_transcription(
    job_id: str, tenant: Tenant, lifecycle: Lifecycle, correlation_id: CorrelationId = None
) -> JSONResponse:
    """Check the job, stop it if it runs, publish the delete request, answer 202."""
    job = _parse(job_id)
    correlation = correlation_id or uuid.uuid4()
    structlog.contextvars.bind_contextvars(correlation_id=str(correlation))
    status = await lifecycle.delete(tenant, job, correlation)
    return _accepted(job, "delete", status, correlation)


def _parse(job_id: str) -> uuid.UUID:
    try:
        return uuid.UUID(job_id)
    except ValueError:
        raise NotFoundError(job_id) from None


def _accepted(
    job_id: uuid.UUID, requested: Literal["cancel", "delete"], status: str, correlation: uuid.UUID
) -> JSONResponse:
    body = RequestAccepted.model_validate(
        {"id": job_id, "requested": requested, "status": status, "links": job_links(job_id, status)}
    )
    return JSONResponse(
        body.model_dump(mode="json", exclude_none=True),
        status_code=202,
        headers={"X-Correlation-ID": str(correlation)},
    )
