"""`POST /v1/transcriptions`: read the multipart upload or JSON URL, hand it to `UploadService`."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Annotated, Any, Final, Literal

import structlog
from fastapi import APIRouter, Header, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ingest import metrics
from ingest.bodies import BodyPace, paced
from ingest.deps import Settings, Tenant, Uploads, UploadSlot
from ingest.failures import (
    REQUEST_TOO_LARGE,
    UNSUPPORTED_CONTENT_TYPE,
    VALIDATION_ERROR,
    IngestError,
    InvalidInputError,
    MalformedRequestError,
    TooLargeError,
    UnsupportedMediaError,
    file_too_large,
    invalid_fields,
)
from ingest.idempotency import MAX_KEY_LENGTH
from ingest.links import JobLinks, job_links
from ingest.multipart import FILE_FIELD, read_multipart
from ingest.openapi import SUBMIT_BODY, SUBMIT_DESCRIPTION, SUBMIT_RESPONSES
from ingest.options import InvalidOptionsError, RequestOptions, parse_options, validation_details
from ingest.settings import IngestSettings
from ingest.upload_targets import get_presigned
from ingest.uploads import Accepted, Submission, UploadService

router = APIRouter()

_SOURCES: Final = {"multipart/form-data": "upload", "application/json": "url"}

MAX_JSON_BYTES: Final = 64 * 1024
# Multipart framing around the file: boundaries, part headers, option fields.
MULTIPART_OVERHEAD_BYTES: Final = 64 * 1024


class JobAccepted(BaseModel):
    """The job is queued: the broker confirmed its `audio.uploaded.v1` event."""

    id: uuid.UUID = Field(description="The job id; also `job_id` in every event about it.")
    status: Literal["queued"] = "queued"
    links: JobLinks


class UrlSubmission(RequestOptions):
    """A JSON submission: audio the transcriber fetches from a public `http(s)` URL."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    audio_url: str = Field(
        min_length=1,
        max_length=2048,
        description="Public `http(s)://` URL of the audio; internal addresses are refused.",
        examples=["https://example.com/podcasts/episode-12.mp3"],
    )


@router.post(
    "/v1/transcriptions",
    status_code=202,
    response_model=JobAccepted,
    summary="Submit audio for transcription",
    description=SUBMIT_DESCRIPTION,
    responses=SUBMIT_RESPONSES,
    openapi_extra=SUBMIT_BODY,
)
async def create_transcription(
    request: Request,
    tenant: Tenant,
    _slot: UploadSlot,
    uploads: Uploads,
    settings: Settings,
    idempotency_key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            min_length=1,
            max_length=MAX_KEY_LENGTH,
            pattern=r"^[\x21-\x7e]+$",
            description="Makes retries safe: the same key returns the same job.",
        ),
    ] = None,
    correlation_id: Annotated[
        uuid.UUID | None,
        Header(alias="X-Correlation-ID", description="Traces the job through every service."),
    ] = None,
) -> JSONResponse:
    """Stream the audio in, check it, store it, publish `audio.uploaded.v1`, answer 202."""
    content_type = request.headers.get("content-type", "")
    media_type = content_type.split(";", 1)[0].strip().lower()
    correlation = correlation_id or uuid.uuid4()
    # Each request runs in its own context copy: every line about it, refusals included,
    # carries the correlation id.
    structlog.contextvars.bind_contextvars(correlation_id=str(correlation))
    started = time.perf_counter()
    source = _SOURCES.get(media_type, "other")
    try:
        if media_type == "multipart/form-data":
            accepted = await _submit_file(
                request, uploads, settings, tenant, idempotency_key, correlation
            )
        elif media_type == "application/json":
            accepted = await _submit_url(
                request, uploads, settings, tenant, idempotency_key, correlation
            )
        else:
            raise UnsupportedMediaError(
                UNSUPPORTED_CONTENT_TYPE,
                "send multipart/form-data (a `file`) or application/json (an `audio_url`)",
            )
    except IngestError as exc:
        metrics.SUBMISSIONS_REJECTED.labels(exc.code).inc()
        metrics.UPLOAD_SECONDS.labels(source, "rejected").observe(time.perf_counter() - started)
        raise
    metrics.JOBS_ACCEPTED.labels(source, "true" if accepted.replayed else "false").inc()
    metrics.UPLOAD_SECONDS.labels(source, "accepted").observe(time.perf_counter() - started)
    return _accepted_response(accepted)


