"""API errors: JSON `{code, message}` with a stable code."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field


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


def install_error_handlers(app: FastAPI) -> None:
    """Make `ApiError` render as `ErrorBody`."""

    async def on_api_error(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ApiError)
        return error_response(exc)

    app.add_exception_handler(ApiError, on_api_error)
