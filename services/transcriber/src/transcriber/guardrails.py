"""Guards against Whisper's hallucinations, as pure functions over text and segment figures.

Whisper, asked to transcribe silence or noise, writes something anyway ("You", "Thank you
for watching") and, once it has repeated itself, tends to loop ("You You You ..."). Three
guards, each measurable on its own (`bench/models.py`):

- non-speech: audio in which voice activity detection finds (almost) no speech gets no
  text at all; per segment, Whisper's own no-speech probability with a low log
  probability marks a segment that is not speech;
- repetition: a phrase repeated back to back more than `max_repeats` times, within a
  segment or across consecutive segments, is cut to one occurrence and flagged;
- quality flags: compression ratio (gzip, as Whisper computes it: a looping text compresses
  well), low confidence, probable non-speech, carried per segment in the contract.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

REPETITION: Final = "repetition"
LOW_CONFIDENCE: Final = "low_confidence"
NO_SPEECH: Final = "no_speech"
HIGH_COMPRESSION: Final = "high_compression"
FLAGS: Final = (REPETITION, LOW_CONFIDENCE, NO_SPEECH, HIGH_COMPRESSION)
"""Every flag a segment may carry."""

_WORD: Final = re.compile(r"\S+")
_NORMALISE: Final = re.compile(r"[^\w']+")


def compression_ratio(text: str) -> float:
    """Bytes over zlib-compressed bytes, as Whisper computes it (loops score above 2.4)."""
    raw = text.encode("utf-8")
    if not raw:
        return 0.0
    return len(raw) / len(zlib.compress(raw))


def _key(word: str) -> str:
    return _NORMALISE.sub("", word.lower())


@dataclass(frozen=True, slots=True)
class Cut:
    """The outcome of cutting repetition loops from one text."""

    text: str
    removed_words: int
    kept: tuple[int, ...] = ()
    """Positions (in the whitespace-split input) of the words kept."""
    total_words: int = 0

    @property
    def cut(self) -> bool:
        """Whether a loop was found (and cut)."""
        return self.removed_words > 0


def cut_repetitions(text: str, *, max_repeats: int = 3, max_ngram: int = 12) -> Cut:
    """Collapse any word n-gram repeated back to back more than `max_repeats` times to one.

    Words are compared case- and punctuation-insensitively ("You, you. YOU" repeat), the
    kept occurrence is the first as written. Legitimate repetition ("no, no, no") stays:
    only runs longer than `max_repeats` are cut. Shorter n-grams are tried first, so
    "you you you you" collapses to "you", not to "you you".
    """
    words = _WORD.findall(text)
    if len(words) <= max_repeats:
        return Cut(text, 0, tuple(range(len(words))), len(words))
    keys = [_key(w) for w in words]
    kept: list[int] = []
    removed = 0
    i = 0
    while i < len(words):
        run_n, run_count = 0, 1
        for n in range(1, max_ngram + 1):
            if i + n * (max_repeats + 1) > len(words):
                break
            gram = keys[i : i + n]
            if not any(gram):
                continue
            count = 1
            while keys[i + count * n : i + (count + 1) * n] == gram:
                count += 1
            if count > max_repeats:
                run_n, run_count = n, count
                break
        if run_n:
            kept += range(i, i + run_n)
            removed += run_n * (run_count - 1)
            i += run_n * run_count
        else:
            kept.append(i)
            i += 1
    if not removed:
        return Cut(text, 0, tuple(kept), len(words))
    return Cut(" ".join(words[k] for k in kept), removed, tuple(kept), len(words))


def repetition_key(text: str) -> str:
    """A text as repetition detection compares it: lower case, no punctuation."""
    return " ".join(k for k in (_key(w) for w in _WORD.findall(text)) if k)


def segment_flags(
    text: str,
    *,
    avg_logprob: float,
    no_speech_prob: float,
    compression: float,
    low_confidence_logprob: float = -1.0,
    no_speech_threshold: float = 0.6,
    compression_threshold: float = 2.4,
) -> list[str]:
    """The quality flags one segment earns (Whisper's own thresholds by default)."""
    flags = []
    if avg_logprob < low_confidence_logprob:
        flags.append(LOW_CONFIDENCE)
    if no_speech_prob > no_speech_threshold:
        flags.append(NO_SPEECH)
    if compression > compression_threshold:
        flags.append(HIGH_COMPRESSION)
    return flags


def is_non_speech(
    *,
    avg_logprob: float,
    no_speech_prob: float,
    no_speech_threshold: float = 0.6,
    low_confidence_logprob: float = -1.0,
) -> bool:
    """Whisper's own rule for a window that holds no speech: likely silent and unsure text."""
    return no_speech_prob > no_speech_threshold and avg_logprob < low_confidence_logprob


def repeated_segments(texts: Sequence[str], *, max_repeats: int = 3) -> set[int]:
    """Indexes of segments that repeat the one before them in a run of over `max_repeats`.

    "You" twenty segments in a row keeps the first and marks the other nineteen: a run this
    long is a loop, not speech. A run of `max_repeats` or fewer is left alone.
    """
    drop: set[int] = set()
    i = 0
    keys = [repetition_key(t) for t in texts]
    while i < len(keys):
        j = i + 1
        while j < len(keys) and keys[j] == keys[i] and keys[i]:
            j += 1
        if j - i > max_repeats:
            drop.update(range(i + 1, j))
        i = j
    return drop


def speech_seconds(spans: Sequence[tuple[float, float]]) -> float:
    """Total length of (start, end) spans in seconds."""
    return sum(max(0.0, end - start) for start, end in spans)
