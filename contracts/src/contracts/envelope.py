"""The envelope every Scribe event carries (CloudEvents-style attributes)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, ClassVar
from uuid import UUID, uuid4

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints

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
    """Base of every event: the envelope. Strict for producers, tolerant for consumers."""

    model_config = ConfigDict(frozen=True, extra="ignore", str_strip_whitespace=False)

    # Subclasses pin these with Literal fields; ClassVars give them to the class itself.
    TYPE: ClassVar[str]
    VERSION: ClassVar[int]

    event_id: UUID = Field(
        default_factory=uuid4,
        description="Unique id of this event; also the AMQP message_id and the idempotency key.",
    )
    occurred_at: AwareDatetime = Field(
        default_factory=utc_now, description="When the fact happened (timezone-aware, UTC)."
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

    @classmethod
    def routing_key(cls) -> str:
        """The AMQP routing key and message type: `<type>.v<version>`."""
        return f"{cls.TYPE}.v{cls.VERSION}"

    @property
    def message_type(self) -> str:
        """The AMQP `type` property of this event: `<type>.v<version>`."""
        return self.routing_key()
