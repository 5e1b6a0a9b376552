"""Stable error codes carried by `transcription.failed` events and API errors."""

from __future__ import annotations

from enum import StrEnum


class ErrorCode(StrEnum):
    """Why a job failed. Stable strings: clients and dashboards match on them."""

    UNSUPPORTED_MEDIA = "unsupported_media"
    """The bytes are not audio (no audio stream, unknown container)."""
    CORRUPT_AUDIO = "corrupt_audio"
    """An audio container whose samples cannot be decoded (truncated, damaged)."""
    AUDIO_TOO_LONG = "audio_too_long"
    """The decoded audio exceeds the configured duration limit."""
    FILE_TOO_LARGE = "file_too_large"
    """The source exceeds the configured size limit."""
    SOURCE_NOT_FOUND = "source_not_found"
    """The audio URI points at nothing (missing file, HTTP 404)."""
    SOURCE_UNREACHABLE = "source_unreachable"
    """The audio URI cannot be fetched and never will be (forbidden scheme or address)."""
    SOURCE_FORBIDDEN = "source_forbidden"
    """The audio URI names a file outside the job's tenant's part of the media root, or a
    bucket or prefix the job's tenant may not read."""
    MODEL_ERROR = "model_error"
    """The speech model failed on this input."""
    MODEL_UNAVAILABLE = "model_unavailable"
    """The job asks for a model no worker that received it serves; nothing was transcribed."""
    UNSUPPORTED_OPTION = "unsupported_option"
    """The job asks what its model cannot do (translate, or a language other than English,
    on an English-only model); nothing was transcribed, never a silent downgrade."""
    DEAD_LETTERED = "dead_lettered"
    """The job's message was dead-lettered (crash loop, delivery limit, malformed)."""
    INTERNAL_ERROR = "internal_error"
    """An unexpected error; the message says more."""


class RefusalCode(StrEnum):
    """Why a consumer dead-lettered a valid event without acting on it.

    The event is refused, not the job: no outcome event is published for it (the
    dead-letter watcher does not turn these into `transcription.failed`), and a job it
    names is left as it was.
    """

    UNKNOWN_TENANT = "unknown_tenant"
    """The event's tenant is not one this deployment serves (`SCRIBE_TENANTS`)."""
    CONFLICTING_JOB = "conflicting_job"
    """An upload reusing a job id that an earlier upload with other audio or options defined."""


class ContractError(ValueError):
    """A message that is not a valid Scribe event. `code` is a stable string."""

    code = "malformed_event"

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class MalformedEventError(ContractError):
    """The body is not JSON, or does not validate against the event's model."""

    code = "malformed_event"


class InvalidEventFieldError(ContractError):
    """Well-formed JSON of a known event, but a field no consumer can store or trust.

    A NUL character in a string (PostgreSQL's text cannot hold one), an `occurred_at`
    before `EARLIEST_OCCURRED_AT` or further ahead than `MAX_CLOCK_SKEW`. Retrying such an
    event can never succeed, so it is dead-lettered at once with this code.
    """

    code = "invalid_event_field"


class UnknownEventTypeError(ContractError):
    """The event type is not one this contract knows."""

    code = "unknown_event_type"


class UnsupportedEventVersionError(ContractError):
    """The type is known, but not at this major version."""

    code = "unsupported_event_version"
