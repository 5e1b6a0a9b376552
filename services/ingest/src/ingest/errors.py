"""The HTTP face of failures: each `ingest.failures` class gets its status here, and only here.

Every error response is JSON `{code, message[, details]}` with a stable code, whether it
comes from a use case, from FastAPI's request validation or from Starlette's routing. The
OpenAI-compatible routes (`ingest.openai_compat`) answer the same failures in OpenAI's
shape instead, `{"error": {message, type, param, code}}`, with the same stable codes.
"""

from __future__ import annotations

from typing import Any, Final

import structlog
from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException

from ingest import metrics
from ingest.failures import (
    ClientGoneError,
    ConflictError,
    IngestError,
    InsufficientStorageError,
    InternalError,
    InvalidInputError,
    JobFailedError,
    JobPendingError,
    MalformedRequestError,
    ModelNotFoundError,
    NotFoundError,
    RetryLaterError,
    TooLargeError,
    TooManyUploadsError,
    TooSlowError,
    UnauthenticatedError,
    UnavailableError,
    UnsupportedMediaError,
    invalid_fields,
)
from ingest.links import job_path

log = structlog.get_logger(__name__)

STATUS_BY_FAILURE: Final[dict[type[IngestError], int]] = {
    MalformedRequestError: 400,
    # Nobody reads it; 499 is nginx's private number for this, 400 is what HTTP has.
    ClientGoneError: 400,
    UnauthenticatedError: 401,
    NotFoundError: 404,
    ModelNotFoundError: 404,
    TooSlowError: 408,
    ConflictError: 409,
    TooLargeError: 413,
    UnsupportedMediaError: 415,
    InvalidInputError: 422,
    JobFailedError: 400,
    JobPendingError: 504,
    TooManyUploadsError: 429,
    InternalError: 500,
    UnavailableError: 503,
    InsufficientStorageError: 507,
}
"""The status each failure class is answered with (a subclass inherits its parent's)."""

_WWW_AUTHENTICATE: Final = {"WWW-Authenticate": 'Bearer realm="scribe"'}

_HTTP_CODES: Final[dict[int, str]] = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    408: "request_timeout",
    406: "not_acceptable",
    409: "conflict",
    413: "request_too_large",
    415: "unsupported_content_type",
    422: "validation_error",
    429: "too_many_requests",
    503: "unavailable",
    507: "insufficient_storage",
}


class ErrorBody(BaseModel):
    """Every error response: a stable `code` for programs, a `message` for people."""

    code: str = Field(examples=["unsupported_media"])
    message: str = Field(examples=["the file has no audio stream"])
    details: list[dict[str, Any]] | None = Field(
        default=None, description="Per-field problems, for `validation_error`."
    )


def status_of(failure: IngestError) -> int:
    """The HTTP status `failure` is answered with; 500 for a class nobody mapped."""
    if isinstance(failure, JobFailedError) and failure.retryable:
        return 502  # the worker failed for a passing reason: asking again may succeed
    for cls in type(failure).__mro__:
        status = STATUS_BY_FAILURE.get(cls)
        if status is not None:
            return status
    return 500


def headers_of(failure: IngestError) -> dict[str, str] | None:
    """The headers that go with `failure`: when to retry, how to authenticate."""
    if isinstance(failure, RetryLaterError):
        return {"Retry-After": str(failure.retry_after_seconds)}
    if isinstance(failure, TooSlowError):
        # The rest of the body may still trickle in: do not wait for it on this connection.
        return {"Connection": "close"}
    if isinstance(failure, UnauthenticatedError):
        # The challenge RFC 6750 asks for.
        return dict(_WWW_AUTHENTICATE)
    if isinstance(failure, JobPendingError):
        # The job goes on: poll it. Asking again would only make a second job, so the
        # OpenAI client is told not to retry (it would on any 5xx).
        return {"Location": job_path(failure.job_id), "x-should-retry": "false"}
    return None


def _response(
    status: int,
    code: str,
    message: str,
    *,
    headers: dict[str, str] | None = None,
    details: list[dict[str, Any]] | None = None,
) -> JSONResponse:
    body = ErrorBody(code=code, message=message, details=details)
    metrics.REQUESTS_REFUSED.labels(str(status), code).inc()
    return JSONResponse(body.model_dump(exclude_none=True), status_code=status, headers=headers)


def failure_response(failure: IngestError) -> JSONResponse:
    """The JSON response for a failure."""
    return _response(
        status_of(failure),
        failure.code,
        failure.message,
        headers=headers_of(failure),
        details=failure.details,
    )


