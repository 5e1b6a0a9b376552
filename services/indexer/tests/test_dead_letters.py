"""The dead-letter watcher on plain deliveries: each dead upload becomes one failure."""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import uuid4

from contracts import (
    AudioUploadedV1,
    ErrorCode,
    TranscriptionChunkRequestedV1,
    TranscriptionFailedV1,
)
from contracts.envelope import Event
from contracts.examples import EXAMPLES
from indexer.dead_letters import DeadLetterWatcher
from scribe_runtime import amqp
from scribe_runtime.amqp import Delivery

UPLOAD = EXAMPLES[AudioUploadedV1]


class Published:
    def __init__(self) -> None:
        self.events: list[Event] = []

    async def __call__(self, event: Event) -> None:
        self.events.append(event)


def _dead(headers: dict[str, object], body: bytes | None = None) -> Delivery:
    return Delivery(
        body=UPLOAD.model_dump_json().encode() if body is None else body,
        message_id=str(UPLOAD.event_id),
        type=UPLOAD.message_type,
        headers=headers,
    )


async def test_a_crash_looped_upload_fails_once_per_death_with_its_reason() -> None:
    death = {
        "x-death": [
            {"reason": b"delivery_limit", "queue": "transcriber.audio-uploaded", "count": 1,
             "time": datetime(2026, 1, 1, tzinfo=UTC)}
        ],
        "x-delivery-count": 5,
    }  # fmt: skip
    published = Published()
    watcher = DeadLetterWatcher(published, "scribe-indexer/test")
    await watcher.on_dead_letter(_dead(death))
    await watcher.on_dead_letter(_dead(death))  # the same dead letter, redelivered
    first, again = published.events
    assert isinstance(first, TranscriptionFailedV1)
    assert (first.job_id, first.code, first.attempts) == (
        UPLOAD.job_id,
        ErrorCode.DEAD_LETTERED,
        6,
    )
    assert "delivery_limit" in first.message
    assert first.event_id == again.event_id  # deduplicated downstream


async def test_a_consumers_own_dead_letter_reason_is_kept() -> None:
    published = Published()
    await DeadLetterWatcher(published, "scribe-indexer/test").on_dead_letter(
        _dead(
            {
                amqp.HEADER_DEAD_LETTER_CODE: "retries_exhausted",
                amqp.HEADER_DEAD_LETTER_REASON: b"media store gone",
                amqp.HEADER_DEAD_LETTERED_AT: "2026-01-01T00:00:00+00:00",
            }
        )
    )
    (failed,) = published.events
    assert isinstance(failed, TranscriptionFailedV1)
    assert "retries_exhausted: media store gone" in failed.message


async def test_a_dead_letter_that_is_no_upload_publishes_nothing() -> None:
    published = Published()
    await DeadLetterWatcher(published, "scribe-indexer/test").on_dead_letter(
        _dead({}, body=b"\xff not an event")
    )
    assert published.events == []


async def test_dead_chunks_of_a_long_job_fail_it_once_whichever_chunks_died() -> None:
    item = EXAMPLES[TranscriptionChunkRequestedV1]
    assert isinstance(item, TranscriptionChunkRequestedV1)
    other = item.model_copy(
        update={
            "event_id": uuid4(),
            "chunk": item.chunk.model_copy(
                update={"index": (item.chunk.index + 1) % item.chunk_count}
            ),
        }
    )
    death = {
        "x-death": [
            {"reason": b"delivery_limit", "queue": "transcriber.pool.tiny.en.chunk-requested",
             "count": 1, "time": datetime(2026, 1, 1, tzinfo=UTC)}
        ],
        "x-delivery-count": 5,
    }  # fmt: skip
    published = Published()
    watcher = DeadLetterWatcher(published, "scribe-indexer/test")
    for dead in (item, item, other):
        await watcher.on_dead_letter(
            Delivery(
                body=dead.model_dump_json().encode(),
                message_id=str(dead.event_id),
                type=dead.message_type,
                headers=death,
                routing_key="transcriber.pool.tiny.en.chunk-requested",
            )
        )
    failures = [e for e in published.events if isinstance(e, TranscriptionFailedV1)]
    assert len(failures) == 3
    assert {f.event_id for f in failures} == {failures[0].event_id}, "one failure of the job"
    first = failures[0]
    assert (first.job_id, first.tenant_id, first.code) == (
        item.job_id,
        item.tenant_id,
        ErrorCode.DEAD_LETTERED,
    )
    assert f"chunk {item.chunk.index} of {item.chunk_count}" in first.message
    assert "transcriber.pool.tiny.en.chunk-requested.dlq" in first.message
