"""Round trips, validation rules and typed errors of the event contracts."""

from __future__ import annotations

import json
from datetime import datetime
from uuid import uuid4

import pytest
from pydantic import ValidationError

from contracts import (
    EVENT_CLASSES,
    AudioUploadedV1,
    Event,
    MalformedEventError,
    Segment,
    TranscriptionFailedV1,
    UnknownEventTypeError,
    UnsupportedEventVersionError,
    decode_event,
)
from contracts.examples import EXAMPLES
from contracts.export import SCHEMA_DIR, render_schemas


@pytest.mark.parametrize("cls", EVENT_CLASSES, ids=lambda c: c.routing_key())
def test_every_event_round_trips_through_json(cls: type[Event]) -> None:
    event = EXAMPLES[cls]
    wire = event.model_dump_json().encode()
    assert cls.model_validate_json(wire) == event
    assert decode_event(wire, cls.routing_key()) == event
    assert type(decode_event(wire)) is cls


@pytest.mark.parametrize("cls", EVENT_CLASSES, ids=lambda c: c.routing_key())
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
def test_malformed_bodies_say_why(body: bytes, reason: str) -> None:
    with pytest.raises(MalformedEventError, match=reason):
        decode_event(body)


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
