"""Long audio: when a job is split, and what its chunk events say.

A job whose audio (probed with PyAV, not taken from the event) lasts more than
`chunk_threshold_seconds` is split by the worker that received it (the *planner*,
`chunking.plan_chunks`) into chunks written once, normalised, to the media store; one work
item per chunk (`transcription.chunk.requested.v1`) goes to the pool's chunk queue
(`transcriber.pool.<model>.chunk-requested`) as soon as that chunk is written, while the
split goes on; every worker of the pool consumes that queue with prefetch 1, so idle
workers take one job's chunks in parallel, the first ones before the planner is done. The
plan (`transcription.chunked.v1`) follows once every item is confirmed. Each chunk's result
(`transcription.chunk.transcribed.v1`) carries absolute times and only the words its core
owns (`keep_owned`); the indexer assembles the job when its last chunk is in.

Event ids are derived from the job and the chunk index, so a redelivered upload re-plans
to the same events and a redelivered chunk publishes the same result id: consumers that
deduplicate on `message_id` see each once. A work item confirmed by the broker is marked
in the chunk store, so a redelivered upload (its planner killed mid-split) hands out only
the chunks not yet handed out: no chunk is transcribed twice for the planner's death.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field

from contracts.chunks import ChunkSpec
from contracts.transcription import Segment, Word
from scribe_runtime.settings import DEFAULT_MAX_DURATION_SECONDS
from transcriber.chunk_store import ChunkStore
from transcriber.chunking import ChunkPolicy, Cut


@dataclass(frozen=True, slots=True)
class LongAudio:
    """How a worker treats long audio: the limit, the threshold, the split, the store."""

    store: ChunkStore
    threshold_seconds: float = 180.0
    max_duration_seconds: float = DEFAULT_MAX_DURATION_SECONDS
    policy: ChunkPolicy = field(default_factory=ChunkPolicy)


def chunk_event_id(
    job_id: uuid.UUID, tenant_id: str, kind: str, index: int | None = None
) -> uuid.UUID:
    """A chunk event's id from the job and the chunk: the same on every delivery."""
    suffix = "" if index is None else f":{index}"
    return uuid.uuid5(job_id, f"chunk:{tenant_id}:{kind}{suffix}")


def chunk_specs(cuts: Sequence[Cut]) -> list[ChunkSpec]:
    """The plan's chunks as the contract carries them (seconds)."""
    specs = []
    for cut in cuts:
        start, end, core_start, core_end = cut.seconds()
        specs.append(
            ChunkSpec(
                index=cut.index,
                start=start,
                end=end,
                core_start=core_start,
                core_end=core_end,
                audio_uri=cut.uri,  # type: ignore[arg-type]
            )
        )
    return specs


def has_overlap(chunk: ChunkSpec) -> bool:
    """Whether the chunk's audio reaches past its core (a hard cut on either side)."""
    return chunk.start < chunk.core_start or chunk.end > chunk.core_end


def keep_owned(segments: Sequence[Segment], chunk: ChunkSpec, *, words: bool) -> list[Segment]:
    """The chunk's segments in absolute time, keeping only what its core owns.

    Times from the chunk's engine start at the chunk's `start`; they are shifted and held
    within the chunk. Where the chunk overlaps a neighbour, a word is kept when its
    midpoint lies in the core (a segment losing words is re-spanned and its text rebuilt
    from the words kept); a segment without words is kept by its own midpoint. Where it
    meets a neighbour at a silence, everything in its audio is its own. `words`: whether
    the job asked for words (they may have been computed only to place the cut).
    """
    left = chunk.start < chunk.core_start
    right = chunk.end > chunk.core_end

    def owns(start: float, end: float) -> bool:
        middle = (start + end) / 2
        return (not left or middle >= chunk.core_start) and (not right or middle < chunk.core_end)

    def place(t: float) -> float:
        return min(chunk.end, max(chunk.start, chunk.start + t))

    kept: list[Segment] = []
    for segment in segments:
        start, end = place(segment.start), place(segment.end)
        own_words: list[Word] | None = None
        if segment.words is not None:
            shifted = [
                w.model_copy(update={"start": place(w.start), "end": place(w.end)})
                for w in segment.words
            ]
            own_words = [w for w in shifted if owns(w.start, w.end)]
        update: dict[str, object] = {"id": len(kept), "start": start, "end": max(start, end)}
        if own_words is not None and segment.words:
            if not own_words:
                continue
            if len(own_words) < len(segment.words):
                update["text"] = "".join(w.word for w in own_words).strip()
                update["start"] = own_words[0].start
                update["end"] = max(own_words[0].start, own_words[-1].end)
            update["words"] = own_words if words else None
        elif not owns(start, end):
            continue
        elif not words:
            update["words"] = None
        kept.append(segment.model_copy(update=update))
    return kept
