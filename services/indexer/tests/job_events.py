"""Realistic event sequences of one job, shared by the indexer's unit and integration tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import UUID, uuid4, uuid5

from contracts import (
    AudioUploadedV1,
    TranscriptCompletedV1,
    TranscriptionCancelRequestedV1,
    TranscriptionDeleteRequestedV1,
    TranscriptionFailedV1,
    TranscriptionOptions,
    TranscriptionProgressV1,
    TranscriptionStartedV1,
)
from contracts.chunks import ChunkSpec, TranscriptionChunkedV1, TranscriptionChunkTranscribedV1
from contracts.envelope import Event
from contracts.errors import ErrorCode
from contracts.transcription import Segment, Word

T0 = datetime(2026, 11, 28, 12, 0, 0, tzinfo=UTC)

SEGMENT_TEXTS = (
    "The quick brown fox jumps over the lazy dog.",
    "Peter Piper picked a peck of pickled peppers near the harbour.",
    "She sells sea shells by the sea shore every summer morning.",
)


def _envelope(job_id: UUID, tenant: str, seconds: float) -> dict[str, object]:
    return {
        "job_id": job_id,
        "tenant_id": tenant,
        "correlation_id": UUID(int=job_id.int ^ 1),
        "occurred_at": T0 + timedelta(seconds=seconds),
    }


def uploaded(job_id: UUID, tenant: str = "default", at: float = 0.0) -> AudioUploadedV1:
    return AudioUploadedV1(
        **_envelope(job_id, tenant, at),  # type: ignore[arg-type]
        producer="scribe-ingest/test",
        audio_uri="file:///media/ab/cd/abcd.wav",  # type: ignore[arg-type]
        sha256="ab" * 32,
        size_bytes=352_844,
        content_type="audio/wav",
        original_filename="standup.wav",
        duration_seconds=11.0,
        options=TranscriptionOptions(language="en", word_timestamps=True),
    )


def started(
    job_id: UUID, attempt: int = 1, tenant: str = "default", at: float = 1.0
) -> TranscriptionStartedV1:
    return TranscriptionStartedV1(
        **_envelope(job_id, tenant, at),  # type: ignore[arg-type]
        producer="scribe-transcriber/test",
        attempt=attempt,
        worker=f"worker-{attempt}",
        model="tiny.en",
    )


def progress(
    job_id: UUID, fraction: float, tenant: str = "default", at: float = 2.0
) -> TranscriptionProgressV1:
    return TranscriptionProgressV1(
        **_envelope(job_id, tenant, at),  # type: ignore[arg-type]
        producer="scribe-transcriber/test",
        progress=fraction,
        processed_seconds=round(11.0 * fraction, 3),
        duration_seconds=11.0,
        segments_done=int(fraction * 3),
    )


def segments() -> list[Segment]:
    result = []
    for i, text in enumerate(SEGMENT_TEXTS):
        start = round(i * 3.7, 3)
        words = text.split()
        step = 3.5 / len(words)
        result.append(
            Segment(
                id=i,
                start=start,
                end=round(start + 3.5, 3),
                text=text,
                avg_logprob=-0.2,
                no_speech_prob=0.01,
                words=[
                    Word(
                        word=w,
                        start=round(start + j * step, 3),
                        end=round(start + (j + 1) * step, 3),
                        probability=0.9,
                    )
                    for j, w in enumerate(words)
                ],
            )
        )
    return result


def completed(
    job_id: UUID, tenant: str = "default", at: float = 9.0, attempt: int = 1
) -> TranscriptCompletedV1:
    segs = segments()
    return TranscriptCompletedV1(
        **_envelope(job_id, tenant, at),  # type: ignore[arg-type]
        producer="scribe-transcriber/test",
        language="en",
        language_probability=1.0,
        duration_seconds=11.02,
        model="tiny.en",
        text=" ".join(s.text for s in segs),
        segments=segs,
        processing_seconds=1.4,
        attempt=attempt,
    )


def failed(job_id: UUID, tenant: str = "default", at: float = 9.0) -> TranscriptionFailedV1:
    return TranscriptionFailedV1(
        **_envelope(job_id, tenant, at),  # type: ignore[arg-type]
        producer="scribe-transcriber/test",
        code=ErrorCode.CORRUPT_AUDIO,
        message="the audio stream cannot be decoded",
        retryable=False,
        attempts=1,
    )


def completed_job(job_id: UUID | None = None, tenant: str = "default") -> list[Event]:
    """Upload, a first attempt that crashed, a second that completed: 8 events."""
    job = job_id or uuid4()
    return [
        uploaded(job, tenant),
        started(job, 1, tenant, at=1.0),
        progress(job, 0.25, tenant, at=2.0),
        started(job, 2, tenant, at=4.0),
        progress(job, 0.5, tenant, at=5.0),
        progress(job, 0.75, tenant, at=6.0),
        progress(job, 1.0, tenant, at=7.0),
        completed(job, tenant, at=9.0, attempt=2),
    ]


def failed_job(job_id: UUID | None = None, tenant: str = "default") -> list[Event]:
    """Upload, start, some progress, then a permanent failure."""
    job = job_id or uuid4()
    return [
        uploaded(job, tenant),
        started(job, 1, tenant),
        progress(job, 0.3, tenant, at=3.0),
        failed(job, tenant, at=4.0),
    ]


def cancel_requested(
    job_id: UUID, tenant: str = "default", at: float = 1.5
) -> TranscriptionCancelRequestedV1:
    return TranscriptionCancelRequestedV1(
        **_envelope(job_id, tenant, at),  # type: ignore[arg-type]
        producer="scribe-ingest/test",
    )


def delete_requested(
    job_id: UUID, tenant: str = "default", at: float = 10.0
) -> TranscriptionDeleteRequestedV1:
    return TranscriptionDeleteRequestedV1(
        **_envelope(job_id, tenant, at),  # type: ignore[arg-type]
        producer="scribe-ingest/test",
    )


# A long job: a plan of chunks, then one result per chunk (synthetic; no transcriber).

CHUNK_SECONDS = 60.0
LAST_CHUNK_WORD = "zanzibar"
"""Said only in the last chunk of `long_job`."""


def chunk_texts(index: int, count: int) -> list[str]:
    """Two sentences per chunk; the last chunk's second one holds `LAST_CHUNK_WORD`."""
    last = f"we close in {LAST_CHUNK_WORD} tonight" if index == count - 1 else "we carry on"
    return [f"this is part {index} of the meeting", last]


