"""Bodies of the `/v1/webhooks` endpoints (requests and answers)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, field_validator

from contracts.webhooks import TERMINAL_EVENT_TYPES, DeliveryOutcome, WebhookEventType


class WebhookCreate(BaseModel):
    """An endpoint to register."""

    model_config = ConfigDict(extra="forbid")

    url: str = Field(
        min_length=1,
        max_length=2048,
        examples=["https://hooks.example.com/scribe"],
        description="http(s) URL; must resolve to public addresses (or be allow-listed).",
    )
    event_types: list[WebhookEventType] = Field(
        default_factory=lambda: list(TERMINAL_EVENT_TYPES),
        min_length=1,
        max_length=3,
        description="Which job events to receive; default the terminal ones.",
    )
    description: str | None = Field(default=None, max_length=500)

    @field_validator("url", "description")
    @classmethod
    def _no_nul(cls, value: str | None) -> str | None:
        # The registration event refuses it too (PostgreSQL cannot store it): a 422 here,
        # not a 500 when the event is made.
        if value is not None and "\x00" in value:
            raise ValueError("must not contain NUL characters")
        return value


class WebhookOut(BaseModel):
    """A registered endpoint (never its secret)."""

    id: UUID
    url: str
    event_types: list[WebhookEventType]
    description: str | None = None
    created_at: datetime
    secret_rotated_at: datetime | None = Field(
        default=None, description="When the secret in use was made."
    )


class WebhookAccepted(BaseModel):
    """A registration or rotation, accepted: the secret is shown here and never again."""

    id: UUID
    url: str | None = None
    event_types: list[WebhookEventType] | None = None
    description: str | None = None
    secret: str = Field(
        examples=["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"],
        description="Verify each delivery with it (Standard Webhooks); store it now.",
    )
    status: Literal["accepted"] = Field(
        default="accepted",
        description="Applied within moments (eventually consistent): GET shows it then.",
    )


class WebhookList(BaseModel):
    """The tenant's endpoints, newest first."""

    data: list[WebhookOut]


class DeliveryAttemptOut(BaseModel):
    """One HTTP attempt."""

    attempt: int
    outcome: DeliveryOutcome
    status_code: int | None = None
    error: str | None = None
    duration_ms: float
    attempted_at: datetime
    next_attempt_at: datetime | None = None


class DeliveryOut(BaseModel):
    """One event for one endpoint: every attempt, and where it stands."""

    id: UUID
    webhook_id: str = Field(description="The `webhook-id` header (same on every attempt).")
    event_type: WebhookEventType
    job_id: UUID
    status: Literal["pending", "delivered", "retrying", "failed", "cancelled"]
    attempts: list[DeliveryAttemptOut]
    next_attempt_at: datetime | None = None
    created_at: datetime


class DeliveryList(BaseModel):
    """An endpoint's deliveries, newest first."""

    data: list[DeliveryOut]


class ReplayAccepted(BaseModel):
    """A replay, queued: the delivery goes out again with the same `webhook-id`."""

    id: UUID
    webhook_id: str
    status: Literal["accepted"] = "accepted"
