"""Response bodies of the read endpoints (OpenAPI shows them with examples)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field
from pydantic_core import to_json

from ingest.links import JobLinks, completed_job_links

if TYPE_CHECKING:
    from ingest.search import Hit

JobStatusName = Literal["queued", "processing", "completed", "failed", "cancelled"]
"""`cancelled` is terminal, like `completed` and `failed`: `POST .../cancel` ended the job."""

_JOB = "0b9f6a52-3c1e-4d5f-9a8b-7c6d5e4f3a21"


class JobError(BaseModel):
    """Why a job failed."""

    code: str = Field(examples=["corrupt_audio"], description="Stable error code.")
    message: str = Field(examples=["the audio stream cannot be decoded"])
    retryable: bool | None = Field(
        default=None, description="Whether submitting the same audio again could succeed."
    )


class AudioInfo(BaseModel):
    """The submitted audio, as stored at upload."""

    uri: str | None = Field(
        default=None,
        description=(
            "Where the audio came from: the `audio_url` as submitted, or `media:<name>` for a "
            "file on the server (an upload's name is its SHA-256); never a server path."
        ),
        examples=["media:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"],
    )
    sha256: str | None = None
    size_bytes: int | None = Field(default=None, examples=[352844])
    content_type: str | None = Field(default=None, examples=["audio/wav"])
    original_filename: str | None = Field(default=None, examples=["standup.wav"])
    duration_seconds: float | None = Field(
        default=None,
        examples=[11.02],
        description="Decoded duration once transcribed; the upload's probe until then.",
    )


class RequestedOptions(BaseModel):
    """What the submitter asked for."""

    language: str | None = Field(default=None, examples=["en"])
    model: str | None = Field(default=None, examples=["tiny.en"])
    word_timestamps: bool | None = None


class WordOut(BaseModel):
    """A word with its time span."""

    word: str = Field(examples=["Americans,"])
    start: float = Field(examples=[2.1])
    end: float = Field(examples=[2.9])
    probability: float = Field(examples=[0.97])
    speaker: str | None = Field(
        default=None, examples=["SPEAKER_00"], description="Who spoke it, when diarized."
    )


class SegmentOut(BaseModel):
    """A stretch of speech, with its position in the audio in seconds."""

    id: int = Field(examples=[0])
    start: float = Field(examples=[0.0])
    end: float = Field(examples=[4.2])
    text: str = Field(examples=["And so my fellow Americans,"])
    avg_logprob: float | None = None
    no_speech_prob: float | None = None
    words: list[WordOut] | None = Field(
        default=None, description="Present when word timestamps were requested."
    )
    speaker: str | None = Field(
        default=None,
        examples=["SPEAKER_00"],
        description="Who spoke (numbered by first appearance) when the job asked `diarize`.",
    )


class TranscriptOut(BaseModel):
    """A finished transcript."""

    language: str = Field(examples=["en"])
    language_probability: float = Field(examples=[1.0])
    duration_seconds: float = Field(examples=[11.02])
    model: str = Field(examples=["tiny.en"])
    text: str = Field(examples=["And so my fellow Americans, ask not what your country can do."])
    segments: list[SegmentOut]


class TranscriptionOut(BaseModel):
    """Everything about one job; `transcript` once it is completed."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": _JOB,
                    "status": "processing",
                    "progress": 0.5,
                    "processed_seconds": 1800.0,
                    "eta_seconds": 95.4,
                    "attempts": 1,
                    "audio": {"original_filename": "standup.wav", "duration_seconds": 11.02},
                    "created_at": "2026-11-28T12:00:00Z",
                    "updated_at": "2026-11-28T12:00:03Z",
                    "links": {
                        "self": f"/v1/transcriptions/{_JOB}",
                        "transcript": f"/v1/transcriptions/{_JOB}/transcript.json",
                    },
                }
            ]
        }
    )

    id: UUID
    status: JobStatusName
    progress: float = Field(ge=0, le=1, description="Fraction of the audio transcribed.")
    processed_seconds: float = Field(default=0.0, description="Seconds of audio transcribed.")
    eta_seconds: float | None = Field(
        default=None,
        ge=0,
        description=(
            "While `processing`: estimated seconds until the transcript is complete. For a "
            "long job (split into chunks) it is the audio left times the real-time factor "
            "measured on its chunks so far, divided by the workers at work on it; absent "
            "when no estimate exists yet (a short job, or before its first chunk is done)."
        ),
    )
    attempts: int = Field(description="Deliveries to a worker so far.")
    error: JobError | None = Field(default=None, description="Set when `status` is `failed`.")
    audio: AudioInfo
    options: RequestedOptions = Field(default_factory=RequestedOptions)
    model: str | None = Field(default=None, description="The model that transcribed it.")
    language: str | None = Field(default=None, description="Spoken language, once known.")
    created_at: datetime
    updated_at: datetime = Field(description="Time of the latest event about the job.")
    started_at: datetime | None = None
    completed_at: datetime | None = None
    failed_at: datetime | None = None
    cancelled_at: datetime | None = Field(
        default=None, description="Set when `status` is `cancelled`."
    )
    correlation_id: UUID | None = None
    transcript: TranscriptOut | None = Field(
        default=None, description="The transcript, once `status` is `completed`."
    )
    links: JobLinks = Field(
        description="Related resources: `self`, `transcript`, and the exports once completed."
    )


