"""Is it audio, and how long? Decided by decoding the bytes with PyAV, never by a name.

Blocking (FFmpeg decodes): callers run `probe_audio` in a thread.

The whole audio stream is decoded (up to the duration limit), because a header alone
cannot tell a truncated file from a whole one: a FLAC's STREAMINFO and a WAV's data chunk
declare how many samples follow, and fewer decoded samples means the file was cut short.
Decoding PCM costs ~0.1 s per 200 MB; compressed audio decodes at hundreds of times real time.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Final

import av

from contracts.errors import ErrorCode
from ingest.failures import TooLargeError, UnsupportedMediaError
from scribe_runtime.wav import wav_data_chunk_in

CONTENT_TYPES: Final[dict[str, str]] = {
    "wav": "audio/wav",
    "w64": "audio/wav",
    "flac": "audio/flac",
    "mp3": "audio/mpeg",
    "ogg": "audio/ogg",
    "matroska,webm": "audio/webm",
    "mov,mp4,m4a,3gp,3g2,mj2": "audio/mp4",
    "aac": "audio/aac",
    "aiff": "audio/aiff",
    "caf": "audio/x-caf",
    "asf": "audio/x-ms-wma",
    "amr": "audio/amr",
    "wv": "audio/x-wavpack",
    "ape": "audio/x-ape",
    "au": "audio/basic",
    "mpeg": "video/mpeg",
    "avi": "video/x-msvideo",
}
"""Containers accepted, by FFmpeg demuxer name, and the media type each is sent on as.

An allow-list: FFmpeg also "demuxes" playlists, image sequences and text formats, which
are not audio and some of which open further files."""

_VIDEO_TYPES: Final[dict[str, str]] = {
    "matroska,webm": "video/webm",
    "mov,mp4,m4a,3gp,3g2,mj2": "video/mp4",
}

# Some decoders report one bad packet in an otherwise good file (a glitch mid-stream):
# that is still worth transcribing. More than this share of bad packets is not.
_MAX_BAD_PACKET_SHARE: Final = 0.01
# Declared lengths are exact for FLAC and WAV; allow a frame of slack for rounding.
_TRUNCATION_SLACK_SECONDS: Final = 0.1


@dataclass(frozen=True, slots=True)
class AudioProbe:
    """What decoding the upload found."""

    duration_seconds: float
    content_type: str
    container: str
    codec: str
    sample_rate: int
    channels: int


def unsupported(message: str) -> UnsupportedMediaError:
    """`unsupported_media`: the bytes are not audio we accept."""
    return UnsupportedMediaError(ErrorCode.UNSUPPORTED_MEDIA, message)


def probe_audio(path: Path, max_duration_seconds: float) -> AudioProbe:
    """Decode the file's first audio stream; raise `MediaRejectedError` if it is not usable."""
    with path.open("rb") as file:
        return probe_file(file, path.stat().st_size, max_duration_seconds)


def probe_file(file: BinaryIO, size: int, max_duration_seconds: float) -> AudioProbe:
    """`probe_audio` of an open, seekable file of `size` bytes (local, or an object's ranges)."""
    if size == 0:
        raise unsupported("the file is empty")
    try:
        # A file object (not a path) and no protocols: a container that refers to other
        # files or URLs (playlists, concat lists) cannot make FFmpeg open them.
        container = av.open(file, mode="r", options={"protocol_whitelist": "none"})
    except (av.FFmpegError, OSError, ValueError) as exc:
        # strerror, not str(exc): the latter names the server's temp path.
        reason = getattr(exc, "strerror", None) or type(exc).__name__
        raise unsupported(f"the file is not a recognised audio format ({reason})") from None
    with container:
        return _probe_container(container, file, size, max_duration_seconds)


def _probe_container(
    container: av.container.InputContainer, file: BinaryIO, size: int, max_duration: float
) -> AudioProbe:
    name = container.format.name
    if name not in CONTENT_TYPES:
        raise unsupported(f"{container.format.long_name or name} is not an audio format")
    if not container.streams.audio:
        raise unsupported("the file has no audio stream")
    stream = container.streams.audio[0]
    sample_rate = stream.codec_context.sample_rate or stream.rate or 0
    if sample_rate <= 0:
        raise unsupported("the audio stream has no sample rate")
    content_type = (
        _VIDEO_TYPES.get(name, CONTENT_TYPES[name])
        if container.streams.video
        else CONTENT_TYPES[name]
    )

    samples = 0
    packets = 0
    bad_packets = 0
    limit_samples = max_duration * sample_rate
    try:
        for packet in container.demux(stream):
            if packet.size == 0:
                continue  # the flush packet at the end
            packets += 1
            try:
                for frame in packet.decode():
                    samples += frame.samples
            except av.FFmpegError:
                bad_packets += 1
            if samples > limit_samples:
                raise TooLargeError(
                    ErrorCode.AUDIO_TOO_LONG,
                    f"the audio is longer than the limit of {max_duration:g} seconds",
                )
    except av.FFmpegError as exc:
        raise unsupported(f"the audio cannot be demuxed ({exc.strerror})") from None
    if samples == 0:
        raise unsupported("the file contains no audio samples")
    if bad_packets > max(1, packets * _MAX_BAD_PACKET_SHARE):
        raise unsupported(f"{bad_packets} of {packets} audio packets cannot be decoded")
    duration = samples / sample_rate

    declared = _declared_seconds(container, stream, file, size, name)
    if declared is not None and duration + _TRUNCATION_SLACK_SECONDS < declared:
        raise unsupported(
            f"the file is truncated: its header declares {declared:.2f} s of audio, "
            f"only {duration:.2f} s are there"
        )
    return AudioProbe(
        duration_seconds=round(duration, 3),
        content_type=content_type,
        container=name,
        codec=stream.codec_context.name,
        sample_rate=sample_rate,
        channels=stream.codec_context.channels,
    )


def _declared_seconds(
    container: av.container.InputContainer,
    stream: av.AudioStream,
    file: BinaryIO,
    size: int,
    name: str,
) -> float | None:
    """The length the header promises, where the format makes it exact."""
    if name == "flac":
        if stream.duration is not None and stream.time_base is not None:
            return float(stream.duration * stream.time_base)
        return None
    if name == "wav":
        return _wav_declared_seconds(file, size, stream)
    return None


def _wav_declared_seconds(file: BinaryIO, size: int, stream: av.AudioStream) -> float | None:
    """FFmpeg trusts a short WAV's file size over its header; the header is what was meant."""
    block_align = stream.codec_context.channels * (stream.codec_context.format.bytes or 0)
    if block_align <= 0:
        return None
    data = wav_data_chunk_in(file, size)
    if data is None:
        return None
    frames = data[1] // block_align
    return frames / (stream.codec_context.sample_rate or 1)
