"""Splitting long audio into chunks at silences, in one streaming pass (bounded memory).

The planner reads the decoded audio block by block (`audio.StreamedAudio`) and writes each
chunk, normalised (16 kHz mono PCM16 WAV), as it goes. Around each preferred cut it keeps
a window of `search_seconds` in memory and asks Silero VAD (the one faster-whisper ships)
for the speech in that window only, never in the whole file:

- a silence of at least `min_silence_seconds` in the window: the cut is in its middle,
  the chunks meet there with no overlap (the longest silence wins, up to 2 s; among
  those, the one nearest the preferred point);
- no silence (music, overlapping talk): a hard cut at the preferred point, and the two
  chunks overlap by `overlap_seconds`, the core boundary in the middle of the overlap; the
  chunk worker keeps each word from the chunk whose core holds its midpoint.

Preferred cuts divide what is left evenly, so chunks are about equal and none holds more
than `chunk_seconds` of audio. Everything here is a pure function of the decoded samples
and the settings: a redelivered upload is split at the same samples.

Each chunk is handed to `on_cut` as soon as its audio is in the sink (with the number of
chunks expected so far), so its work item can go out while the rest is still being
split; the speech sampled for language detection goes to `on_speech` as soon as there is
enough of it (or none is to be found), before the chunks that follow.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Final, Protocol

import numpy as np
import numpy.typing as npt

from transcriber.audio import SAMPLE_RATE
from transcriber.errors import JobCancelled

Samples = npt.NDArray[np.float32]
Vad = Callable[[Samples], list[tuple[int, int]]]
"""Speech spans of an array, in samples from its start, in order."""

_GOOD_ENOUGH_SILENCE: Final = 2.0
"""A silence this long is as good a cut as a longer one: then the nearest wins."""
_MIN_CHUNK_SECONDS: Final = 1.0


@dataclass(frozen=True, slots=True)
class ChunkPolicy:
    """How long chunks are and how they are cut (from the settings)."""

    chunk_seconds: float = 120.0
    search_seconds: float = 20.0
    overlap_seconds: float = 2.0
    min_silence_seconds: float = 0.3
    block_seconds: float = 30.0
    language_sample_seconds: float = 30.0
    """Speech gathered (from the start) to detect the language once."""
    language_scan_seconds: float = 600.0
    """How far into the audio to look for that speech."""


@dataclass(frozen=True, slots=True)
class Cut:
    """One chunk as written: sample offsets in the original, and where its audio is."""

    index: int
    start: int
    end: int
    core_start: int
    core_end: int
    uri: str
    silence_cut: bool
    """Whether its end was cut at a silence (False: a hard cut, or the end of the audio)."""

    def seconds(self) -> tuple[float, float, float, float]:
        """(start, end, core_start, core_end) in seconds."""
        return (
            self.start / SAMPLE_RATE,
            self.end / SAMPLE_RATE,
            self.core_start / SAMPLE_RATE,
            self.core_end / SAMPLE_RATE,
        )


class ChunkWriter(Protocol):
    """One chunk's normalised audio being written (blocking, on the planner's thread)."""

    def write(self, samples: Samples) -> None:
        """Append samples (float32 in [-1, 1])."""
        ...

    def close(self) -> str:
        """Finish the chunk (atomically in place) and return its URI."""
        ...


class ChunkSink(Protocol):
    """Where one job's chunks go, and which of their work items are known to be out."""

    def open(self, index: int) -> ChunkWriter:
        """A writer for chunk `index`; writing it again replaces it."""
        ...

    def is_published(self, index: int) -> bool:
        """Whether chunk `index`'s work item was confirmed by the broker (a mark says so)."""
        ...

    def mark_published(self, index: int) -> None:
        """Record that chunk `index`'s work item was confirmed by the broker."""
        ...


@dataclass(frozen=True, slots=True)
class Planned:
    """The result of a split: the chunks, the decoded length, speech for language detection."""

    cuts: list[Cut]
    total_samples: int
    speech: Samples | None

    @property
    def duration_seconds(self) -> float:
        """The decoded audio's duration."""
        return self.total_samples / SAMPLE_RATE


