"""Events about webhooks: endpoints registered, rotated, deleted; deliveries and attempts.

Ingest publishes the endpoint events (it never writes PostgreSQL); the indexer projects
them; the `scribe-webhooks` dispatcher publishes the delivery events. The envelope's
`job_id` is the event's subject: for endpoint events the endpoint's id (so the tracking
record and the log context name it), for delivery events the job the delivery is about.
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Final, Literal
from uuid import UUID

from pydantic import AwareDatetime, Field, StringConstraints

from contracts.envelope import Event

WebhookEventType = Literal["transcript.completed", "transcription.failed", "transcription.progress"]
"""The job events an endpoint may receive."""
TERMINAL_EVENT_TYPES: Final[tuple[WebhookEventType, ...]] = (
    "transcript.completed",
    "transcription.failed",
)
WebhookSecret = Annotated[
    str, StringConstraints(pattern=r"^whsec_[A-Za-z0-9+/]{32,}={0,2}$", max_length=128)
]
"""A Standard Webhooks secret: `whsec_` and the base64 of at least 24 random bytes."""
EndpointUrl = Annotated[str, StringConstraints(min_length=1, max_length=2048)]
DeliveryOutcome = Literal["delivered", "retrying", "failed", "cancelled"]


class _EndpointEvent(Event):
    job_id: UUID = Field(description="The endpoint's id (the subject of endpoint events).")

    @property
    def endpoint_id(self) -> UUID:
        """The endpoint this event is about (the envelope's `job_id`)."""
        return self.job_id


class WebhookEndpointRegisteredV1(_EndpointEvent):
    """A tenant registered an HTTP endpoint to receive job events, signed with `secret`."""

    TYPE: ClassVar[str] = "webhook.endpoint.registered"
    VERSION: ClassVar[int] = 1

    type: Literal["webhook.endpoint.registered"] = "webhook.endpoint.registered"
    version: Literal[1] = 1
    url: EndpointUrl = Field(description="Where deliveries are POSTed (passed the SSRF guard).")
    event_types: list[WebhookEventType] = Field(min_length=1, max_length=3)
    secret: WebhookSecret = Field(description="The signing secret (`whsec_...`).")
    description: Annotated[str, StringConstraints(max_length=500)] | None = None


class WebhookEndpointSecretRotatedV1(_EndpointEvent):
    """The endpoint's signing secret was replaced; the newest rotation wins."""

    TYPE: ClassVar[str] = "webhook.endpoint.secret_rotated"
    VERSION: ClassVar[int] = 1

    type: Literal["webhook.endpoint.secret_rotated"] = "webhook.endpoint.secret_rotated"
    version: Literal[1] = 1
    secret: WebhookSecret = Field(description="The new signing secret (`whsec_...`).")


class WebhookEndpointDeletedV1(_EndpointEvent):
    """The endpoint was deleted: it receives nothing more, whatever arrives later."""

    TYPE: ClassVar[str] = "webhook.endpoint.deleted"
    VERSION: ClassVar[int] = 1

    type: Literal["webhook.endpoint.deleted"] = "webhook.endpoint.deleted"
    version: Literal[1] = 1


class WebhookDeliveryRequestedV1(Event):
    """One job event is to be delivered to one endpoint (first time, or a replay)."""

    TYPE: ClassVar[str] = "webhook.delivery.requested"
    VERSION: ClassVar[int] = 1

    type: Literal["webhook.delivery.requested"] = "webhook.delivery.requested"
    version: Literal[1] = 1
    endpoint_id: UUID
    delivery_id: UUID = Field(description="Stable per (endpoint, job event); replays keep it.")
    message_id: Annotated[str, StringConstraints(min_length=1, max_length=64)] = Field(
        description="The `webhook-id` header: the same on every attempt and replay."
    )
    event_type: WebhookEventType
    payload: dict[str, object] = Field(description="The JSON body POSTed to the endpoint.")
    replay: bool = Field(default=False, description="Asked for again through the API.")


class WebhookDeliveryAttemptedV1(Event):
    """One HTTP attempt of a delivery and what came of it."""

    TYPE: ClassVar[str] = "webhook.delivery.attempted"
    VERSION: ClassVar[int] = 1

    type: Literal["webhook.delivery.attempted"] = "webhook.delivery.attempted"
    version: Literal[1] = 1
    endpoint_id: UUID
    delivery_id: UUID
    attempt: int = Field(ge=1, description="1 for the first try of this request, then up.")
    outcome: DeliveryOutcome = Field(
        description="`delivered` (2xx), `retrying` (another try is scheduled), `failed` "
        "(no try left: replay it), `cancelled` (the endpoint is gone)."
    )
    status_code: int | None = Field(default=None, ge=100, le=599)
    error: Annotated[str, StringConstraints(max_length=1000)] | None = None
    duration_ms: float = Field(default=0.0, ge=0)
    next_attempt_at: AwareDatetime | None = None


WEBHOOK_EVENT_CLASSES: Final[tuple[type[Event], ...]] = (
    WebhookEndpointRegisteredV1,
    WebhookEndpointSecretRotatedV1,
    WebhookEndpointDeletedV1,
    WebhookDeliveryRequestedV1,
    WebhookDeliveryAttemptedV1,
)
