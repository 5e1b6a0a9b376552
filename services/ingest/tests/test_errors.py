"""Each failure class reaches the client as one status, code and set of headers."""

from __future__ import annotations

import json

import pytest

from contracts.errors import ErrorCode
from ingest.errors import failure_response
from ingest.failures import (
    ConflictError,
    IngestError,
    InternalError,
    MalformedRequestError,
    NotFoundError,
    TooManyUploadsError,
    UnauthenticatedError,
    UnavailableError,
    UnsupportedMediaError,
    file_too_large,
    invalid_fields,
)
from ingest.media import UploadTooLargeError


@pytest.mark.parametrize(
    ("failure", "status", "code", "headers"),
    [
        (MalformedRequestError("not JSON"), 400, "malformed_request", {}),
        (
            UnauthenticatedError("no key"),
            401,
            "unauthenticated",
            {"www-authenticate": 'Bearer realm="scribe"'},
        ),
        (NotFoundError("x"), 404, "not_found", {}),
        (ConflictError("idempotency_key_reused", "reused"), 409, "idempotency_key_reused", {}),
        (file_too_large(10), 413, "file_too_large", {}),
        (UploadTooLargeError(10), 413, "file_too_large", {}),
        (UnsupportedMediaError(ErrorCode.UNSUPPORTED_MEDIA, "png"), 415, "unsupported_media", {}),
        (invalid_fields([{"loc": ["body", "language"]}]), 422, "validation_error", {}),
        (
            TooManyUploadsError("too_many_uploads", "busy", retry_after_seconds=5),
            429,
            "too_many_uploads",
            {"retry-after": "5"},
        ),
        (InternalError("bad tenant"), 500, "internal_error", {}),
        (
            UnavailableError("broker_unavailable", "down", retry_after_seconds=5),
            503,
            "broker_unavailable",
            {"retry-after": "5"},
        ),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, IngestError) else None,
)
def test_failure_renders_as_its_status_code_and_headers(
    failure: IngestError, status: int, code: str, headers: dict[str, str]
) -> None:
    response = failure_response(failure)

    assert response.status_code == status
    body = json.loads(bytes(response.body))
    assert body["code"] == code
    assert body["message"] == failure.message
    for name, value in headers.items():
        assert response.headers[name] == value


def test_field_problems_are_named_in_the_message_and_details() -> None:
    details = [{"loc": ["body", "language"], "msg": "unknown", "type": "value_error"}]
    body = json.loads(bytes(failure_response(invalid_fields(details)).body))
    assert body == {
        "code": "validation_error",
        "message": "invalid request: language",
        "details": details,
    }