def plan(
    job_id: UUID, count: int = 3, tenant: str = "default", at: float = 1.0
) -> TranscriptionChunkedV1:
    duration = count * CHUNK_SECONDS
    return TranscriptionChunkedV1(
        **_envelope(job_id, tenant, at),  # type: ignore[arg-type]
        event_id=uuid5(job_id, "plan"),
        producer="scribe-transcriber/test",
        duration_seconds=duration,
        model="tiny.en",
        language="en",
        language_probability=0.98,
        worker="planner-1",
        # The planner names the upload it split, as every transcriber event does.
        job_fingerprint=uploaded(job_id, tenant).job_fingerprint(),
        chunks=[
            ChunkSpec(
                index=i,
                start=max(0.0, i * CHUNK_SECONDS - 1.0),
                end=min(duration, (i + 1) * CHUNK_SECONDS + 1.0),
                core_start=i * CHUNK_SECONDS,
                core_end=(i + 1) * CHUNK_SECONDS,
                audio_uri=f"file:///media/{tenant}/chunks/{job_id}/{i:04d}.wav",  # type: ignore[arg-type]
            )
            for i in range(count)
        ],
    )


def chunk_result(
    job_id: UUID,
    index: int,
    count: int = 3,
    tenant: str = "default",
    at: float | None = None,
    worker: str = "worker-a",
    processing_seconds: float = 6.0,
) -> TranscriptionChunkTranscribedV1:
    """Chunk `index`'s result: absolute times, local ids 0.., words in its core."""
    base = index * CHUNK_SECONDS
    segs = []
    for local, text in enumerate(chunk_texts(index, count)):
        start = base + 5.0 + local * 25.0
        words = text.split()
        segs.append(
            Segment(
                id=local,
                start=start,
                end=start + 20.0,
                text=text,
                avg_logprob=-0.3,
                no_speech_prob=0.02,
                words=[
                    Word(word=w, start=start + j, end=start + j + 0.8, probability=0.9)
                    for j, w in enumerate(words)
                ],
            )
        )
    return TranscriptionChunkTranscribedV1(
        **_envelope(job_id, tenant, at if at is not None else 10.0 + index),  # type: ignore[arg-type]
        event_id=uuid5(job_id, f"chunk:{index}"),
        producer="scribe-transcriber/test",
        chunk_index=index,
        chunk_count=count,
        core_start=base,
        core_end=base + CHUNK_SECONDS,
        model="tiny.en",
        language="en",
        segments=segs,
        audio_seconds=CHUNK_SECONDS + 2.0,
        processing_seconds=processing_seconds,
        worker=worker,
        job_fingerprint=uploaded(job_id, tenant).job_fingerprint(),
    )


def long_job(job_id: UUID, count: int = 3, tenant: str = "default") -> list[Event]:
    """Upload, start, plan, then every chunk's result in order."""
    return [
        uploaded(job_id, tenant),
        started(job_id, 1, tenant, at=0.5),
        plan(job_id, count, tenant),
        *(chunk_result(job_id, i, count, tenant) for i in range(count)),
    ]
