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
from scribe_runtime.wav import wav_seconds
from transcriber.audio import (
    SAMPLE_RATE,
    decode_audio,
    looks_like_audio_container,
    probe_duration,
)
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


def _wav(path: Path, codec: str, rate: int, layout: str, seconds: float) -> Path:
    """A WAV of `codec` written by FFmpeg itself (with its LIST chunk before `data`)."""
    with av.open(str(path), "w", format="wav") as out:
        stream = out.add_stream(codec, rate=rate, layout=layout)
        assert isinstance(stream, av.AudioStream)
        samples = int(seconds * rate)
        channels = 2 if layout == "stereo" else 1
        pcm = np.zeros((1, samples * channels), dtype=np.int16)
        frame = av.AudioFrame.from_ndarray(pcm, format="s16", layout=layout)
        frame.sample_rate = rate
        frame.pts = 0
        for packet in stream.encode(frame):
            out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return path


def _ffmpeg_seconds(path: Path) -> float:
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        assert stream.duration is not None
        assert stream.time_base is not None
        return float(stream.duration * stream.time_base)


@pytest.mark.parametrize(
    ("codec", "rate", "layout"),
    [
        ("pcm_s16le", 16000, "mono"),
        ("pcm_s16le", 44100, "stereo"),
        ("pcm_s24le", 48000, "stereo"),
        ("pcm_f32le", 22050, "mono"),
        ("pcm_u8", 8000, "mono"),
    ],
)
@pytest.mark.parametrize("cut", [None, 0.5], ids=["whole", "truncated"])
def test_a_wav_is_probed_from_its_header_as_ffmpeg_reads_it(
    tmp_path: Path, codec: str, rate: int, layout: str, cut: float | None
) -> None:
    path = _wav(tmp_path / "a.wav", codec, rate, layout, seconds=3.3)
    if cut is not None:
        path.write_bytes(path.read_bytes()[: int(path.stat().st_size * cut)])
    # A truncated one is left to FFmpeg (its answer depends on the codec), and agrees too.
    assert (wav_seconds(path) is None) == (cut is not None)
    assert probe_duration(path) == pytest.approx(_ffmpeg_seconds(path), abs=1e-3)


def test_a_compressed_wav_and_other_containers_are_left_to_ffmpeg(tmp_path: Path) -> None:
    adpcm = _wav(tmp_path / "adpcm.wav", "adpcm_ms", 16000, "mono", seconds=2.0)
    assert wav_seconds(adpcm) is None
    assert probe_duration(adpcm) == pytest.approx(2.0, abs=0.1)
    assert wav_seconds(tone(tmp_path / "a.flac")) is None