def silero_vad(samples: Samples) -> list[tuple[int, int]]:
    """Speech spans by faster-whisper's Silero VAD, tuned to find short pauses."""
    from faster_whisper.vad import VadOptions, get_speech_timestamps

    spans = get_speech_timestamps(
        samples, VadOptions(min_silence_duration_ms=100, speech_pad_ms=100)
    )
    return [(int(s["start"]), int(s["end"])) for s in spans]


def silences(spans: list[tuple[int, int]], length: int, minimum: int) -> list[tuple[int, int]]:
    """The gaps between `spans` (and the window's edges) of at least `minimum` samples."""
    gaps: list[tuple[int, int]] = []
    previous = 0
    for start, end in spans:
        if start - previous >= minimum:
            gaps.append((previous, start))
        previous = max(previous, end)
    if length - previous >= minimum:
        gaps.append((previous, length))
    return gaps


def best_cut(gaps: list[tuple[int, int]], preferred: int) -> int | None:
    """The middle of the best silence: the longest (up to 2 s), then the nearest."""
    if not gaps:
        return None
    good = int(_GOOD_ENOUGH_SILENCE * SAMPLE_RATE)

    def score(gap: tuple[int, int]) -> tuple[int, int]:
        middle = (gap[0] + gap[1]) // 2
        return (-min(gap[1] - gap[0], good), abs(middle - preferred))

    start, end = min(gaps, key=score)
    return (start + end) // 2


class _Buffer:
    """The samples not yet written, from absolute offset `start`."""

    def __init__(self) -> None:
        self.start = 0
        self._parts: list[Samples] = []
        self._length = 0

    @property
    def end(self) -> int:
        return self.start + self._length

    def append(self, block: Samples) -> None:
        self._parts.append(block)
        self._length += block.shape[0]

    def slice(self, start: int, end: int) -> Samples:
        """Samples [start, end) (absolute), which must be held."""
        joined = self._joined()
        return joined[start - self.start : end - self.start]

    def drop_before(self, offset: int) -> None:
        if offset <= self.start:
            return
        joined = self._joined()[offset - self.start :]
        self._parts = [joined] if joined.shape[0] else []
        self._length = int(joined.shape[0])
        self.start = offset

    def _joined(self) -> Samples:
        if len(self._parts) > 1:
            self._parts = [np.concatenate(self._parts)]
        return self._parts[0] if self._parts else np.zeros(0, dtype=np.float32)


class _SpeechSample:
    """The first `seconds` of speech, for language detection (VAD over each block)."""

    def __init__(self, vad: Vad, seconds: float, scan_seconds: float) -> None:
        self._vad = vad
        self._want = int(seconds * SAMPLE_RATE)
        self._scan = int(scan_seconds * SAMPLE_RATE)
        self._seen = 0
        self._parts: list[Samples] = []
        self._have = 0

    @property
    def done(self) -> bool:
        """Enough speech gathered, or scanned as far as it is looked for."""
        return self._have >= self._want or self._seen >= self._scan

    def feed(self, block: Samples) -> None:
        if self.done:
            return
        self._seen += block.shape[0]
        for start, end in self._vad(block):
            piece = block[start:end]
            self._parts.append(piece)
            self._have += piece.shape[0]
            if self._have >= self._want:
                return

    def result(self) -> Samples | None:
        if not self._parts:
            return None
        return np.concatenate(self._parts)[: self._want]


