"""The diarization options and speaker labels in the contracts, and the job fingerprint."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from contracts import AudioUploadedV1, Segment, TranscriptCompletedV1
from contracts.audio import TranscriptionOptions, job_fingerprint
from contracts.chunks import TranscriptionChunkedV1
from contracts.examples import EXAMPLES
from contracts.speakers import SpeakerTurn, label_segments

# Computed by the contracts before diarization existed: a job without it keeps its identity.
_FINGERPRINT_BEFORE_DIARIZATION = "916535a0745b5b77cdafad7067fee79acfeddd64ea21df4abde121432f4c729e"


def _fingerprint(**options: object) -> str:
    return job_fingerprint(
        audio_uri="file:///media/a.wav",
        sha256="0" * 64,
        language="en",
        model="tiny.en",
        word_timestamps=True,
        **options,  # type: ignore[arg-type]
    )


def test_a_job_without_diarization_keeps_its_earlier_fingerprint() -> None:
    assert _fingerprint() == _FINGERPRINT_BEFORE_DIARIZATION
    assert _fingerprint(diarize=False, min_speakers=2) == _FINGERPRINT_BEFORE_DIARIZATION


def test_diarization_options_are_part_of_the_job_definition() -> None:
    prints = {
        _fingerprint(),
        _fingerprint(diarize=True),
        _fingerprint(diarize="channels"),
        _fingerprint(diarize=True, max_speakers=3),
    }
    assert len(prints) == 4


@pytest.mark.parametrize("value", [True, False, "channels"])
def test_diarize_takes_a_boolean_or_channels(value: object) -> None:
    options = TranscriptionOptions.model_validate({"diarize": value})
    assert options.diarize == value
    again = TranscriptionOptions.model_validate_json(options.model_dump_json())
    assert again.diarize == value


@pytest.mark.parametrize(
    "body",
    [
        {"diarize": "speakers"},
        {"diarize": True, "min_speakers": 3, "max_speakers": 2},
        {"diarize": True, "max_speakers": 21},
        {"diarize": True, "min_speakers": 0},
    ],
)
def test_bad_diarization_options_are_refused(body: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        TranscriptionOptions.model_validate(body)


def test_an_upload_fingerprint_carries_its_diarization_options() -> None:
    plain = EXAMPLES[AudioUploadedV1]
    assert isinstance(plain, AudioUploadedV1)
    options = plain.options.model_copy(update={"diarize": True})
    diarized = plain.model_copy(update={"options": options})
    assert plain.job_fingerprint() != diarized.job_fingerprint()


def test_segments_and_words_carry_an_optional_speaker() -> None:
    segment = Segment.model_validate(
        {
            "id": 0,
            "start": 0,
            "end": 1,
            "text": " hi",
            "speaker": "SPEAKER_00",
            "words": [
                {"word": " hi", "start": 0, "end": 1, "probability": 0.9, "speaker": "SPEAKER_00"}
            ],
        }
    )
    assert segment.speaker == "SPEAKER_00"
    assert segment.words is not None
    assert segment.words[0].speaker == "SPEAKER_00"
    assert Segment.model_validate({"id": 0, "start": 0, "end": 1, "text": ""}).speaker is None
    with pytest.raises(ValidationError):
        Segment.model_validate({"id": 0, "start": 0, "end": 1, "text": "", "speaker": "a b"})
    assert "speaker" in TranscriptCompletedV1.model_json_schema()["$defs"]["Segment"]["properties"]


def test_labelling_takes_the_most_overlapping_turn_else_the_nearest() -> None:
    turns = [
        SpeakerTurn(start=10.0, end=20.0, speaker="SPEAKER_01"),
        SpeakerTurn(start=0.0, end=12.0, speaker="SPEAKER_00"),  # overlaps the next one
        SpeakerTurn(start=30.0, end=40.0, speaker="SPEAKER_00"),
    ]

    def seg(i: int, start: float, end: float) -> Segment:
        return Segment(id=i, start=start, end=end, text="x")

    segments = [
        seg(0, 1.0, 11.0),  # 10 s with 00, 1 s with 01
        seg(1, 11.0, 19.0),  # 1 s with 00, 8 s with 01
        seg(2, 21.0, 23.0),  # in no turn, nearest the end of 01
        seg(3, 27.0, 29.0),  # in no turn, nearest the start of the last 00
        seg(4, 50.0, 51.0),  # after every turn
    ]
    labelled = label_segments(segments, turns)
    assert [s.speaker for s in labelled] == [
        "SPEAKER_00",
        "SPEAKER_01",
        "SPEAKER_01",
        "SPEAKER_00",
        "SPEAKER_00",
    ]
    assert label_segments(segments, []) == segments


def test_a_plans_turns_are_optional_and_bounded() -> None:
    schema = TranscriptionChunkedV1.model_json_schema()
    assert "speaker_turns" not in schema.get("required", [])
    with pytest.raises(ValidationError):
        SpeakerTurn(start=2.0, end=1.0, speaker="SPEAKER_00")
    with pytest.raises(ValidationError):
        SpeakerTurn(start=0.0, end=1.0, speaker="no spaces")
