"""API errors: JSON `{code, message}` with a stable code."""

from __future__ import annotations

from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException

log = structlog.get_logger(__name__)

_HTTP_CODES: dict[int, str] = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    413: "request_too_large",
    415: "unsupported_content_type",
    422: "validation_error",
    429: "too_many_requests",
    503: "unavailable",
}


class ErrorBody(BaseModel):
    """Every error response: a stable `code` for programs, a `message` for people."""

    code: str = Field(examples=["unsupported_media"])
    message: str = Field(examples=["the file has no audio stream"])
    details: list[dict[str, Any]] | None = Field(
        default=None, description="Per-field problems, for `validation_error`."
    )


class ApiError(Exception):
    """Raise to answer with an error body and status."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        headers: dict[str, str] | None = None,
        details: list[dict[str, Any]] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers
        self.details = details


def error_response(error: ApiError) -> JSONResponse:
    """The JSON response for an `ApiError`."""
    body = ErrorBody(code=error.code, message=error.message, details=error.details)
    return JSONResponse(
        body.model_dump(exclude_none=True), status_code=error.status, headers=error.headers
    )


def validation_error(details: list[dict[str, Any]]) -> ApiError:
    """422 `validation_error` naming each bad field."""
    fields = ", ".join(".".join(str(p) for p in d.get("loc", ())[1:]) or "?" for d in details)
    return ApiError(422, "validation_error", f"invalid request: {fields}", details=details)


def install_error_handlers(app: FastAPI) -> None:
    """Make every error (ours, FastAPI's validation, Starlette's HTTP) render as `ErrorBody`."""

    async def on_api_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ApiError)
        # One line per refused request: which code, so dashboards can count them.
        log.info(
            "request_refused",
            method=request.method,
            path=request.url.path,
            status=exc.status,
            code=exc.code,
            reason=exc.message,
        )
        return error_response(exc)

    async def on_validation_error(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        details = [
            {"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")}
            for e in jsonable_encoder(exc.errors())
        ]
        return error_response(validation_error(details))

    async def on_http_error(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, HTTPException)
        code = _HTTP_CODES.get(exc.status_code, f"http_{exc.status_code}")
        return error_response(
            ApiError(
                exc.status_code,
                code,
                str(exc.detail),
                headers=dict(exc.headers) if exc.headers else None,
            )
        )

    async def on_unexpected(_request: Request, exc: Exception) -> JSONResponse:
        log.error("request_failed", exc_info=exc)
        return error_response(ApiError(500, "internal_error", "unexpected error; see logs"))

    app.add_exception_handler(ApiError, on_api_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(HTTPException, on_http_error)
    app.add_exception_handler(Exception, on_unexpected)
