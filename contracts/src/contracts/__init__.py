"""Scribe's event contracts: versioned Pydantic models shared by every service."""

from contracts.audio import AudioUploadedV1, TranscriptionOptions
from contracts.chunks import (
    ChunkSpec,
    TranscriptionChunkedV1,
    TranscriptionChunkRequestedV1,
    TranscriptionChunkTranscribedV1,
)
from contracts.envelope import Event, utc_now
from contracts.errors import (
    ContractError,
    ErrorCode,
    InvalidEventFieldError,
    MalformedEventError,
    UnknownEventTypeError,
    UnsupportedEventVersionError,
)
from contracts.lifecycle import (
    DeletionReason,
    TranscriptionCancelledV1,
    TranscriptionCancelRequestedV1,
    TranscriptionDeletedV1,
    TranscriptionDeleteRequestedV1,
)
from contracts.routing import (
    DEAD_LETTER_EXCHANGE,
    EVENT_CLASSES,
    EXCHANGE,
    dead_letter_queue,
    decode_event,
    event_class,
)
from contracts.transcription import (
    Segment,
    TranscriptCompletedV1,
    TranscriptionFailedV1,
    TranscriptionProgressV1,
    TranscriptionStartedV1,
    Word,
)

__all__ = [
    "DEAD_LETTER_EXCHANGE",
    "EVENT_CLASSES",
    "EXCHANGE",
    "AudioUploadedV1",
    "ChunkSpec",
    "ContractError",
    "DeletionReason",
    "ErrorCode",
    "Event",
    "InvalidEventFieldError",
    "MalformedEventError",
    "Segment",
    "TranscriptCompletedV1",
    "TranscriptionCancelRequestedV1",
    "TranscriptionCancelledV1",
    "TranscriptionChunkRequestedV1",
    "TranscriptionChunkTranscribedV1",
    "TranscriptionChunkedV1",
    "TranscriptionDeleteRequestedV1",
    "TranscriptionDeletedV1",
    "TranscriptionFailedV1",
    "TranscriptionOptions",
    "TranscriptionProgressV1",
    "TranscriptionStartedV1",
    "UnknownEventTypeError",
    "UnsupportedEventVersionError",
    "Word",
    "dead_letter_queue",
    "decode_event",
    "event_class",
    "utc_now",
]