class TranscriptionSummary(BaseModel):
    """A job in a listing."""

    id: UUID
    status: JobStatusName
    progress: float
    original_filename: str | None = None
    duration_seconds: float | None = None
    language: str | None = None
    error: JobError | None = None
    created_at: datetime
    updated_at: datetime
    completed_at: datetime | None = None
    links: JobLinks


class TranscriptionPage(BaseModel):
    """One page of jobs, newest first."""

    items: list[TranscriptionSummary]
    next_cursor: str | None = Field(
        default=None, description="Pass as `cursor` for the next page; absent on the last page."
    )


class SearchHit(BaseModel):
    """A segment that matches the query, and where it is in its audio."""

    job_id: UUID
    segment_id: int = Field(examples=[12])
    start: float = Field(examples=[73.4], description="Segment start, seconds into the audio.")
    end: float = Field(examples=[77.9], description="Segment end, seconds into the audio.")
    language: str = Field(examples=["en"])
    speaker: str | None = Field(default=None, examples=["SPEAKER_01"])
    text: str = Field(examples=["ask not what your country can do for you"])
    snippet: str = Field(
        examples=["ask not what your <mark>country</mark> can do for you"],
        description="HTML-escaped text with the matches in `<mark>`.",
    )
    rank: float = Field(description="Relevance; higher is better. Compare within one query.")
    links: JobLinks = Field(description="The hit's job, and its transcript exports.")


class SearchPage(BaseModel):
    """Ranked hits for a query, best first."""

    query: str = Field(examples=['"fellow americans" -taxes'])
    hits: list[SearchHit]
    next_cursor: str | None = None
    approximate: bool = Field(
        default=False,
        description=(
            "True when more segments matched than are ranked per query "
            "(`SCRIBE_INGEST_SEARCH_CANDIDATE_LIMIT`): hits are the best of those considered."
        ),
    )


def search_page_json(
    query: str, hits: Sequence[Hit], next_cursor: str | None, approximate: bool
) -> bytes:
    """`SearchPage` as JSON, byte for byte what `SearchPage(...).model_dump_json()` gives,
    without building its `SearchHit` and `JobLinks` models: they would validate again what
    the database has already typed (~10 µs a hit, 0.13 ms of a 20-hit page, in the fixed
    cost issue 20 measures; bench/README.md). A test holds the two equal."""
    return to_json(
        {
            "query": query,
            "hits": [
                {
                    "job_id": hit.job_id,
                    "segment_id": hit.segment_id,
                    "start": hit.start,
                    "end": hit.end,
                    "language": hit.language,
                    "speaker": hit.speaker,
                    "text": hit.text,
                    "snippet": hit.snippet,
                    "rank": hit.rank,
                    # Only completed jobs have segments to match.
                    "links": completed_job_links(hit.job_id),
                }
                for hit in hits
            ],
            "next_cursor": next_cursor,
            "approximate": approximate,
        }
    )
