"""Transcript exports: plain text, TSV, SRT and WebVTT captions readable on screen.

Captions follow common subtitle guidance by default: at most 42 characters a line and two
lines a cue; a caller may ask for other limits (`CueLimits`: line width, lines per cue,
and a longest cue duration). A segment too long for one cue is split at word boundaries;
with word timestamps each cue takes its words' own times, otherwise the segment's time is
shared out by characters.

A diarized transcript names its speakers: WebVTT voice spans (`<v SPEAKER_00>`), and a
`SPEAKER_00: ` prefix on SRT cues and text lines.
"""

from __future__ import annotations

import dataclasses
import html
import textwrap
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final

from ingest.read_models import SegmentOut

MAX_LINE_CHARS: Final = 42
MAX_LINES: Final = 2
_MIN_CUE_SECONDS: Final = 0.001


@dataclass(frozen=True, slots=True)
class TimedWord:
    """A word with its time span."""

    word: str
    start: float
    end: float


@dataclass(frozen=True, slots=True)
class TimedSegment:
    """What the exports need of a segment."""

    start: float
    end: float
    text: str
    words: Sequence[TimedWord] | None = None
    speaker: str | None = None


@dataclass(frozen=True, slots=True)
class CueLimits:
    """How much one caption may hold: line width, lines, and (if set) seconds on screen."""

    width: int = MAX_LINE_CHARS
    lines: int = MAX_LINES
    max_seconds: float | None = None


DEFAULT_LIMITS: Final = CueLimits()


@dataclass(frozen=True, slots=True)
class Cue:
    """One caption: a time span and its (already wrapped) lines."""

    start: float
    end: float
    lines: tuple[str, ...]
    speaker: str | None = None


def timed_segments(segments: Iterable[SegmentOut]) -> list[TimedSegment]:
    """A transcript's segments as the exports take them."""
    return [
        TimedSegment(
            start=s.start,
            end=s.end,
            text=s.text,
            words=[TimedWord(w.word, w.start, w.end) for w in s.words] if s.words else None,
            speaker=s.speaker,
        )
        for s in segments
    ]


