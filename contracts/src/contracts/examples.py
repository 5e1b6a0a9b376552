"""One valid example per event, used in the exported schemas, the docs and the tests."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Final
from uuid import UUID

from contracts.audio import AudioUploadedV1, TranscriptionOptions
from contracts.chunks import (
    ChunkSpec,
    TranscriptionChunkedV1,
    TranscriptionChunkRequestedV1,
    TranscriptionChunkTranscribedV1,
)
from contracts.envelope import Event
from contracts.errors import ErrorCode
from contracts.lifecycle import (
    DeletionReason,
    TranscriptionCancelledV1,
    TranscriptionCancelRequestedV1,
    TranscriptionDeletedV1,
    TranscriptionDeleteRequestedV1,
)
from contracts.transcription import (
    Segment,
    TranscriptCompletedV1,
    TranscriptionFailedV1,
    TranscriptionProgressV1,
    TranscriptionStartedV1,
    Word,
)
from contracts.webhooks import (
    WebhookDeliveryAttemptedV1,
    WebhookDeliveryRequestedV1,
    WebhookEndpointDeletedV1,
    WebhookEndpointRegisteredV1,
    WebhookEndpointSecretRotatedV1,
)

_JOB = UUID("0b9f6a52-3c1e-4d5f-9a8b-7c6d5e4f3a21")
_CORRELATION = UUID("5f0e8d7c-6b5a-4938-8271-605f4e3d2c1b")
_AT = datetime(2026, 11, 28, 12, 0, 0, tzinfo=UTC)
_ENDPOINT = UUID("7d3c2b1a-0f9e-4d8c-b7a6-958473625140")
_DELIVERY = UUID("2a1b0c9d-8e7f-5a6b-9c8d-7e6f5a4b3c2d")
_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"  # noqa: S105  (an example, published)
_SHA = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"

_CHUNK_0 = ChunkSpec(
    index=0,
    start=0.0,
    end=301.2,
    core_start=0.0,
    core_end=298.4,
    audio_uri="file:///var/lib/scribe/media/acme/chunks/0b9f6a52/0000.wav",  # type: ignore[arg-type]
)
_CHUNK_1 = ChunkSpec(
    index=1,
    start=298.4,
    end=612.0,
    core_start=298.4,
    core_end=612.0,
    audio_uri="file:///var/lib/scribe/media/acme/chunks/0b9f6a52/0001.wav",  # type: ignore[arg-type]
)

EXAMPLES: Final[dict[type[Event], Event]] = {
    AudioUploadedV1: AudioUploadedV1(
        event_id=UUID("11111111-1111-4111-8111-111111111111"),
        occurred_at=_AT,
        job_id=_JOB,
        tenant_id="acme",
        correlation_id=_CORRELATION,
        producer="scribe-ingest/0.1.0",
        audio_uri="file:///var/lib/scribe/media/9f/86/9f86d081.wav",  # type: ignore[arg-type]
        sha256=_SHA,
        size_bytes=352844,
        content_type="audio/wav",
        original_filename="standup.wav",
        duration_seconds=11.02,
        options=TranscriptionOptions(language="en", word_timestamps=True),
    ),
    TranscriptionStartedV1: TranscriptionStartedV1(
        event_id=UUID("22222222-2222-4222-8222-222222222222"),
        occurred_at=_AT,
        job_id=_JOB,
        tenant_id="acme",
        correlation_id=_CORRELATION,
        producer="scribe-transcriber/0.1.0",
        attempt=1,
        worker="transcriber-7f9c@host-1",
        model="tiny.en",
    ),
    TranscriptionProgressV1: TranscriptionProgressV1(
        event_id=UUID("33333333-3333-4333-8333-333333333333"),
        occurred_at=_AT,
        job_id=_JOB,
        tenant_id="acme",
        correlation_id=_CORRELATION,
        producer="scribe-transcriber/0.1.0",
        progress=0.5,
        processed_seconds=5.51,
        duration_seconds=11.02,
        segments_done=1,
        eta_seconds=1.4,
    ),
    TranscriptCompletedV1: TranscriptCompletedV1(
        event_id=UUID("44444444-4444-4444-8444-444444444444"),
        occurred_at=_AT,
        job_id=_JOB,
        tenant_id="acme",
        correlation_id=_CORRELATION,
        producer="scribe-transcriber/0.1.0",
        language="en",
        language_probability=1.0,
        duration_seconds=11.02,
        model="tiny.en",
        text="And so my fellow Americans, ask not what your country can do for you.",
        segments=[
            Segment(
                id=0,
                start=0.0,
                end=4.2,
                text="And so my fellow Americans,",
                avg_logprob=-0.21,
                no_speech_prob=0.01,
                words=[
                    Word(word="And", start=0.0, end=0.6, probability=0.93),
                    Word(word="so", start=0.6, end=1.1, probability=0.98),
                ],
            ),
            Segment(
                id=1,
                start=4.2,
                end=11.02,
                text="ask not what your country can do for you.",
                avg_logprob=-0.18,
                no_speech_prob=0.01,
            ),
        ],
        processing_seconds=1.43,
        attempt=1,
    ),
    TranscriptionFailedV1: TranscriptionFailedV1(
        event_id=UUID("55555555-5555-4555-8555-555555555555"),
        occurred_at=_AT,
        job_id=_JOB,
        tenant_id="acme",
        correlation_id=_CORRELATION,
        producer="scribe-transcriber/0.1.0",
        code=ErrorCode.UNSUPPORTED_MEDIA,
        message="the file has no audio stream",
        retryable=False,
        attempts=1,
    ),
    TranscriptionCancelRequestedV1: TranscriptionCancelRequestedV1(
        event_id=UUID("66666666-6666-4666-8666-666666666666"),
        occurred_at=_AT,
        job_id=_JOB,
        tenant_id="acme",
        correlation_id=_CORRELATION,
        producer="scribe-ingest/0.1.0",
        reason="submitted the wrong recording",
    ),
    TranscriptionCancelledV1: TranscriptionCancelledV1(
        event_id=UUID("77777777-7777-4777-8777-777777777777"),
        occurred_at=_AT,
        job_id=_JOB,
        tenant_id="acme",
        correlation_id=_CORRELATION,
        producer="scribe-indexer/0.1.0",
        request_event_id=UUID("66666666-6666-4666-8666-666666666666"),
    ),
    TranscriptionDeleteRequestedV1: TranscriptionDeleteRequestedV1(
        event_id=UUID("88888888-8888-4888-8888-888888888888"),
        occurred_at=_AT,
        job_id=_JOB,
        tenant_id="acme",
        correlation_id=_CORRELATION,
        producer="scribe-ingest/0.1.0",
        reason=DeletionReason.REQUESTED,
    ),
    TranscriptionDeletedV1: TranscriptionDeletedV1(
        event_id=UUID("99999999-9999-4999-8999-999999999999"),
        occurred_at=_AT,
        job_id=_JOB,
        tenant_id="acme",
        correlation_id=_CORRELATION,
        producer="scribe-indexer/0.1.0",
        request_event_id=UUID("88888888-8888-4888-8888-888888888888"),
        reason=DeletionReason.REQUESTED,
    ),
    WebhookEndpointRegisteredV1: WebhookEndpointRegisteredV1(
        event_id=UUID("bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb"),
        occurred_at=_AT,
        job_id=_ENDPOINT,
        tenant_id="acme",
        producer="scribe-ingest/0.1.0",
        url="https://hooks.example.com/scribe",
        event_types=["transcript.completed", "transcription.failed"],
        secret=_SECRET,
        description="CRM sync",
    ),
    WebhookEndpointSecretRotatedV1: WebhookEndpointSecretRotatedV1(
        event_id=UUID("cccccccc-cccc-4ccc-8ccc-cccccccccccc"),
        occurred_at=_AT,
        job_id=_ENDPOINT,
        tenant_id="acme",
        producer="scribe-ingest/0.1.0",
        secret="whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD",  # noqa: S106  (an example)
    ),
    WebhookEndpointDeletedV1: WebhookEndpointDeletedV1(
        event_id=UUID("dddddddd-dddd-4ddd-8ddd-dddddddddddd"),
        occurred_at=_AT,
        job_id=_ENDPOINT,
        tenant_id="acme",
        producer="scribe-ingest/0.1.0",
    ),
    WebhookDeliveryRequestedV1: WebhookDeliveryRequestedV1(
        event_id=UUID("eeeeeeee-eeee-4eee-8eee-eeeeeeeeeeee"),
        occurred_at=_AT,
        job_id=_JOB,
        tenant_id="acme",
        correlation_id=_CORRELATION,
        producer="scribe-webhooks/0.1.0",
        endpoint_id=_ENDPOINT,
        delivery_id=_DELIVERY,
        message_id=f"msg_{_DELIVERY.hex}",
        event_type="transcription.failed",
        payload={
            "type": "transcription.failed",
            "timestamp": "2026-11-28T12:00:00Z",
            "data": {"job_id": str(_JOB), "code": "unsupported_media"},
        },
    ),
    WebhookDeliveryAttemptedV1: WebhookDeliveryAttemptedV1(
        event_id=UUID("aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa"),
        occurred_at=_AT,
        job_id=_JOB,
        tenant_id="acme",
        correlation_id=_CORRELATION,
        producer="scribe-webhooks/0.1.0",
        endpoint_id=_ENDPOINT,
        delivery_id=_DELIVERY,
        attempt=1,
        outcome="retrying",
        error="ConnectError: connection refused",
        duration_ms=2.1,
        next_attempt_at=datetime(2026, 11, 28, 12, 0, 5, tzinfo=UTC),
    ),
    TranscriptionChunkedV1: TranscriptionChunkedV1(
        event_id=UUID("c1c1c1c1-c1c1-4c1c-8c1c-c1c1c1c1c1c1"),
        occurred_at=_AT,
        job_id=_JOB,
        tenant_id="acme",
        correlation_id=_CORRELATION,
        producer="scribe-transcriber/0.1.0",
        duration_seconds=612.0,
        model="tiny.en",
        language="en",
        language_probability=1.0,
        chunks=[_CHUNK_0, _CHUNK_1],
        worker="transcriber-host-1234",
    ),
    TranscriptionChunkRequestedV1: TranscriptionChunkRequestedV1(
        event_id=UUID("c2c2c2c2-c2c2-4c2c-8c2c-c2c2c2c2c2c2"),
        occurred_at=_AT,
        job_id=_JOB,
        tenant_id="acme",
        correlation_id=_CORRELATION,
        producer="scribe-transcriber/0.1.0",
        chunk=_CHUNK_1,
        chunk_count=2,
        duration_seconds=612.0,
        model="tiny.en",
        language="en",
        options=TranscriptionOptions(language="en", word_timestamps=True),
    ),
    TranscriptionChunkTranscribedV1: TranscriptionChunkTranscribedV1(
        event_id=UUID("c3c3c3c3-c3c3-4c3c-8c3c-c3c3c3c3c3c3"),
        occurred_at=_AT,
        job_id=_JOB,
        tenant_id="acme",
        correlation_id=_CORRELATION,
        producer="scribe-transcriber/0.1.0",
        chunk_index=1,
        chunk_count=2,
        core_start=298.4,
        core_end=612.0,
        model="tiny.en",
        language="en",
        segments=[
            Segment(
                id=0,
                start=300.1,
                end=304.9,
                text=" And so, my fellow Americans.",
                avg_logprob=-0.21,
                no_speech_prob=0.01,
            )
        ],
        audio_seconds=313.6,
        processing_seconds=38.2,
        worker="transcriber-host-5678",
    ),
}
