"""The prober decides from the bytes: audio, not audio, truncated, too long."""

from __future__ import annotations

from pathlib import Path

import pytest

from contracts.errors import ErrorCode
from ingest.errors import status_of
from ingest.failures import MediaRejectedError
from ingest.probe import probe_audio
from services.ingest.tests import samples


def _write(tmp_path: Path, data: bytes) -> Path:
    # No extension, as in the media store: a name must not help.
    path = tmp_path / "upload"
    path.write_bytes(data)
    return path


def test_wav_duration_and_type(tmp_path: Path) -> None:
    probe = probe_audio(_write(tmp_path, samples.wav_bytes(2.0)), 60)
    assert probe.duration_seconds == pytest.approx(2.0)
    assert probe.content_type == "audio/wav"
    assert (probe.sample_rate, probe.channels) == (16000, 1)


def test_flac_duration_and_type(tmp_path: Path) -> None:
    probe = probe_audio(_write(tmp_path, samples.flac_bytes(1.5)), 60)
    assert probe.duration_seconds == pytest.approx(1.5)
    assert probe.content_type == "audio/flac"


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "empty"),
        (samples.wav_header_only(), "no audio samples"),
        (samples.truncated(samples.flac_bytes(3.0)), "truncated"),
        (samples.truncated(samples.wav_bytes(3.0)), "truncated"),
        (samples.png_bytes(), "not an audio format"),
        (samples.PLAIN_TEXT, "not a recognised audio format"),
        (samples.playlist_bytes(), "not a recognised audio format"),
    ],
    ids=["empty", "wav-header-only", "truncated-flac", "truncated-wav", "png", "text", "m3u8"],
)
def test_not_audio_is_unsupported_media(tmp_path: Path, data: bytes, reason: str) -> None:
    with pytest.raises(MediaRejectedError) as caught:
        probe_audio(_write(tmp_path, data), 60)
    assert status_of(caught.value) == 415
    assert caught.value.code == ErrorCode.UNSUPPORTED_MEDIA
    assert reason in caught.value.message
    assert str(tmp_path) not in caught.value.message  # server paths never leak


def test_longer_than_the_limit_is_audio_too_long(tmp_path: Path) -> None:
    with pytest.raises(MediaRejectedError) as caught:
        probe_audio(_write(tmp_path, samples.flac_bytes(3.0)), 2.0)
    assert (status_of(caught.value), caught.value.code) == (413, ErrorCode.AUDIO_TOO_LONG)
