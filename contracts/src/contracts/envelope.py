"""The envelope every Scribe event carries (CloudEvents-style attributes)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Annotated, ClassVar, Final, Self
from uuid import UUID, uuid4

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

INVALID_FIELD: Final = "invalid_event_field"
NUL_FREE_CONTEXT: Final = "scribe.nul_free"
"""Validation-context flag: the JSON body had no `\\u0000` escape, so no string has a NUL."""
"""The pydantic error type of a field no consumer can store; `decode_event` maps it."""

EARLIEST_OCCURRED_AT: Final = datetime(2000, 1, 1, tzinfo=UTC)
"""No Scribe event happened before this; earlier is a zeroed or hostile clock."""
MAX_CLOCK_SKEW: Final = timedelta(minutes=5)
"""How far ahead of the consumer's clock a producer's `occurred_at` may be.

Clocks of hosts kept by NTP differ by milliseconds; minutes cover a VM that just resumed.
Further ahead would pin the job at the top of every list and make every later, real
event look older than it.
"""

TenantId = Annotated[
    str,
    StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"),
]
"""A tenant identifier: 1-64 characters, letters, digits, `_`, `.`, `-`."""

Producer = Annotated[str, StringConstraints(min_length=1, max_length=128)]


def utc_now() -> datetime:
    """The current time as an aware UTC datetime."""
    return datetime.now(UTC)


class Event(BaseModel):
    """Base of every event: the envelope. Strict for producers, tolerant for consumers.

    No string field of any event may hold a NUL character (PostgreSQL's text cannot).
    """

    model_config = ConfigDict(frozen=True, extra="ignore", str_strip_whitespace=False)

    # Subclasses pin these with Literal fields; ClassVars give them to the class itself.
    TYPE: ClassVar[str]
    VERSION: ClassVar[int]

    event_id: UUID = Field(
        default_factory=uuid4,
        description="Unique id of this event; also the AMQP message_id and the idempotency key.",
    )
    occurred_at: AwareDatetime = Field(
        default_factory=utc_now,
        description=(
            "When the fact happened (timezone-aware, UTC). Not before 2000-01-01T00:00:00Z, "
            "nor more than 300 s ahead of the consumer's clock: outside that window the "
            "event is dead-lettered with code `invalid_event_field`."
        ),
    )
    job_id: UUID = Field(description="The transcription job this event is about.")
    tenant_id: TenantId = Field(description="The tenant that owns the job.")
    correlation_id: UUID | None = Field(
        default=None,
        description="Traces one request (HTTP upload or external event) through every service.",
    )
    producer: Producer = Field(
        description="Who published the event, e.g. `scribe-ingest/0.1.0` or an external system."
    )

    @field_validator("version", mode="before", check_fields=False)
    @classmethod
    def _version_not_a_bool(cls, value: object) -> object:
        # JSON `true` would pass as `Literal[1]` (True == 1): a version is an integer.
        if isinstance(value, bool):
            raise ValueError("version must be an integer, not a boolean")
        return value

    @model_validator(mode="after")
    def _no_nul_characters(self, info: ValidationInfo) -> Self:
        # After validation: only the fields the model kept, unknown ones ignored as ever.
        if info.context and info.context.get(NUL_FREE_CONTEXT):
            return self  # decode_event saw no `\u0000` in the body: nothing to look for
        path = _nul_path(self)
        if path is not None:
            raise PydanticCustomError(
                INVALID_FIELD,
                "{field} contains a NUL character (\\u0000), which PostgreSQL cannot store",
                {"field": ".".join(reversed(path)) or "<body>"},
            )
        return self

    @field_validator("occurred_at")
    @classmethod
    def _occurred_at_in_window(cls, value: datetime) -> datetime:
        # Compare years before any offset arithmetic: 0001-01-01T00:00+14:00 overflows it.
        if value.year < EARLIEST_OCCURRED_AT.year or value < EARLIEST_OCCURRED_AT:
            raise PydanticCustomError(
                INVALID_FIELD,
                "occurred_at {value} is before {earliest}",
                {"value": value.isoformat(), "earliest": EARLIEST_OCCURRED_AT.isoformat()},
            )
        latest = datetime.now(UTC) + MAX_CLOCK_SKEW
        if value.year > latest.year + 1 or value > latest:
            raise PydanticCustomError(
                INVALID_FIELD,
                "occurred_at {value} is in the future (more than {skew} s ahead of {now})",
                {
                    "value": value.isoformat(),
                    "skew": int(MAX_CLOCK_SKEW.total_seconds()),
                    "now": (latest - MAX_CLOCK_SKEW).isoformat(timespec="seconds"),
                },
            )
        return value

    @classmethod
    def routing_key(cls) -> str:
        """The AMQP routing key and message type: `<type>.v<version>`."""
        return f"{cls.TYPE}.v{cls.VERSION}"

    @property
    def message_type(self) -> str:
        """The AMQP `type` property of this event: `<type>.v<version>`."""
        return self.routing_key()


def _nul_path(value: object) -> list[str] | None:
    """Where in `value` a NUL character is, innermost key first; None if nowhere."""
    if isinstance(value, str):
        return [] if "\x00" in value else None
    if isinstance(value, BaseModel):
        value = value.__dict__
    if isinstance(value, Mapping):
        for key, item in value.items():
            if isinstance(key, str) and "\x00" in key:
                return [key]
            if isinstance(item, str | BaseModel | Mapping | list | tuple):
                found = _nul_path(item)
                if found is not None:
                    found.append(str(key))
                    return found
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            found = _nul_path(item)
            if found is not None:
                found.append(str(index))
                return found
    return None
