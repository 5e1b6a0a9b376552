"""What `transcript.completed.v1` weighs for a 10-hour transcript, against RabbitMQ's limit.

The completion carries the whole transcript inline (DESIGN.md: what a consumer needs,
without calling back). RabbitMQ refuses a message over `max_message_size`: 128 MiB by
default on 3.10-3.13, 16 MiB from 4.0. The README's event section documents the figures
below; this test fails if a 10-hour transcript, words included, no longer fits in the
smaller limit with room to spare.

`python -m tests.unit.test_payload_size` prints the figures.
"""

from __future__ import annotations

import random
from typing import Final
from uuid import UUID

from contracts.transcription import Segment, TranscriptCompletedV1, Word

RABBITMQ_4_MAX_MESSAGE_BYTES: Final = 16 * 2**20
"""RabbitMQ 4.x's default `max_message_size` (3.10-3.13: 128 MiB)."""
HOURS: Final = 10.0

_VOCABULARY: Final = [
    "the",
    "of",
    "and",
    "to",
    "a",
    "in",
    "that",
    "is",
    "was",
    "he",
    "for",
    "it",
    "with",
    "as",
    "his",
    "on",
    "be",
    "at",
    "by",
    "this",
    "had",
    "not",
    "are",
    "but",
    "from",
    "or",
    "have",
    "an",
    "they",
    "which",
    "one",
    "you",
    "were",
    "her",
    "all",
    "she",
    "there",
    "would",
    "their",
    "we",
    "him",
    "been",
    "has",
    "when",
    "who",
    "will",
    "more",
    "no",
    "if",
    "out",
    "so",
    "said",
    "what",
    "up",
    "its",
    "about",
    "into",
    "than",
    "them",
    "can",
    "only",
    "other",
    "new",
    "some",
    "could",
    "time",
    "these",
    "two",
    "may",
    "then",
    "do",
    "first",
    "any",
    "my",
    "now",
    "such",
    "like",
    "our",
    "over",
    "even",
    "most",
    "made",
    "after",
    "also",
    "did",
    "many",
    "before",
    "must",
    "through",
    "back",
    "years",
    "where",
    "much",
    "your",
    "way",
    "well",
    "down",
    "should",
    "because",
    "each",
    "just",
    "those",
    "people",
    "meeting",
    "quarterly",
    "revenue",
    "customers",
    "engineering",
    "discussion",
    "decision",
    "question",
    "department",
    "schedule",
    "budget",
]


def ten_hour_transcript(
    *, words_per_minute: int = 150, with_words: bool = True, hours: float = HOURS
) -> TranscriptCompletedV1:
    """A realistic long transcript: segments of 8-22 words, times to 0.01 s, float32-like
    probabilities, quality fields filled, as faster-whisper's segments carry them."""
    rng = random.Random(10)
    total = hours * 3600
    count = int(hours * 60 * words_per_minute)
    step = total / count
    segments: list[Segment] = []
    now, said = 0.0, 0
    while said < count:
        size = min(rng.randint(8, 22), count - said)
        start = round(now, 2)
        words = []
        for _ in range(size):
            begin = round(now, 2)
            now += step
            words.append(
                Word(
                    word=" " + rng.choice(_VOCABULARY),
                    start=begin,
                    end=round(now - 0.05, 2),
                    probability=rng.uniform(0.3, 1.0),
                )
            )
        said += size
        segments.append(
            Segment(
                id=len(segments),
                start=start,
                end=round(now, 2),
                text="".join(w.word for w in words).strip(),
                avg_logprob=rng.uniform(-1.0, 0.0),
                no_speech_prob=rng.uniform(0.0, 0.1),
                words=words if with_words else None,
                compression_ratio=round(rng.uniform(1.2, 2.2), 3),
                flags=[],
            )
        )
    return TranscriptCompletedV1(
        job_id=UUID(int=15),
        tenant_id="default",
        producer="scribe-indexer/0.1.0",
        language="en",
        language_probability=1.0,
        duration_seconds=total,
        model="tiny.en",
        text=" ".join(s.text for s in segments),
        segments=segments,
        processing_seconds=2880.0,
    )


def size_of(event: TranscriptCompletedV1) -> int:
    """Bytes on the wire: the JSON body `EventPublisher` publishes."""
    return len(event.model_dump_json().encode())


def test_a_ten_hour_transcript_with_words_fits_rabbitmq_4s_limit_with_room() -> None:
    size = size_of(ten_hour_transcript())
    # Room for faster speech than 150 words a minute (200 is ~11.7 MiB): at most 60 %.
    assert size <= RABBITMQ_4_MAX_MESSAGE_BYTES * 0.6, f"{size / 2**20:.1f} MiB"


if __name__ == "__main__":
    for rate in (150, 200):
        for words in (False, True):
            event = ten_hour_transcript(words_per_minute=rate, with_words=words)
            print(
                f"{HOURS:g} h at {rate} words/min, word timestamps {'on ' if words else 'off'}: "
                f"{len(event.segments)} segments, {size_of(event) / 2**20:.2f} MiB"
            )
