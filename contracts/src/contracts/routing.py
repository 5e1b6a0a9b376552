"""Names on the wire: exchanges, routing keys, queues; and event decoding.

Message headers (`x-scribe-*`) are the runtime's, not the events': `scribe_runtime.amqp`.
"""

from __future__ import annotations

import json
from typing import Final

from pydantic import ValidationError

from contracts.audio import AudioUploadedV1
from contracts.chunks import (
    CHUNK_EVENT_CLASSES,
    TranscriptionChunkedV1,
    TranscriptionChunkRequestedV1,
    TranscriptionChunkTranscribedV1,
)
from contracts.envelope import INVALID_FIELD, NUL_FREE_CONTEXT, Event
from contracts.errors import (
    InvalidEventFieldError,
    MalformedEventError,
    UnknownEventTypeError,
    UnsupportedEventVersionError,
)
from contracts.lifecycle import (
    TranscriptionCancelledV1,
    TranscriptionCancelRequestedV1,
    TranscriptionDeletedV1,
    TranscriptionDeleteRequestedV1,
)
from contracts.transcription import (
    TranscriptCompletedV1,
    TranscriptionFailedV1,
    TranscriptionProgressV1,
    TranscriptionStartedV1,
)
from contracts.webhooks import (
    WEBHOOK_EVENT_CLASSES,
    WebhookDeliveryAttemptedV1,
    WebhookDeliveryRequestedV1,
)

EXCHANGE: Final = "scribe.events"
"""Durable topic exchange every event is published to."""
DEAD_LETTER_EXCHANGE: Final = "scribe.dlx"
"""Direct exchange; a queue's dead letters are routed by the queue's name to `<queue>.dlq`."""

CONTENT_TYPE: Final = "application/json"

EVENT_CLASSES: Final[tuple[type[Event], ...]] = (
    AudioUploadedV1,
    TranscriptionStartedV1,
    TranscriptionProgressV1,
    TranscriptCompletedV1,
    TranscriptionFailedV1,
    TranscriptionCancelRequestedV1,
    TranscriptionCancelledV1,
    TranscriptionDeleteRequestedV1,
    TranscriptionDeletedV1,
)

"""The job events (what the job projection consumes)."""
ALL_EVENT_CLASSES: Final[tuple[type[Event], ...]] = (
    EVENT_CLASSES + CHUNK_EVENT_CLASSES + WEBHOOK_EVENT_CLASSES
)
"""Every event Scribe knows: the job events, a long job's chunk events, the webhook events."""

_REGISTRY: Final[dict[tuple[str, int], type[Event]]] = {
    (cls.TYPE, cls.VERSION): cls for cls in ALL_EVENT_CLASSES
}

_BY_ROUTING_KEY: Final[dict[str, type[Event]]] = {
    cls.routing_key(): cls for cls in ALL_EVENT_CLASSES
}
_SAID_ITSELF: Final = frozenset({"type", "version"})
AUDIO_UPLOADED_V1: Final = AudioUploadedV1.routing_key()
TRANSCRIPTION_STARTED_V1: Final = TranscriptionStartedV1.routing_key()
TRANSCRIPTION_PROGRESS_V1: Final = TranscriptionProgressV1.routing_key()
TRANSCRIPT_COMPLETED_V1: Final = TranscriptCompletedV1.routing_key()
TRANSCRIPTION_FAILED_V1: Final = TranscriptionFailedV1.routing_key()
TRANSCRIPTION_CANCEL_REQUESTED_V1: Final = TranscriptionCancelRequestedV1.routing_key()
TRANSCRIPTION_CANCELLED_V1: Final = TranscriptionCancelledV1.routing_key()
TRANSCRIPTION_DELETE_REQUESTED_V1: Final = TranscriptionDeleteRequestedV1.routing_key()
TRANSCRIPTION_DELETED_V1: Final = TranscriptionDeletedV1.routing_key()
TRANSCRIPTION_CHUNKED_V1: Final = TranscriptionChunkedV1.routing_key()
TRANSCRIPTION_CHUNK_REQUESTED_V1: Final = TranscriptionChunkRequestedV1.routing_key()
TRANSCRIPTION_CHUNK_TRANSCRIBED_V1: Final = TranscriptionChunkTranscribedV1.routing_key()
WEBHOOK_DELIVERY_REQUESTED_V1: Final = WebhookDeliveryRequestedV1.routing_key()
WEBHOOK_DELIVERY_ATTEMPTED_V1: Final = WebhookDeliveryAttemptedV1.routing_key()


