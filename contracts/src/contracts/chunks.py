"""Internal events of a long job: its plan of chunks, the chunk work items, their results.

A job whose audio is longer than a threshold is split at silences into chunks of a few
minutes. The worker that splits it (the *planner*) normalises each chunk once (16 kHz
mono) into the media store, detects the language once, publishes one work item per chunk
(`transcription.chunk.requested.v1`) for any transcriber of the job's model as soon as
that chunk is written, and once the split is done the plan for the indexer
(`transcription.chunked.v1`). Each chunk's transcript comes back as
`transcription.chunk.transcribed.v1` (possibly before the plan), which the indexer keeps
durably, upserted by (job, chunk); when the last one is in, the indexer assembles the job
and publishes the public `transcript.completed.v1` from its outbox. Consumers outside
Scribe need none of these: they are versioned contracts so that a fleet of mixed versions
still agrees.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, ClassVar, Final, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from contracts.audio import AudioUri, JobFingerprint, LanguageCode, TranscriptionOptions
from contracts.envelope import Event
from contracts.speakers import MAX_SPEAKER_TURNS, SpeakerTurn
from contracts.transcription import NonNegative, Probability, Segment

MAX_CHUNKS: Final = 2000
"""More than a 10-hour file needs at one chunk a minute; bounds every plan's size."""

ModelName = Annotated[str, StringConstraints(min_length=1, max_length=255)]


class ChunkSpec(BaseModel):
    """One chunk of a job's audio, in seconds from the start of the original file.

    `start`/`end` are what the chunk's audio covers (with overlap at a hard cut);
    `core_start`/`core_end` are the part this chunk owns: a word is kept from the chunk
    whose core holds the word's midpoint, so a word in an overlap is kept exactly once.
    The cores of a plan tile the audio: chunk 0's core starts at 0, each core starts where
    the previous one ends, and the last ends at the audio's duration.
    """

    model_config = ConfigDict(frozen=True, extra="ignore")

    index: int = Field(ge=0, lt=MAX_CHUNKS, description="Position of the chunk, from 0.")
    start: NonNegative = Field(description="Where the chunk's audio begins.")
    end: NonNegative = Field(description="Where the chunk's audio ends.")
    core_start: NonNegative = Field(description="Where the part this chunk owns begins.")
    core_end: NonNegative = Field(description="Where the part this chunk owns ends.")
    audio_uri: AudioUri = Field(
        description="The chunk's normalised audio (16 kHz mono) in the media store."
    )

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if not (self.start <= self.core_start <= self.core_end <= self.end):
            raise ValueError(
                f"chunk {self.index}: need start <= core_start <= core_end <= end, got "
                f"{self.start}, {self.core_start}, {self.core_end}, {self.end}"
            )
        return self

    @property
    def core_seconds(self) -> float:
        """Seconds of the original this chunk owns (what progress counts)."""
        return self.core_end - self.core_start


class TranscriptionChunkedV1(Event):
    """A long job was split into chunks; its chunk work items are on the broker."""

    TYPE: ClassVar[str] = "transcription.chunked"
    VERSION: ClassVar[int] = 1
    type: Literal["transcription.chunked"] = "transcription.chunked"
    version: Literal[1] = 1

    duration_seconds: NonNegative = Field(description="Duration of the whole audio.")
    model: ModelName
    language: LanguageCode = Field(description="Given, or detected once on the first speech.")
    language_probability: Probability = Field(
        description="1.0 when the language was given rather than detected."
    )
    chunks: list[ChunkSpec] = Field(min_length=1, max_length=MAX_CHUNKS)
    worker: str | None = Field(default=None, max_length=255, description="Who planned it.")
    attempt: int = Field(default=1, ge=1)
    job_fingerprint: JobFingerprint | None = None
    speaker_turns: list[SpeakerTurn] | None = Field(
        default=None,
        max_length=MAX_SPEAKER_TURNS,
        description=(
            "Who spoke when over the whole audio, found once by the planner when the job "
            "asked for diarization (absent otherwise): the indexer labels the assembled "
            "segments and words with them, so a speaker keeps one label across chunks."
        ),
    )

    @model_validator(mode="after")
    def _tiles(self) -> Self:
        indexes = [c.index for c in self.chunks]
        if indexes != list(range(len(self.chunks))):
            raise ValueError("chunk indexes must be 0, 1, 2, ... in order")
        for before, after in zip(self.chunks, self.chunks[1:], strict=False):
            if abs(before.core_end - after.core_start) > 1e-6:
                raise ValueError(
                    f"chunk {after.index}'s core starts at {after.core_start}, "
                    f"not where chunk {before.index}'s ends ({before.core_end})"
                )
        return self