class OpenAIError(BaseModel):
    """An error as OpenAI's API words it; `code` is Scribe's stable code."""

    message: str = Field(examples=["unknown model 'gpt-5'; this deployment serves: tiny.en"])
    type: str = Field(
        examples=["invalid_request_error"],
        description="`invalid_request_error`, `authentication_error`, `rate_limit_error` or "
        "`server_error`.",
    )
    param: str | None = Field(default=None, examples=["model"])
    code: str | None = Field(default=None, examples=["model_unavailable"])
    job_id: str | None = Field(
        default=None, description="The job the request made, when it made one: poll it."
    )


class OpenAIErrorBody(BaseModel):
    """Every error response of the OpenAI-compatible routes."""

    error: OpenAIError


def openai_status_of(failure: IngestError) -> int:
    """The status on the OpenAI-compatible routes: OpenAI answers bad input with 400."""
    status = status_of(failure)
    return 400 if status in {415, 422} else status


def _openai_type(status: int) -> str:
    if status == 401:
        return "authentication_error"
    if status == 429:
        return "rate_limit_error"
    return "server_error" if status >= 500 else "invalid_request_error"


def _openai_response(
    status: int,
    code: str,
    message: str,
    *,
    param: str | None = None,
    job_id: str | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    error = OpenAIError(
        message=message, type=_openai_type(status), param=param, code=code, job_id=job_id
    )
    # OpenAI sends `param` and `code` even when null; `job_id` is Scribe's, sent when known.
    hidden = None if job_id else {"error": {"job_id"}}
    body = OpenAIErrorBody(error=error).model_dump(exclude=hidden)
    return JSONResponse(body, status_code=status, headers=headers)


def _param_of(details: list[dict[str, Any]] | None) -> str | None:
    # OpenAI names one offending parameter; the first field the details name.
    for detail in details or ():
        loc = [str(p) for p in detail.get("loc", ())]
        if len(loc) > 1:
            return loc[-1]
    return None


def openai_error_response(request: Request, exc: Exception) -> JSONResponse:
    """Any exception raised on an OpenAI-compatible route, as OpenAI's error shape."""
    if isinstance(exc, RequestValidationError):
        exc = invalid_fields(
            [
                {"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")}
                for e in jsonable_encoder(exc.errors())
            ]
        )
    if isinstance(exc, IngestError):
        status = openai_status_of(exc)
        log.info(
            "request_refused",
            method=request.method,
            path=request.url.path,
            status=status,
            code=exc.code,
            reason=exc.message,
        )
        job_id = str(exc.job_id) if isinstance(exc, JobFailedError | JobPendingError) else None
        return _openai_response(
            status,
            exc.code,
            exc.message,
            param=_param_of(exc.details),
            job_id=job_id,
            headers=headers_of(exc),
        )
    if isinstance(exc, HTTPException):
        return _openai_response(
            exc.status_code,
            _HTTP_CODES.get(exc.status_code, f"http_{exc.status_code}"),
            str(exc.detail),
            headers=dict(exc.headers) if exc.headers else None,
        )
    log.error("request_failed", exc_info=exc)
    return _openai_response(500, "internal_error", "unexpected error; see logs")


def install_error_handlers(app: FastAPI) -> None:
    """Make every error (ours, FastAPI's validation, Starlette's HTTP) render as `ErrorBody`."""

    async def on_failure(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, IngestError)
        if isinstance(exc, ClientGoneError):
            log.info(
                "upload_abandoned",
                method=request.method,
                path=request.url.path,
                received_bytes=exc.received_bytes,
            )
            return failure_response(exc)
        # One line per refused request: which code, so dashboards can count them.
        log.info(
            "request_refused",
            method=request.method,
            path=request.url.path,
            status=status_of(exc),
            code=exc.code,
            reason=exc.message,
        )
        return failure_response(exc)

    async def on_validation_error(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        details = [
            {"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")}
            for e in jsonable_encoder(exc.errors())
        ]
        return failure_response(invalid_fields(details))

    async def on_http_error(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, HTTPException)
        return _response(
            exc.status_code,
            _HTTP_CODES.get(exc.status_code, f"http_{exc.status_code}"),
            str(exc.detail),
            headers=dict(exc.headers) if exc.headers else None,
        )

    async def on_unexpected(_request: Request, exc: Exception) -> JSONResponse:
        log.error("request_failed", exc_info=exc)
        return _response(500, "internal_error", "unexpected error; see logs")

    app.add_exception_handler(IngestError, on_failure)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(HTTPException, on_http_error)
    app.add_exception_handler(Exception, on_unexpected)