def dead_letter_queue(queue: str) -> str:
    """The name of a queue's dead-letter queue."""
    return f"{queue}.dlq"


def event_class(event_type: str, version: int) -> type[Event]:
    """The model for a type and major version; typed errors for unknown ones."""
    try:
        return _REGISTRY[(event_type, version)]
    except KeyError:
        if any(t == event_type for t, _ in _REGISTRY):
            known = sorted(v for t, v in _REGISTRY if t == event_type)
            raise UnsupportedEventVersionError(
                f"{event_type!r} has no version {version!r}; known versions: {known}"
            ) from None
        raise UnknownEventTypeError(f"unknown event type {event_type!r}") from None


def parse_message_type(message_type: str) -> tuple[str, int]:
    """Split an AMQP type `<type>.v<version>` into its parts."""
    head, sep, tail = message_type.rpartition(".v")
    if not sep or not head or not tail.isdigit():
        raise MalformedEventError(f"AMQP type {message_type!r} is not '<type>.v<version>'")
    return head, int(tail)


def _nul_free(body: bytes) -> bool:
    # Strict JSON can carry a NUL only as the escape `\u0000`: without one in the bytes,
    # the model need not walk every string of the event looking for it.
    return b"\\u0000" not in body


def decode_event(body: bytes, message_type: str | None = None) -> Event:
    """Decode a message body into its event model.

    The body's own `type` and `version` decide; the AMQP `type` property, when given,
    must agree with them. Raises a `ContractError` subclass with a human reason.
    """
    # Nearly every message names its event in the AMQP type: then the body is parsed once,
    # straight into that model (whose `type` and `version` are literals: a body of another
    # event fails it). Any failure goes the long way, which says what is wrong.
    # Strict, and only taken when the body set `type` and `version` itself: a default or a
    # lax conversion (`true` for 1) must never stand in for what the body has to say.
    known = _BY_ROUTING_KEY.get(message_type) if message_type is not None else None
    if known is not None:
        try:
            event = known.model_validate_json(
                body, strict=True, context={NUL_FREE_CONTEXT: _nul_free(body)}
            )
        except ValidationError:
            pass
        else:
            if event.model_fields_set >= _SAID_ITSELF:
                return event
    try:
        raw = json.loads(body.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise MalformedEventError(f"body is not UTF-8: {exc}") from None
    except json.JSONDecodeError as exc:
        raise MalformedEventError(f"body is not JSON: {exc}") from None
    except RecursionError:
        # `[[[[...` a few thousand deep exhausts the decoder's stack: hostile, not a crash.
        raise MalformedEventError("body nests too deeply to be an event") from None
    if not isinstance(raw, dict):
        raise MalformedEventError(f"body is a JSON {type(raw).__name__}, not an object")
    event_type, version = raw.get("type"), raw.get("version")
    if not isinstance(event_type, str) or not event_type:
        raise MalformedEventError("body has no string 'type'")
    if not isinstance(version, int) or isinstance(version, bool):
        raise MalformedEventError("body has no integer 'version'")
    cls = event_class(event_type, version)
    if message_type is not None and message_type != cls.routing_key():
        raise MalformedEventError(
            f"AMQP type {message_type!r} disagrees with the body's {cls.routing_key()!r}"
        )
    try:
        return cls.model_validate(raw, context={NUL_FREE_CONTEXT: _nul_free(body)})
    except ValidationError as exc:
        errors = exc.errors()
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '<body>'}: {e['msg']}" for e in errors
        )
        # A field no consumer can store gets its own code, so an operator sees what to fix.
        error = (
            InvalidEventFieldError
            if any(e["type"] == INVALID_FIELD for e in errors)
            else MalformedEventError
        )
        raise error(f"invalid {cls.routing_key()}: {problems}") from None
