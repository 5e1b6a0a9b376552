"""Round trips, validation rules and typed errors of the event contracts."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid4

import pytest
from pydantic import ValidationError

from contracts import (
    EVENT_CLASSES,
    AudioUploadedV1,
    Event,
    InvalidEventFieldError,
    MalformedEventError,
    Segment,
    TranscriptCompletedV1,
    TranscriptionFailedV1,
    UnknownEventTypeError,
    UnsupportedEventVersionError,
    decode_event,
)
from contracts.chunks import (
    CHUNK_EVENT_CLASSES,
    ChunkSpec,
    TranscriptionChunkedV1,
    TranscriptionChunkTranscribedV1,
    assemble_segments,
)
from contracts.envelope import MAX_CLOCK_SKEW
from contracts.examples import EXAMPLES
from contracts.export import SCHEMA_DIR, render_schemas


@pytest.mark.parametrize("cls", EVENT_CLASSES + CHUNK_EVENT_CLASSES, ids=lambda c: c.routing_key())
def test_every_event_round_trips_through_json(cls: type[Event]) -> None:
    event = EXAMPLES[cls]
    wire = event.model_dump_json().encode()
    assert cls.model_validate_json(wire) == event
    assert decode_event(wire, cls.routing_key()) == event
    assert type(decode_event(wire)) is cls


@pytest.mark.parametrize("cls", EVENT_CLASSES + CHUNK_EVENT_CLASSES, ids=lambda c: c.routing_key())
def test_exported_schema_is_current(cls: type[Event]) -> None:
    name = f"{cls.routing_key()}.json"
    exported = SCHEMA_DIR / name
    assert exported.exists(), f"{name} missing: run `uv run scribe-export-schemas`"
    assert exported.read_text() == render_schemas()[name], (
        f"{name} is stale: run `uv run scribe-export-schemas` and commit the result"
    )


def test_no_exported_schema_without_a_model() -> None:
    assert sorted(p.name for p in SCHEMA_DIR.glob("*.json")) == sorted(render_schemas())


def test_unknown_fields_are_ignored() -> None:
    raw = EXAMPLES[AudioUploadedV1].model_dump(mode="json") | {"added_in_v1_5": "x"}
    assert decode_event(json.dumps(raw).encode()) == EXAMPLES[AudioUploadedV1]


def test_unknown_type_and_version_are_typed_errors() -> None:
    raw = EXAMPLES[AudioUploadedV1].model_dump(mode="json")
    with pytest.raises(UnsupportedEventVersionError, match="no version 2"):
        decode_event(json.dumps(raw | {"version": 2}).encode())
    with pytest.raises(UnknownEventTypeError, match=r"audio\.exploded"):
        decode_event(json.dumps(raw | {"type": "audio.exploded"}).encode())
    assert UnsupportedEventVersionError.code == "unsupported_event_version"


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"\xff\xfe", "not UTF-8"),
        (b"{", "not JSON"),
        (b"[]", "not an object"),
        (b'{"version": 1}', "no string 'type'"),
        (b'{"type": "audio.uploaded", "version": "1"}', "no integer 'version'"),
        (b'{"type": "audio.uploaded", "version": 1}', "job_id"),
    ],
)
@pytest.mark.parametrize("amqp_type", [None, "audio.uploaded.v1"], ids=["untyped", "typed"])
def test_malformed_bodies_say_why(body: bytes, reason: str, amqp_type: str | None) -> None:
    # A typed message is parsed straight into its model first: its failure says the same.
    with pytest.raises(MalformedEventError, match=reason):
        decode_event(body, amqp_type)


@pytest.mark.parametrize(
    ("drop", "changes", "reason"),
    [
        ("version", {}, "no integer 'version'"),
        ("type", {}, "no string 'type'"),
        (None, {"version": True}, "no integer 'version'"),
    ],
    ids=["missing version", "missing type", "version a bool"],
)
@pytest.mark.parametrize("amqp_type", [None, "audio.uploaded.v1"], ids=["untyped", "typed"])
def test_an_event_must_say_its_own_type_and_version(
    drop: str | None, changes: dict[str, object], reason: str, amqp_type: str | None
) -> None:
    # Every other field valid: the model's defaults must not stand in for what the body
    # must say itself, however the message is typed.
    raw = EXAMPLES[AudioUploadedV1].model_dump(mode="json") | changes
    raw.pop(drop or "", None)
    with pytest.raises(MalformedEventError, match=reason):
        decode_event(json.dumps(raw).encode(), amqp_type)


def test_amqp_type_must_agree_with_body() -> None:
    wire = EXAMPLES[AudioUploadedV1].model_dump_json().encode()
    with pytest.raises(MalformedEventError, match="disagrees"):
        decode_event(wire, "transcript.completed.v1")


def _uploaded(**changes: object) -> dict[str, object]:
    return EXAMPLES[AudioUploadedV1].model_dump(mode="json") | changes


@pytest.mark.parametrize(
    "changes",
    [
        {"occurred_at": "2026-11-28T12:00:00"},  # naive timestamp
        {"sha256": "ABC"},
        {"size_bytes": -1},
        {"duration_seconds": -0.5},
        {"tenant_id": ""},
        {"tenant_id": "../etc"},
        {"audio_uri": "ftp://example.com/a.wav"},
        {"options": {"language": "English"}},
        {"job_id": "not-a-uuid"},
    ],
)
def test_producer_mistakes_are_rejected(changes: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        AudioUploadedV1.model_validate(_uploaded(**changes))


def test_segments_need_start_before_end() -> None:
    with pytest.raises(ValidationError, match="after end"):
        Segment(id=0, start=2.0, end=1.0, text="x")


def test_failed_needs_a_known_code() -> None:
    raw = EXAMPLES[TranscriptionFailedV1].model_dump(mode="json") | {"code": "oops"}
    with pytest.raises(ValidationError):
        TranscriptionFailedV1.model_validate(raw)


def test_defaults_make_a_valid_envelope() -> None:
    event = AudioUploadedV1(
        job_id=uuid4(),
        tenant_id="t1",
        producer="test",
        audio_uri="file:///media/x.wav",  # type: ignore[arg-type]
    )
    assert event.occurred_at.tzinfo is not None
    assert isinstance(event.occurred_at, datetime)
    assert event.routing_key() == "audio.uploaded.v1" == event.message_type


def _completed(**changes: object) -> dict[str, Any]:
    body: dict[str, Any] = EXAMPLES[TranscriptCompletedV1].model_dump(mode="json")
    return body | changes


def _with_segment_text(text: str) -> dict[str, Any]:
    body = _completed()
    body["segments"][0]["text"] = text
    return body


def _with_word(word: str) -> dict[str, Any]:
    body = _completed()
    body["segments"][0]["words"] = [{"word": word, "start": 0.0, "end": 0.1, "probability": 1}]
    return body


def _in(delta: timedelta) -> str:
    return (datetime.now(UTC) + delta).isoformat()


# Contract-valid before, each crash-looped the indexer (PostgreSQL or datetime arithmetic
# refused it) or pinned the job at the top of every list.
POISONS: list[tuple[str, dict[str, Any], str]] = [
    ("nul-in-text", _completed(text="hello\x00world"), "text"),
    ("nul-in-segment-text", _with_segment_text("\x00"), "segments.0.text"),
    ("nul-in-word", _with_word("a\x00"), "segments.0.words.0.word"),
    ("nul-in-producer", _completed(producer="evil\x00"), "producer"),
    ("first-day-of-the-calendar", _completed(occurred_at="0001-01-01T00:00:00+00:00"), "before"),
    ("first-day-east-of-utc", _completed(occurred_at="0001-01-01T00:00:00+14:00"), "before"),
    ("before-2000", _completed(occurred_at="1999-12-31T23:59:59+00:00"), "before"),
    ("last-second-of-the-calendar", _completed(occurred_at="9999-12-31T23:59:59+00:00"), "future"),
    ("last-second-west-of-utc", _completed(occurred_at="9999-12-31T23:59:59-14:00"), "future"),
    ("next-year", _completed(occurred_at=_in(timedelta(days=365))), "future"),
    ("an-hour-ahead", _completed(occurred_at=_in(timedelta(hours=1))), "future"),
]


@pytest.mark.parametrize(("body", "where"), [p[1:] for p in POISONS], ids=[p[0] for p in POISONS])
def test_poison_fields_are_invalid_event_field_errors(body: dict[str, Any], where: str) -> None:
    with pytest.raises(InvalidEventFieldError, match=where) as caught:
        decode_event(json.dumps(body).encode(), TranscriptCompletedV1.routing_key())
    assert caught.value.code == "invalid_event_field"


def test_producers_cannot_build_a_poison_event() -> None:
    with pytest.raises(ValidationError, match="NUL"):
        TranscriptCompletedV1.model_validate(_completed(text="a\x00"))
    with pytest.raises(ValidationError, match="NUL"):
        TranscriptionFailedV1.model_validate(
            EXAMPLES[TranscriptionFailedV1].model_dump() | {"message": "\x00"}
        )
    with pytest.raises(ValidationError, match="future"):
        AudioUploadedV1.model_validate(_uploaded(occurred_at=_in(timedelta(days=1))))


@pytest.mark.parametrize(
    "body",
    [
        _completed(occurred_at="2000-01-01T00:00:00+00:00"),  # the window's first instant
        _completed(occurred_at=_in(MAX_CLOCK_SKEW - timedelta(seconds=30))),  # a fast clock
        _completed(occurred_at=_in(timedelta(days=-3650))),  # a replay of an old event
        _completed(occurred_at="2026-11-28T13:00:00+01:00"),  # not UTC, still aware
        _with_segment_text("tab\tnewline\n\u2028 and emoji \U0001f600, not NUL"),
        _completed(unknown_field="ignored even with \x00"),  # consumers stay tolerant
        _completed(text="a backslash, then u0000: \\u0000"),  # the escape's text, no NUL
    ],
    ids=[
        "earliest",
        "skewed-clock",
        "old-replay",
        "offset",
        "odd-text",
        "unknown-field-nul",
        "escaped-escape",
    ],
)
def test_valid_events_near_the_limits_are_accepted(body: dict[str, Any]) -> None:
    event = decode_event(json.dumps(body).encode(), TranscriptCompletedV1.routing_key())
    assert isinstance(event, TranscriptCompletedV1)


def test_a_chunk_plan_must_tile_the_audio() -> None:
    plan = EXAMPLES[TranscriptionChunkedV1]
    assert isinstance(plan, TranscriptionChunkedV1)
    first, second = plan.chunks
    gap = second.model_copy(update={"core_start": first.core_end + 1.0})
    with pytest.raises(ValidationError, match="core starts at"):
        TranscriptionChunkedV1.model_validate(
            plan.model_dump() | {"chunks": [first.model_dump(), gap.model_dump()]}
        )
    with pytest.raises(ValidationError, match="core_start <= core_end"):
        ChunkSpec.model_validate(first.model_dump() | {"core_end": first.end + 1.0})


def test_chunk_results_assemble_in_time_order_renumbered() -> None:
    example = EXAMPLES[TranscriptionChunkTranscribedV1]
    assert isinstance(example, TranscriptionChunkTranscribedV1)
    seg = example.segments[0]
    first = example.model_copy(
        update={
            "chunk_index": 0,
            "segments": [
                seg.model_copy(update={"id": 0, "start": 1.0, "end": 2.0, "text": " one"}),
                seg.model_copy(update={"id": 1, "start": 3.0, "end": 4.0, "text": " two"}),
            ],
        }
    )
    segments = assemble_segments([example, first])  # out of order, as they may finish
    assert [s.id for s in segments] == [0, 1, 2]
    assert [s.text for s in segments] == [" one", " two", seg.text]
    with pytest.raises(ValueError, match="repeat an index"):
        assemble_segments([first, first])
