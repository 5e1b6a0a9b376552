"""Who spoke when: speaker turns, and the labelling of a transcript's segments by them.

One function labels every transcript, short or long: the transcriber labels a short job's
segments with the turns it found, the indexer labels a long job's assembled segments with
the turns its planner found over the whole file (carried on `transcription.chunked.v1`),
so a speaker keeps one label across chunk boundaries.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from typing import Final, Protocol, Self

from pydantic import BaseModel, ConfigDict, model_validator

from contracts.transcription import NonNegative, Segment, SpeakerLabel, Word

MAX_SPEAKER_TURNS: Final = 400_000
"""Bounds a plan's turns: one every 0.1 s of a 10-hour file (real ones hold a few 10 000)."""


class TurnLike(Protocol):
    """Anything with a time span and a speaker (`SpeakerTurn`, the engines' own turns)."""

    @property
    def start(self) -> float: ...
    @property
    def end(self) -> float: ...
    @property
    def speaker(self) -> str: ...


class SpeakerTurn(BaseModel):
    """A stretch of time in which one speaker talks, in seconds from the start of the audio."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    start: NonNegative
    end: NonNegative
    speaker: SpeakerLabel

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.start > self.end:
            raise ValueError(f"turn start ({self.start}) is after its end ({self.end})")
        return self


class _Index:
    """Turns sorted by start, with the running latest end, for overlap queries."""

    def __init__(self, turns: Sequence[TurnLike]) -> None:
        ordered = sorted(turns, key=lambda t: (t.start, t.end))
        self.starts = [t.start for t in ordered]
        self.ends = [t.end for t in ordered]
        self.speakers = [t.speaker for t in ordered]
        # reach[i]: the latest end among turns 0..i, and which turn has it.
        self.reach: list[float] = []
        self.reached_by: list[int] = []
        for i, end in enumerate(self.ends):
            if not self.reach or end > self.reach[-1]:
                self.reach.append(end)
                self.reached_by.append(i)
            else:
                self.reach.append(self.reach[-1])
                self.reached_by.append(self.reached_by[-1])

    def who(self, start: float, end: float) -> str:
        """The speaker overlapping [start, end] most; else the nearest turn's."""
        upto = bisect.bisect_left(self.starts, end)  # turns starting before `end`
        best, best_overlap = -1, 0.0
        i = upto - 1
        while i >= 0 and self.reach[i] > start:
            overlap = min(self.ends[i], end) - max(self.starts[i], start)
            if overlap > best_overlap:
                best, best_overlap = i, overlap
            i -= 1
        if best >= 0:
            return self.speakers[best]
        middle = (start + end) / 2
        after = bisect.bisect_left(self.starts, middle)
        candidates = []
        if after < len(self.starts):
            candidates.append((self.starts[after] - middle, after))
        if after > 0:  # of the turns starting before `middle`, the one ending latest
            candidates.append((middle - self.reach[after - 1], self.reached_by[after - 1]))
        return self.speakers[min(candidates)[1]]


def label_segments(segments: Sequence[Segment], turns: Sequence[TurnLike]) -> list[Segment]:
    """`segments` with each segment and word given the speaker it overlaps most.

    A segment or word that overlaps no turn takes the nearest one; with no turns at all
    nothing is labelled. Works on any list of segments in seconds from the start of the
    audio, so a long job's assembled chunks are labelled from one pass over its file.
    """
    if not turns:
        return list(segments)
    index = _Index(turns)
    labelled = []
    for segment in segments:
        words: list[Word] | None = None
        if segment.words is not None:
            words = [
                w.model_copy(update={"speaker": index.who(w.start, w.end)}) for w in segment.words
            ]
        speaker = index.who(segment.start, segment.end)
        labelled.append(segment.model_copy(update={"speaker": speaker, "words": words}))
    return labelled
