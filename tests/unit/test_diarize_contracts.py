"""The diarization options and speaker labels in the contracts, and the job fingerprint."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from contracts import AudioUploadedV1, Segment, TranscriptCompletedV1
from contracts.audio import TranscriptionOptions, job_fingerprint
from contracts.examples import EXAMPLES

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
