"""What can go wrong in ingest, named: one exception class per failure class.

The use cases (uploads, media, limits, reads) raise these and know nothing of HTTP; each
carries a stable `code` for programs and a `message` for people. `ingest.errors` is the
one place that turns a class into an HTTP status and headers, so a newcomer reading a
use case sees what failed, and reading `errors.py` sees how a client hears of it.
"""

from __future__ import annotations

from typing import Any, Final
from uuid import UUID

from contracts.errors import ErrorCode

BROKER_UNAVAILABLE: Final = "broker_unavailable"
DATABASE_UNAVAILABLE: Final = "database_unavailable"
IDEMPOTENCY_KEY_REUSED: Final = "idempotency_key_reused"
INVALID_AUDIO_URL: Final = "invalid_audio_url"
INVALID_CURSOR: Final = "invalid_cursor"
INSUFFICIENT_STORAGE: Final = "insufficient_storage"
INVALID_QUERY_VALUE: Final = "invalid_query_value"
INVALID_WEBHOOK_URL: Final = "invalid_webhook_url"
JOB_FINISHED: Final = "job_finished"
MALFORMED_REQUEST: Final = "malformed_request"
MEDIA_UNAVAILABLE: Final = "media_unavailable"
MODEL_UNAVAILABLE: Final = "model_unavailable"
NOT_FOUND: Final = "not_found"
REQUEST_TOO_LARGE: Final = "request_too_large"
TOO_MANY_UPLOADS: Final = "too_many_uploads"
TOO_MANY_WAITING: Final = "too_many_waiting"
WEBHOOK_LIMIT_REACHED: Final = "webhook_limit_reached"
TRANSCRIPT_NOT_READY: Final = "transcript_not_ready"
TRANSCRIPTION_PENDING: Final = "transcription_pending"
UNAUTHENTICATED: Final = "unauthenticated"
UNKNOWN_PARAMETER: Final = "unknown_parameter"
UNSUPPORTED_CONTENT_TYPE: Final = "unsupported_content_type"
UNSUPPORTED_OPTION: Final = "unsupported_option"
UPLOAD_ABANDONED: Final = "upload_abandoned"
UPLOAD_TOO_SLOW: Final = "upload_too_slow"
VALIDATION_ERROR: Final = "validation_error"


class IngestError(Exception):
    """A refused or failed request: a stable `code`, a human `message`, per-field `details`."""

    def __init__(
        self, code: str, message: str, *, details: list[dict[str, Any]] | None = None
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details


class MalformedRequestError(IngestError):
    """The request cannot be read at all (not JSON, not well-formed multipart)."""

    def __init__(self, message: str) -> None:
        super().__init__(MALFORMED_REQUEST, message)


class InvalidInputError(IngestError):
    """The request reads, but a value in it is not acceptable; `details` name the fields."""


class UnauthenticatedError(IngestError):
    """No API key, or one that names no tenant."""

    def __init__(self, message: str) -> None:
        super().__init__(UNAUTHENTICATED, message)


class NotFoundError(IngestError):
    """No such job for this tenant (another tenant's job is just as unknown)."""

    def __init__(self, job_id: str) -> None:
        super().__init__(NOT_FOUND, f"no transcription {job_id!r}")


class ModelNotFoundError(IngestError):
    """No worker serves a model asked for by name (`GET /v1/models/{id}`)."""

    def __init__(self, message: str) -> None:
        super().__init__(MODEL_UNAVAILABLE, message)


class WebhookNotFoundError(NotFoundError):
    """No such webhook endpoint (or delivery) for this tenant; another tenant's is unknown."""

    def __init__(self, message: str) -> None:
        IngestError.__init__(self, NOT_FOUND, message)


class ClientGoneError(IngestError):
    """The client disconnected before its request body was complete: nobody hears the answer.

    Expected (a closed laptop, a cancelled upload), so it is logged as one line, not as a
    failure; the status only labels the metric.
    """

    def __init__(self, received_bytes: int) -> None:
        super().__init__(UPLOAD_ABANDONED, "the client disconnected before the body was complete")
        self.received_bytes = received_bytes


class TooSlowError(IngestError):
    """The request body stalled or crawled below the minimum rate (`upload_too_slow`)."""

    def __init__(self, message: str) -> None:
        super().__init__(UPLOAD_TOO_SLOW, message)


class ConflictError(IngestError):
    """The request contradicts the state it acts on (a reused key, a job not yet done)."""


class MediaRejectedError(IngestError):
    """The audio is not something ingest accepts."""


class UnsupportedMediaError(MediaRejectedError):
    """Not audio (or not sent the way audio must be sent)."""


class TooLargeError(MediaRejectedError):
    """Over a size or duration limit."""


class RetryLaterError(IngestError):
    """Nothing is wrong with the request; ask again after `retry_after_seconds`."""

    def __init__(self, code: str, message: str, *, retry_after_seconds: int) -> None:
        super().__init__(code, message)
        self.retry_after_seconds = retry_after_seconds


class UnavailableError(RetryLaterError):
    """A dependency (the broker, the read database) is down or too slow."""


class InsufficientStorageError(RetryLaterError):
    """The media root is full (or over quota): nothing the caller did, and nothing stored."""

    def __init__(self, retry_after_seconds: int = 60) -> None:
        super().__init__(
            INSUFFICIENT_STORAGE,
            "the server has no room to store the upload; retry later",
            retry_after_seconds=retry_after_seconds,
        )


class TooManyUploadsError(RetryLaterError):
    """The tenant already has every upload slot (or wait slot) of this replica."""


class JobFailedError(IngestError):
    """A job a caller waited on ended failed; `code` is the job's own error code."""

    def __init__(self, job_id: UUID, code: str, message: str, *, retryable: bool) -> None:
        super().__init__(code, f"transcription {job_id} failed: {message}")
        self.job_id = job_id
        self.retryable = retryable


class JobPendingError(IngestError):
    """A job a caller waited on has not ended yet; the caller polls it by `job_id`."""

    def __init__(self, job_id: UUID, waited_seconds: float) -> None:
        super().__init__(
            TRANSCRIPTION_PENDING,
            f"transcription {job_id} has not finished after {waited_seconds:g} s; it goes on: "
            f"poll GET /v1/transcriptions/{job_id}",
        )
        self.job_id = job_id


class InternalError(IngestError):
    """A broken invariant inside ingest; nothing the caller did."""

    def __init__(self, message: str) -> None:
        super().__init__(ErrorCode.INTERNAL_ERROR, message)


def invalid_fields(details: list[dict[str, Any]]) -> InvalidInputError:
    """`validation_error` naming each bad field (`details` as FastAPI reports them)."""
    fields = ", ".join(_named(d) for d in details)
    return InvalidInputError(VALIDATION_ERROR, f"invalid request: {fields}", details=details)


def _named(detail: dict[str, Any]) -> str:
    """The field an error is about; for a rule across fields (no one field), the rule."""
    field = ".".join(str(p) for p in detail.get("loc", ())[1:])
    return field or str(detail.get("msg", "")).removeprefix("Value error, ") or "?"


def file_too_large(limit: int) -> TooLargeError:
    """`file_too_large`: more bytes than `limit`."""
    return TooLargeError(
        ErrorCode.FILE_TOO_LARGE, f"the file is larger than the limit of {limit} bytes"
    )
