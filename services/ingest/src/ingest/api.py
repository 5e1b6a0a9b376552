"""HTTP endpoints of the front door: submit audio, liveness, readiness."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Annotated, Any, Final, Literal

import structlog
from fastapi import APIRouter, Header, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from contracts.errors import ErrorCode
from ingest import metrics
from ingest.deps import Broker, Media, Settings, Tenant, Uploads, UploadSlot
from ingest.errors import ErrorBody
from ingest.failures import (
    BROKER_UNAVAILABLE,
    IDEMPOTENCY_KEY_REUSED,
    INVALID_AUDIO_URL,
    MALFORMED_REQUEST,
    REQUEST_TOO_LARGE,
    TOO_MANY_UPLOADS,
    UNSUPPORTED_CONTENT_TYPE,
    IngestError,
    MalformedRequestError,
    TooLargeError,
    UnsupportedMediaError,
    file_too_large,
    invalid_fields,
)
from ingest.idempotency import MAX_KEY_LENGTH
from ingest.links import JobLinks, job_links
from ingest.multipart import (
    FILE_FIELD,
    FormFieldError,
    MalformedFormError,
    read_multipart,
)
from ingest.options import InvalidOptionsError, RequestOptions, parse_options, validation_details
from ingest.settings import IngestSettings
from ingest.uploads import Accepted, UploadService
from ingest.uploads import Request as Submission

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


def _error(code: str, message: str) -> dict[str, Any]:
    return {"value": {"code": code, "message": message}}


def _responses(examples: dict[int, dict[str, dict[str, Any]]]) -> dict[int | str, Any]:
    return {
        status: {"model": ErrorBody, "content": {"application/json": {"examples": named}}}
        for status, named in examples.items()
    }


SUBMIT_ERRORS: Final = _responses(
    {
        400: {"malformed": _error(MALFORMED_REQUEST, "the body is not valid JSON")},
        401: {"no_key": _error("unauthenticated", "the API key is not valid")},
        409: {
            "key_reused": _error(
                IDEMPOTENCY_KEY_REUSED,
                "this Idempotency-Key was already used with different audio or options",
            )
        },
        413: {
            "too_large": _error(
                ErrorCode.FILE_TOO_LARGE, "the file is larger than the limit of 2147483648 bytes"
            ),
            "too_long": _error(
                ErrorCode.AUDIO_TOO_LONG, "the audio is longer than the limit of 14400 seconds"
            ),
        },
        415: {
            "not_audio": _error(ErrorCode.UNSUPPORTED_MEDIA, "the file has no audio stream"),
            "truncated": _error(
                ErrorCode.UNSUPPORTED_MEDIA,
                "the file is truncated: its header declares 5.00 s of audio, only 1.87 s are there",
            ),
            "content_type": _error(
                UNSUPPORTED_CONTENT_TYPE, "send multipart/form-data or application/json"
            ),
        },
        422: {
            "bad_option": {
                "value": {
                    "code": "validation_error",
                    "message": "invalid request: language",
                    "details": [
                        {
                            "loc": ["body", "language"],
                            "msg": "Value error, 'xx' is not a supported ISO 639 language code",
                            "type": "value_error",
                        }
                    ],
                }
            },
            "no_file": _error("validation_error", "invalid request: file"),
            "forbidden_url": _error(
                INVALID_AUDIO_URL,
                "audio_url is not allowed: host 'localhost' resolves to a non-public address",
            ),
        },
        429: {
            "busy": _error(
                TOO_MANY_UPLOADS,
                "this tenant already has 8 submissions in progress (limit 8); retry after 5 s",
            )
        },
        503: {
            "broker": _error(
                BROKER_UNAVAILABLE,
                "the job could not be queued (message broker unavailable); "
                "nothing was kept, retry later",
            )
        },
    }
)

_OPTION_PROPERTIES: Final[dict[str, Any]] = {
    "language": {"type": "string", "description": "ISO 639 code, e.g. `en`; omit to detect."},
    "model": {"type": "string", "description": "Model name, e.g. `tiny.en`."},
    "word_timestamps": {"type": "boolean", "default": False},
}

SUBMIT_BODY: Final[dict[str, Any]] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": [FILE_FIELD],
                    "properties": {
                        FILE_FIELD: {
                            "type": "string",
                            "format": "binary",
                            "description": "The audio (any container FFmpeg decodes). Streamed "
                            "to the media store; its bytes, not its name, decide what it is.",
                        },
                        **_OPTION_PROPERTIES,
                    },
                },
                "encoding": {FILE_FIELD: {"contentType": "audio/*, video/*"}},
            },
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["audio_url"],
                    "additionalProperties": False,
                    "properties": {
                        "audio_url": {"type": "string", "format": "uri"},
                        **_OPTION_PROPERTIES,
                    },
                },
                "examples": {
                    "url": {
                        "value": {
                            "audio_url": "https://example.com/podcasts/episode-12.mp3",
                            "language": "en",
                            "word_timestamps": True,
                        }
                    }
                },
            },
        },
    }
}


@router.post(
    "/v1/transcriptions",
    status_code=202,
    response_model=JobAccepted,
    summary="Submit audio for transcription",
    description=(
        "Send the audio as multipart `file` (streamed, hashed and size-checked on the way, "
        'then decoded to check it is audio), or JSON `{"audio_url": "https://..."}`. '
        "Options: `language`, `model`, `word_timestamps` (form fields or JSON members). "
        "`202` means the broker confirmed the job's `audio.uploaded.v1` event. "
        "With `Idempotency-Key`, a repeated request returns the same job id and never "
        "creates a second job; the same key with different audio or options is a `409`."
    ),
    responses={
        202: {
            "description": "Queued.",
            "headers": {
                "Location": {"description": "The job's URL.", "schema": {"type": "string"}}
            },
            "content": {
                "application/json": {
                    "example": {
                        "id": "4b0c7a3e-2a53-4c4f-9a0e-9e8b2f1c5d11",
                        "status": "queued",
                        "links": {
                            "self": "/v1/transcriptions/4b0c7a3e-2a53-4c4f-9a0e-9e8b2f1c5d11",
                            "transcript": "/v1/transcriptions/"
                            "4b0c7a3e-2a53-4c4f-9a0e-9e8b2f1c5d11/transcript.json",
                        },
                    }
                }
            },
        },
        **SUBMIT_ERRORS,
    },
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
    try:
        form = await read_multipart(
            request.stream(), request.headers["content-type"], uploads.begin_upload
        )
    except MalformedFormError as exc:
        raise MalformedRequestError(str(exc)) from None
    except FormFieldError as exc:
        raise invalid_fields(
            [{"loc": ["body", exc.field], "msg": exc.message, "type": "value_error"}]
        ) from None
    upload = form.upload
    try:
        details: list[dict[str, Any]] = []
        if upload is None:
            details.append(
                {"loc": ["body", FILE_FIELD], "msg": "Field required", "type": "missing"}
            )
        try:
            options = parse_options(form.fields, settings.allowed_models)
        except InvalidOptionsError as exc:
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
    body = await _read_limited(request.stream(), MAX_JSON_BYTES)
    try:
        raw = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MalformedRequestError(f"the body is not valid JSON: {exc}") from None
    except RecursionError:
        # 64 KiB of `[` exhausts the decoder's stack; hostile input, not a server error.
        raise MalformedRequestError("the body nests too deeply") from None
    if not isinstance(raw, dict):
        raise MalformedRequestError("the body must be a JSON object")
    try:
        submission = UrlSubmission.model_validate(raw)
        options = parse_options(
            {k: v for k, v in raw.items() if k != "audio_url"}, settings.allowed_models
        )
    except ValidationError as exc:
        raise invalid_fields(validation_details(exc)) from None
    except InvalidOptionsError as exc:
        raise invalid_fields(exc.details) from None
    return await uploads.accept_url(
        submission.audio_url,
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


class Liveness(BaseModel):
    """The process answers."""

    status: Literal["alive"] = "alive"


class Check(BaseModel):
    """One readiness check."""

    ok: bool
    message: str | None = None


class Readiness(BaseModel):
    """Whether this replica can accept uploads now, check by check."""

    status: Literal["ready", "not_ready"]
    checks: dict[str, Check]
    code: str | None = Field(default=None, description="`not_ready` when a check failed.")
    message: str | None = None


@router.get("/healthz", response_model=Liveness, summary="Liveness", tags=["health"])
async def healthz() -> Liveness:
    """Answers while the process runs; says nothing about its dependencies."""
    return Liveness()


@router.get(
    "/readyz",
    response_model=Readiness,
    response_model_exclude_none=True,
    summary="Readiness",
    tags=["health"],
    responses={
        200: {
            "content": {
                "application/json": {
                    "example": {
                        "status": "ready",
                        "checks": {"broker": {"ok": True}, "media_root": {"ok": True}},
                    }
                }
            }
        },
        503: {
            "model": Readiness,
            "description": "A dependency is down; the failing check says which.",
            "content": {
                "application/json": {
                    "example": {
                        "status": "not_ready",
                        "code": "not_ready",
                        "message": "broker: not connected",
                        "checks": {
                            "broker": {"ok": False, "message": "not connected"},
                            "media_root": {"ok": True},
                        },
                    }
                }
            },
        },
    },
)
async def readyz(response: Response, broker: Broker, media: Media) -> Readiness:
    """Ready when the broker connection is up and the media root is writable."""
    checks: dict[str, Check] = {}
    broker_up = await broker.is_connected()
    checks["broker"] = Check(ok=broker_up, message=None if broker_up else "not connected")
    media_problem = await media.check_writable()
    checks["media_root"] = Check(ok=media_problem is None, message=media_problem)
    failed = [f"{name}: {check.message}" for name, check in checks.items() if not check.ok]
    if failed:
        response.status_code = 503
        return Readiness(
            status="not_ready", checks=checks, code="not_ready", message="; ".join(failed)
        )
    return Readiness(status="ready", checks=checks)