def format_timestamp(seconds: float, *, decimal: str) -> str:
    """`HH:MM:SS<decimal>mmm` (`,` for SRT, `.` for WebVTT); hours are not capped at 99."""
    total_ms = max(round(seconds * 1000), 0)
    hours, rest = divmod(total_ms, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    secs, ms = divmod(rest, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{decimal}{ms:03d}"


def _wrap(text: str, width: int) -> list[str]:
    return textwrap.wrap(" ".join(text.split()), width=width, break_on_hyphens=False)


def _fits(text: str, width: int, lines: int) -> bool:
    return len(_wrap(text, width)) <= lines


def _chunks(
    words: Sequence[str],
    limits: CueLimits,
    spans: Sequence[tuple[float, float]] | None = None,
) -> list[list[int]]:
    """Greedy grouping of word indexes into runs that fit a cue.

    A run wraps to at most `limits.lines` lines and, with `spans` and a duration limit,
    lasts from its first word's start to its last word's end at most `limits.max_seconds`.
    """
    groups: list[list[int]] = []
    current: list[int] = []
    for i in range(len(words)):
        candidate = [*current, i]
        too_long = (
            spans is not None
            and limits.max_seconds is not None
            and spans[i][1] - spans[current[0] if current else i][0] > limits.max_seconds
        )
        if current and (
            too_long or not _fits(" ".join(words[j] for j in candidate), limits.width, limits.lines)
        ):
            groups.append(current)
            current = [i]
        else:
            current = candidate
    if current:
        groups.append(current)
    return groups


def _cue(start: float, end: float, text: str, limits: CueLimits) -> Cue:
    end = max(end, start + _MIN_CUE_SECONDS)
    if limits.max_seconds is not None:
        # A single word said for longer than the limit: its cue ends at the limit.
        end = min(end, start + limits.max_seconds)
    return Cue(start=start, end=end, lines=tuple(_wrap(text, limits.width)))


def _estimated_words(tokens: Sequence[str], start: float, end: float) -> list[TimedWord]:
    """Words without timestamps, the segment's time shared out by characters."""
    total = sum(len(t) for t in tokens)
    words, cursor, done = [], start, 0
    for token in tokens:
        done += len(token)
        word_end = start + (end - start) * done / total
        words.append(TimedWord(token, cursor, word_end))
        cursor = word_end
    return words


def segment_cues(segment: TimedSegment, limits: CueLimits = DEFAULT_LIMITS) -> list[Cue]:
    """The cues showing one segment."""
    text = " ".join(segment.text.split())
    if not text:
        return []
    span = segment.end - segment.start
    short_enough = limits.max_seconds is None or span <= limits.max_seconds
    if short_enough and _fits(text, limits.width, limits.lines):
        return [_cue(segment.start, segment.end, text, limits)]
    timed = [w for w in segment.words or () if w.word.strip()]
    if not timed and limits.max_seconds is not None:
        timed = _estimated_words(text.split(), segment.start, segment.end)
    if timed:
        tokens = [w.word.strip() for w in timed]
        cues = []
        spans = [(w.start, w.end) for w in timed]
        for group in _chunks(tokens, limits, spans):
            first, last = timed[group[0]], timed[group[-1]]
            start = min(max(first.start, segment.start), segment.end)
            end = min(max(last.end, start), segment.end)
            cues.append(_cue(start, end, " ".join(tokens[i] for i in group), limits))
        return cues
    tokens = text.split()
    groups = _chunks(tokens, limits)
    texts = [" ".join(tokens[i] for i in group) for group in groups]
    total = sum(len(t) for t in texts)
    cues, cursor = [], segment.start
    for i, chunk in enumerate(texts):
        end = segment.end if i == len(texts) - 1 else cursor + span * len(chunk) / total
        cues.append(_cue(cursor, end, chunk, limits))
        cursor = end
    return cues


def build_cues(segments: Iterable[TimedSegment], limits: CueLimits = DEFAULT_LIMITS) -> list[Cue]:
    """Every cue of a transcript, in time order, each with its segment's speaker."""
    return [
        dataclasses.replace(cue, speaker=segment.speaker) if segment.speaker else cue
        for segment in segments
        for cue in segment_cues(segment, limits)
    ]


def _prefixed(speaker: str | None, text: str) -> str:
    return f"{speaker}: {text}" if speaker else text


def to_srt(segments: Iterable[TimedSegment], limits: CueLimits = DEFAULT_LIMITS) -> str:
    """SubRip: numbered cues from 1, `HH:MM:SS,mmm --> HH:MM:SS,mmm`, a blank line between."""
    blocks = [
        f"{n}\n{format_timestamp(c.start, decimal=',')} --> "
        f"{format_timestamp(c.end, decimal=',')}\n"
        + "\n".join((_prefixed(c.speaker, c.lines[0]), *c.lines[1:]))
        for n, c in enumerate(build_cues(segments, limits), start=1)
    ]
    return "\n\n".join(blocks) + "\n" if blocks else ""


def to_vtt(segments: Iterable[TimedSegment], limits: CueLimits = DEFAULT_LIMITS) -> str:
    """WebVTT: the `WEBVTT` header, then cues with `HH:MM:SS.mmm` times and escaped text."""
    blocks = ["WEBVTT"]
    for n, c in enumerate(build_cues(segments, limits), start=1):
        # Cue text is HTML-like in WebVTT: `<`, `&` (and `-->`) must not appear raw.
        body = "\n".join(html.escape(line, quote=False) for line in c.lines)
        if c.speaker:
            # A voice span: players show or style the speaker; the label is [A-Za-z0-9_-].
            body = f"<v {c.speaker}>{body}"
        blocks.append(
            f"{n}\n{format_timestamp(c.start, decimal='.')} --> "
            f"{format_timestamp(c.end, decimal='.')}\n{body}"
        )
    return "\n\n".join(blocks) + "\n"


def to_text(segments: Iterable[TimedSegment]) -> str:
    """The transcript as plain text, one segment a line."""
    lines = [(s.speaker, " ".join(s.text.split())) for s in segments]
    return "\n".join(_prefixed(speaker, line) for speaker, line in lines if line) + "\n"


def to_tsv(segments: Iterable[TimedSegment]) -> str:
    """Whisper's TSV: a `start`, `end`, `text` header, then a segment a row, times in ms."""
    rows = ["start\tend\ttext"]
    for s in segments:
        text = " ".join(s.text.split())  # tabs and newlines would break the row
        if text:
            rows.append(f"{round(s.start * 1000)}\t{round(s.end * 1000)}\t{text}")
    return "\n".join(rows) + "\n"
