"""Decoding tells not-audio, damaged audio and too-long audio apart (real PyAV, tone files)."""

from __future__ import annotations

import os
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from contracts.errors import ErrorCode
from transcriber.audio import SAMPLE_RATE, decode_audio, looks_like_audio_container
from transcriber.errors import JobFailure

CODECS = {"wav": "pcm_s16le", "flac": "flac", "mp3": "mp3"}


def tone(path: Path, seconds: float = 4.0, rate: int = 22050) -> Path:
    """A 440 Hz tone in the container named by `path`'s suffix."""
    t = np.arange(int(seconds * rate)) / rate
    pcm = (np.sin(2 * np.pi * 440 * t) * 12000).astype(np.int16)
    with av.open(str(path), "w") as out:
        stream = out.add_stream(CODECS[path.suffix[1:]], rate=rate, layout="mono")
        assert isinstance(stream, av.AudioStream)
        for start in range(0, pcm.shape[0], 1024):
            frame = av.AudioFrame.from_ndarray(
                pcm[start : start + 1024].reshape(1, -1), format="s16", layout="mono"
            )
            frame.sample_rate = rate
            frame.pts = start
            frame.time_base = Fraction(1, rate)
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return path


def failure(path: Path, max_seconds: float = 3600) -> JobFailure:
    with pytest.raises(JobFailure) as info:
        decode_audio(path, max_duration_seconds=max_seconds)
    return info.value


@pytest.mark.parametrize("fmt", ["wav", "flac", "mp3"])
def test_whole_files_decode_to_16khz_mono(tmp_path: Path, fmt: str) -> None:
    audio = decode_audio(tone(tmp_path / f"a.{fmt}"), max_duration_seconds=3600)
    assert audio.samples.dtype == np.float32
    assert abs(audio.duration_seconds - 4.0) < 0.1
    assert audio.samples.shape[0] == pytest.approx(4.0 * SAMPLE_RATE, rel=0.03)
    assert 0.2 < float(np.abs(audio.samples).max()) <= 1.0


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"just some text, definitely not audio\n" * 200,
        b"%PDF-1.7\n" + os.urandom(4000),
        os.urandom(20000),
    ],
    ids=["empty", "text", "pdf", "random"],
)
def test_not_audio_is_unsupported_media(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "upload.bin"
    path.write_bytes(content)
    assert failure(path).code == ErrorCode.UNSUPPORTED_MEDIA


Damage = Callable[[bytes], bytes]
DAMAGES: dict[str, Damage] = {
    "truncated": lambda b: b[: len(b) // 2],
    "header_only": lambda b: b[:120],
    "garbage_body": lambda b: b[:4096] + os.urandom(len(b) - 4096),
}


@pytest.mark.parametrize("damage", sorted(DAMAGES))
@pytest.mark.parametrize("fmt", ["flac", "mp3"])
def test_damaged_compressed_audio_is_corrupt(tmp_path: Path, fmt: str, damage: str) -> None:
    data = tone(tmp_path / f"a.{fmt}", seconds=8).read_bytes()
    path = tmp_path / f"damaged.{fmt}"
    path.write_bytes(DAMAGES[damage](data))
    assert failure(path).code == ErrorCode.CORRUPT_AUDIO


@pytest.mark.parametrize("damage", ["truncated", "header_only"])
def test_a_truncated_wav_is_corrupt(tmp_path: Path, damage: str) -> None:
    data = tone(tmp_path / "a.wav", seconds=8).read_bytes()
    path = tmp_path / "damaged.wav"
    path.write_bytes(DAMAGES[damage](data))
    result = failure(path)
    assert result.code == ErrorCode.CORRUPT_AUDIO
    assert "truncated" in result.message


@pytest.mark.parametrize("fmt", ["wav", "flac", "mp3"])
def test_longer_than_the_limit_is_audio_too_long(tmp_path: Path, fmt: str) -> None:
    result = failure(tone(tmp_path / f"a.{fmt}", seconds=6), max_seconds=5)
    assert result.code == ErrorCode.AUDIO_TOO_LONG
    assert "at most 5 s" in result.message


def test_container_signatures() -> None:
    assert looks_like_audio_container(b"RIFF\x00\x00\x00\x00WAVEfmt ")
    assert looks_like_audio_container(b"fLaC\x00\x00")
    assert looks_like_audio_container(b"ID3\x04")
    assert looks_like_audio_container(b"\xff\xfb\x90\x00")
    assert looks_like_audio_container(b"\x00\x00\x00\x20ftypM4A ")
    assert not looks_like_audio_container(b"%PDF-1.7")
    assert not looks_like_audio_container(b"hello")
