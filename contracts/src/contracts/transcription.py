"""Events about a transcription's life: started, progress, completed, failed."""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from contracts.audio import JobFingerprint, LanguageCode
from contracts.envelope import Event
from contracts.errors import ErrorCode

NonNegative = Annotated[float, Field(ge=0)]
SegmentFlag = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,63}$")]
"""A quality flag; consumers ignore flags they do not know (more may be added)."""
Probability = Annotated[float, Field(ge=0, le=1)]
SpeakerLabel = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
"""A speaker's label within one transcript, e.g. `SPEAKER_00`; not an identity across jobs."""
_SPEAKER_DESCRIPTION = (
    "Who spoke (e.g. `SPEAKER_00`, numbered in order of first appearance) when diarization "
    "was asked for; absent otherwise."
)
_FINGERPRINT_DESCRIPTION = (
    "`job_fingerprint` of the upload this event is about (its audio and options); the "
    "indexer refuses an event whose fingerprint differs from the job's first upload."
)


class _Timed(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    start: NonNegative = Field(description="Start, in seconds from the beginning of the audio.")
    end: NonNegative = Field(description="End, in seconds from the beginning of the audio.")

    @model_validator(mode="after")
    def _start_not_after_end(self) -> Self:
        if self.start > self.end:
            raise ValueError(f"start ({self.start}) is after end ({self.end})")
        return self


class Word(_Timed):
    """One recognised word with its time span."""

    word: str
    probability: Probability
    speaker: SpeakerLabel | None = Field(
        default=None,
        description=_SPEAKER_DESCRIPTION,
        # Left out of the JSON when not diarized: no `"speaker": null` on every word of a
        # 10-hour transcript (1.4 MiB of its body; see tests/unit/test_payload_size.py).
        exclude_if=lambda value: value is None,
    )


class Segment(_Timed):
    """A stretch of speech the model emitted as one unit."""

    id: int = Field(ge=0, description="Position of the segment in the transcript, from 0.")
    text: str
    avg_logprob: float | None = None
    no_speech_prob: Probability | None = None
    words: list[Word] | None = Field(
        default=None, description="Present when word timestamps were requested."
    )
    compression_ratio: NonNegative | None = Field(
        default=None,
        description=(
            "gzip compression ratio of the text as decoded; above 2.4 usually means a loop."
        ),
    )
    flags: list[SegmentFlag] | None = Field(
        default=None,
        description=(
            "Quality signals: `repetition` (a loop was cut), `low_confidence` (average log "
            "probability below -1), `no_speech` (no-speech probability above 0.6), "
            "`high_compression` (compression ratio above 2.4). Absent when not computed."
        ),
    )
    speaker: SpeakerLabel | None = Field(
        default=None,
        description=_SPEAKER_DESCRIPTION,
        # Left out of the JSON when not diarized: no `"speaker": null` on every word of a
        # 10-hour transcript (1.4 MiB of its body; see tests/unit/test_payload_size.py).
        exclude_if=lambda value: value is None,
    )


class TranscriptionStartedV1(Event):
    """A worker has begun transcribing the job."""

    TYPE: ClassVar[str] = "transcription.started"
    VERSION: ClassVar[int] = 1

    type: Literal["transcription.started"] = "transcription.started"
    version: Literal[1] = 1
    attempt: int = Field(ge=1, description="1 on first delivery; more after redeliveries.")
    worker: str | None = Field(default=None, max_length=255, description="Which worker took it.")
    model: str | None = Field(default=None, max_length=255)
    job_fingerprint: JobFingerprint | None = Field(
        default=None, description=_FINGERPRINT_DESCRIPTION
    )


class TranscriptionProgressV1(Event):
    """How far through the audio the worker is."""

    TYPE: ClassVar[str] = "transcription.progress"
    VERSION: ClassVar[int] = 1

    type: Literal["transcription.progress"] = "transcription.progress"
    version: Literal[1] = 1
    progress: Probability = Field(description="Fraction of the audio transcribed, 0 to 1.")
    processed_seconds: NonNegative = 0.0
    duration_seconds: NonNegative | None = None
    segments_done: int = Field(default=0, ge=0)
    eta_seconds: NonNegative | None = Field(
        default=None,
        description=(
            "Estimated seconds until the transcript is complete, from the measured real-time "
            "factor and the workers at work on the job; absent when not yet estimable."
        ),
    )
    job_fingerprint: JobFingerprint | None = Field(
        default=None, description=_FINGERPRINT_DESCRIPTION
    )


class TranscriptCompletedV1(Event):
    """The transcript is ready; carries all a downstream consumer needs."""

    TYPE: ClassVar[str] = "transcript.completed"
    VERSION: ClassVar[int] = 1

    type: Literal["transcript.completed"] = "transcript.completed"
    version: Literal[1] = 1
    language: LanguageCode
    language_probability: Probability
    duration_seconds: NonNegative
    model: Annotated[str, StringConstraints(min_length=1, max_length=255)]
    text: str
    segments: list[Segment]
    processing_seconds: NonNegative | None = Field(
        default=None, description="Wall time the worker spent transcribing."
    )
    attempt: int = Field(default=1, ge=1)
    empty_reason: Annotated[str, StringConstraints(max_length=64)] | None = Field(
        default=None,
        description=(
            "Why the transcript has no text, when it has none: `no_speech` (voice activity "
            "detection found no speech, or every segment was judged non-speech)."
        ),
    )
    job_fingerprint: JobFingerprint | None = Field(
        default=None, description=_FINGERPRINT_DESCRIPTION
    )

    @model_validator(mode="after")
    def _segments_ordered(self) -> Self:
        ids = [s.id for s in self.segments]
        if ids != sorted(set(ids)):
            raise ValueError("segment ids must be unique and ascending")
        return self


class TranscriptionFailedV1(Event):
    """The job cannot be completed; `code` says why."""

    TYPE: ClassVar[str] = "transcription.failed"
    VERSION: ClassVar[int] = 1

    type: Literal["transcription.failed"] = "transcription.failed"
    version: Literal[1] = 1
    code: ErrorCode = Field(description="Stable error code.")
    message: Annotated[str, StringConstraints(max_length=4000)] = Field(
        description="Human-readable reason."
    )
    retryable: bool = Field(
        default=False, description="Whether submitting the same audio again could succeed."
    )
    attempts: int = Field(default=1, ge=0, description="Deliveries made before giving up.")
    job_fingerprint: JobFingerprint | None = Field(
        default=None, description=_FINGERPRINT_DESCRIPTION
    )