def plan_chunks(
    blocks: Iterable[Samples],
    *,
    estimated_seconds: float,
    policy: ChunkPolicy,
    sink: ChunkSink,
    vad: Vad = silero_vad,
    sample_speech: bool = False,
    cancelled: threading.Event | None = None,
    on_cut: Callable[[Cut, int], None] | None = None,
    on_speech: Callable[[Samples | None], None] | None = None,
) -> Planned:
    """Split the audio `blocks` stream into chunks written to `sink`. Blocking.

    `estimated_seconds` (the probed duration) only places the preferred cuts; the decoded
    samples decide where the audio ends. Raises `JobCancelled` when `cancelled` is set.
    `on_cut(cut, expected)`: called once per chunk, in order, once its audio is written;
    `expected` is the chunk count as estimated then (at least `cut.index + 1`; exact for
    the last chunk). `on_speech(samples)`: called once, when `sample_speech`, with the
    speech sample (None: no speech in the scanned audio), before any later `on_cut`.
    """
    chunk = int(policy.chunk_seconds * SAMPLE_RATE)
    window = int(policy.search_seconds * SAMPLE_RATE)
    half = int(policy.overlap_seconds * SAMPLE_RATE) // 2
    minimum_silence = max(1, int(policy.min_silence_seconds * SAMPLE_RATE))
    estimated = int(estimated_seconds * SAMPLE_RATE)
    usable = max(SAMPLE_RATE, chunk - window // 2 - 2 * half)

    def next_window(chunk_start: int, core_start: int) -> tuple[int, int, int]:
        remaining = estimated - core_start
        count = max(1, math.ceil(remaining / usable))
        latest = chunk_start + chunk - half  # a hard cut's chunk still ends within `chunk`
        preferred = core_start + remaining // count if count > 1 else latest - window // 2
        low = max(core_start + int(_MIN_CHUNK_SECONDS * SAMPLE_RATE), preferred - window // 2)
        high = max(low + 1, min(preferred + window // 2, latest))
        return low, min(max(preferred, low), high), high

    speech = (
        _SpeechSample(vad, policy.language_sample_seconds, policy.language_scan_seconds)
        if sample_speech
        else None
    )
    cuts: list[Cut] = []
    spoken = False

    def speech_heard() -> None:
        nonlocal spoken
        if speech is not None and not spoken:
            spoken = True
            if on_speech is not None:
                on_speech(speech.result())

    def cut_done(cut: Cut, expected: int) -> None:
        cuts.append(cut)
        if on_cut is not None:
            on_cut(cut, max(expected, cut.index + 1))

    buffer = _Buffer()
    chunk_start = core_start = 0
    writer = sink.open(0)
    low, preferred, high = next_window(chunk_start, core_start)
    for block in blocks:
        if cancelled is not None and cancelled.is_set():
            raise JobCancelled("shutdown while splitting")
        if speech is not None:
            speech.feed(block)
            if speech.done:
                speech_heard()
        buffer.append(block)
        while buffer.end >= high:
            region = buffer.slice(low, high)
            found = best_cut(
                silences(vad(region), region.shape[0], minimum_silence), preferred - low
            )
            if found is not None:
                cut = low + found
                end, next_start = cut, cut
            else:
                cut = min(max(preferred, low + half), high - half)
                end, next_start = cut + half, cut - half
            writer.write(buffer.slice(buffer.start, end))
            done = Cut(
                len(cuts), chunk_start, end, core_start, cut, writer.close(), found is not None
            )
            buffer.drop_before(next_start)
            chunk_start, core_start = next_start, cut
            left = max(1, math.ceil((estimated - core_start) / usable))
            cut_done(done, done.index + 1 + left)
            writer = sink.open(len(cuts))
            low, preferred, high = next_window(chunk_start, core_start)
        # Samples before the next window (less the overlap a hard cut would share) belong
        # to this chunk alone: written now, so memory holds one window, not one chunk.
        safe = low - half
        if safe > buffer.start:
            writer.write(buffer.slice(buffer.start, min(safe, buffer.end)))
            buffer.drop_before(min(safe, buffer.end))
    speech_heard()
    total = buffer.end
    writer.write(buffer.slice(buffer.start, total))
    last = Cut(len(cuts), chunk_start, total, core_start, total, writer.close(), False)
    cut_done(last, last.index + 1)
    return Planned(cuts, total, speech.result() if speech is not None else None)