async def _submit_file(
    request: Request,
    uploads: UploadService,
    settings: IngestSettings,
    tenant: str,
    key: str | None,
    correlation: uuid.UUID,
) -> Accepted:
    declared = request.headers.get("content-length")
    if (
        declared is not None
        and declared.isdigit()
        and int(declared) > uploads.max_upload_bytes + MULTIPART_OVERHEAD_BYTES
    ):
        # Refuse before reading a byte: the limit is known from the header alone.
        raise file_too_large(uploads.max_upload_bytes)
    form = await read_multipart(
        _body(request, settings), request.headers["content-type"], uploads.begin_upload
    )
    upload = form.upload
    try:
        details: list[dict[str, Any]] = []
        if upload is None:
            details.append(
                {"loc": ["body", FILE_FIELD], "msg": "Field required", "type": "missing"}
            )
        try:
            options = parse_options(form.fields, settings.served_models)
        except InvalidOptionsError as exc:
            if not details:
                raise refused_options(exc) from None
            details.extend(exc.details)
        if details:
            raise invalid_fields(details)
    except BaseException:
        if upload is not None:
            await upload.discard()
        raise
    assert upload is not None
    submission = Submission(
        tenant=tenant, options=options, correlation_id=correlation, idempotency_key=key
    )
    return await uploads.accept_file(upload, submission, filename=form.filename)


async def _submit_url(
    request: Request,
    uploads: UploadService,
    settings: IngestSettings,
    tenant: str,
    key: str | None,
    correlation: uuid.UUID,
) -> Accepted:
    body = await _read_limited(_body(request, settings), MAX_JSON_BYTES)
    try:
        raw = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MalformedRequestError(f"the body is not valid JSON: {exc}") from None
    except RecursionError:
        # 64 KiB of `[` exhausts the decoder's stack; hostile input, not a server error.
        raise MalformedRequestError("the body nests too deeply") from None
    if not isinstance(raw, dict):
        raise MalformedRequestError("the body must be a JSON object")
    if "upload_id" in raw:
        return await _submit_upload_id(request, raw, uploads, settings, tenant, key, correlation)
    try:
        submission = UrlSubmission.model_validate(raw)
        options = parse_options(
            {k: v for k, v in raw.items() if k != "audio_url"}, settings.served_models
        )
    except ValidationError as exc:
        raise invalid_fields(validation_details(exc)) from None
    except InvalidOptionsError as exc:
        raise refused_options(exc) from None
    return await uploads.accept_url(
        submission.audio_url,
        Submission(tenant=tenant, options=options, correlation_id=correlation, idempotency_key=key),
    )


def refused_options(exc: InvalidOptionsError) -> InvalidInputError:
    """422 with the refusal's own code: `validation_error`, `model_unavailable`,
    `unsupported_option`."""
    if exc.code == VALIDATION_ERROR:
        return invalid_fields(exc.details)
    return InvalidInputError(exc.code, exc.message, details=exc.details)


def _body(request: Request, settings: IngestSettings) -> AsyncIterator[bytes]:
    """The request body, bounded in time (`ingest.bodies`)."""
    pace = BodyPace(
        idle_seconds=settings.upload_idle_timeout_seconds,
        min_bytes_per_second=settings.upload_min_bytes_per_second,
        grace_seconds=settings.upload_rate_grace_seconds,
    )
    return paced(request.stream(), pace)


class UploadIdSubmission(RequestOptions):
    """A JSON submission of a presigned upload (`POST /v1/uploads`), by its id."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    upload_id: uuid.UUID = Field(description="The `id` `POST /v1/uploads` answered.")


async def _submit_upload_id(
    request: Request,
    raw: dict[str, Any],
    uploads: UploadService,
    settings: IngestSettings,
    tenant: str,
    key: str | None,
    correlation: uuid.UUID,
) -> Accepted:
    presigned = await get_presigned(request)
    try:
        submission = UploadIdSubmission.model_validate(raw)
        options = parse_options(
            {k: v for k, v in raw.items() if k != "upload_id"}, settings.served_models
        )
    except ValidationError as exc:
        raise invalid_fields(validation_details(exc)) from None
    except InvalidOptionsError as exc:
        raise refused_options(exc) from None
    probed = await presigned.inspect(tenant, submission.upload_id)
    return await uploads.accept_object(
        probed,
        Submission(tenant=tenant, options=options, correlation_id=correlation, idempotency_key=key),
    )


async def _read_limited(chunks: AsyncIterator[bytes], limit: int) -> bytes:
    body = bytearray()
    async for chunk in chunks:
        body += chunk
        if len(body) > limit:
            raise TooLargeError(REQUEST_TOO_LARGE, f"a JSON body may be at most {limit} bytes")
    return bytes(body)


def _accepted_response(accepted: Accepted) -> JSONResponse:
    body = JobAccepted(id=accepted.job_id, links=job_links(accepted.job_id, "queued"))
    headers = {"Location": body.links.self, "X-Correlation-ID": str(accepted.correlation_id)}
    if accepted.replayed:
        headers["Idempotent-Replayed"] = "true"
    return JSONResponse(
        body.model_dump(mode="json", exclude_none=True), status_code=202, headers=headers
    )