class TranscriptionChunkRequestedV1(Event):
    """A work item: transcribe one chunk of a long job (any worker of `model`)."""

    TYPE: ClassVar[str] = "transcription.chunk.requested"
    VERSION: ClassVar[int] = 1
    type: Literal["transcription.chunk.requested"] = "transcription.chunk.requested"
    version: Literal[1] = 1

    chunk: ChunkSpec
    chunk_count: int = Field(
        ge=1,
        le=MAX_CHUNKS,
        description="Chunks the planner expected when it handed this one out (it hands each "
        "out as soon as it is written, while it still splits): more than `chunk.index`, "
        "exact for the last; the plan (`transcription.chunked.v1`) has the final count.",
    )
    duration_seconds: NonNegative = Field(
        description="Duration of the whole audio as probed before the split (the plan has "
        "the decoded one)."
    )
    model: ModelName
    language: LanguageCode = Field(description="The job's language, decided by the planner.")
    options: TranscriptionOptions = Field(default_factory=TranscriptionOptions)
    job_fingerprint: JobFingerprint | None = None


class TranscriptionChunkTranscribedV1(Event):
    """One chunk's transcript: segments with absolute times, only the words it owns.

    Segment ids are local to the chunk (0, 1, ...); the indexer renumbers them when it
    assembles the job. A redelivered chunk publishes an equal result, upserted by
    (job, chunk_index).
    """

    TYPE: ClassVar[str] = "transcription.chunk.transcribed"
    VERSION: ClassVar[int] = 1
    type: Literal["transcription.chunk.transcribed"] = "transcription.chunk.transcribed"
    version: Literal[1] = 1

    chunk_index: int = Field(ge=0, lt=MAX_CHUNKS)
    chunk_count: int = Field(ge=1, le=MAX_CHUNKS)
    core_start: NonNegative
    core_end: NonNegative
    model: ModelName
    language: LanguageCode
    segments: list[Segment]
    audio_seconds: NonNegative = Field(description="Seconds of audio this worker decoded.")
    processing_seconds: NonNegative = Field(description="Wall time this chunk took.")
    worker: str | None = Field(default=None, max_length=255)
    attempt: int = Field(default=1, ge=1)
    job_fingerprint: JobFingerprint | None = None

    @model_validator(mode="after")
    def _segments_ordered(self) -> Self:
        ids = [s.id for s in self.segments]
        if ids != sorted(set(ids)):
            raise ValueError("segment ids must be unique and ascending")
        if self.chunk_index >= self.chunk_count:
            raise ValueError(f"chunk_index {self.chunk_index} >= chunk_count {self.chunk_count}")
        return self


CHUNK_EVENT_CLASSES: Final[tuple[type[Event], ...]] = (
    TranscriptionChunkedV1,
    TranscriptionChunkRequestedV1,
    TranscriptionChunkTranscribedV1,
)
"""A long job's internal events (plan, work item, result)."""


def assemble_segments(results: Sequence[TranscriptionChunkTranscribedV1]) -> list[Segment]:
    """A long job's segments from its chunks' results: in time order, renumbered from 0.

    Takes one result per chunk (any order); the caller checks that every chunk is in.
    Timestamps are already absolute and each word belongs to one chunk only, so this is
    concatenation and renumbering; a result redelivered with another event id is the same
    chunk and must have been upserted, not appended, before this is called.
    """
    indexes = [r.chunk_index for r in results]
    if len(set(indexes)) != len(indexes):
        raise ValueError(f"chunk results repeat an index: {sorted(indexes)}")
    segments: list[Segment] = []
    for result in sorted(results, key=lambda r: r.chunk_index):
        for segment in result.segments:
            segments.append(segment.model_copy(update={"id": len(segments)}))
    return segments
