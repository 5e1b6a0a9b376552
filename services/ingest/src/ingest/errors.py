"""The HTTP face of failures: each `ingest.failures` class gets its status here, and only here.

Every error response is JSON `{code, message[, details]}` with a stable code, whether it
comes from a use case, from FastAPI's request validation or from Starlette's routing.
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
    MalformedRequestError,
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

log = structlog.get_logger(__name__)

STATUS_BY_FAILURE: Final[dict[type[IngestError], int]] = {
    MalformedRequestError: 400,
    # Nobody reads it; 499 is nginx's private number for this, 400 is what HTTP has.
    ClientGoneError: 400,
    UnauthenticatedError: 401,
    NotFoundError: 404,
    TooSlowError: 408,
    ConflictError: 409,
    TooLargeError: 413,
    UnsupportedMediaError: 415,
    InvalidInputError: 422,
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
