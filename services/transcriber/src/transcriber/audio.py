"""Decoding audio to 16 kHz mono float32 with PyAV, telling failure classes apart.

faster-whisper's own decoder skips undecodable frames silently, so a truncated or damaged
file would be transcribed as if it were whole. This one names what went wrong:

- nothing PyAV can open, or no audio stream in it → `unsupported_media`
  (unless the bytes start like a known audio container: then → `corrupt_audio`);
- an audio stream that fails while decoding, decodes to nothing, decodes to clearly less
  than its header declares (truncated), or a WAV whose data chunk runs past the end of the
  file → `corrupt_audio`;
- a declared or decoded duration over the limit → `audio_too_long` (checked before and
  while decoding, so a long file never fills memory).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import av
import numpy as np
import numpy.typing as npt

from contracts.errors import ErrorCode
from scribe_runtime.wav import wav_data_chunk, wav_seconds
from transcriber.errors import JobFailure

SAMPLE_RATE: Final = 16000

# Signatures of audio containers: failing to open one of these means damage, not a wrong type.
_AUDIO_MAGIC: Final[tuple[tuple[int, bytes], ...]] = (
    (0, b"RIFF"),
    (0, b"fLaC"),
    (0, b"ID3"),
    (0, b"OggS"),
    (0, b"\x1a\x45\xdf\xa3"),  # Matroska / WebM
    (0, b"FORM"),  # AIFF
    (4, b"ftyp"),  # MP4 / M4A
    (0, b"#!AMR"),
    (0, b"caff"),
)
# A decode may come up this much short of the declared duration (encoder padding, rounding).
_TRUNCATION_TOLERANCE_SECONDS: Final = 0.5
_TRUNCATION_TOLERANCE_FRACTION: Final = 0.02
_GROUP_SAMPLES: Final = 500_000


@dataclass(frozen=True, slots=True)
class DecodedAudio:
    """Mono float32 samples at 16 kHz and what the container said about them."""

    samples: npt.NDArray[np.float32]
    declared_seconds: float | None
    container: str
    bad_frames: int

    @property
    def duration_seconds(self) -> float:
        """Decoded length in seconds."""
        return float(self.samples.shape[0]) / SAMPLE_RATE


def looks_like_audio_container(head: bytes) -> bool:
    """True when the first bytes carry a known audio container's signature."""
    if len(head) >= 2 and head[0] == 0xFF and (head[1] & 0xE0) == 0xE0:
        return True  # MPEG audio / ADTS frame sync
    return any(head[offset : offset + len(magic)] == magic for offset, magic in _AUDIO_MAGIC)


def wav_data_overrun(path: Path) -> int | None:
    """For a RIFF/WAVE file, how many data bytes the header promises beyond the file's end."""
    data = wav_data_chunk(path)
    if data is None:
        return None
    offset, declared = data
    overrun = offset + declared - path.stat().st_size
    return overrun if overrun > 0 else 0


def _too_long(seconds: float, limit: float) -> JobFailure:
    return JobFailure(
        ErrorCode.AUDIO_TOO_LONG,
        f"the audio lasts {seconds:.1f} s; this service accepts at most {limit:.0f} s",
    )


def _open(path: Path) -> av.container.InputContainer:
    """The container, or the classified failure of opening it."""
    with path.open("rb") as f:
        head = f.read(16)
    try:
        return av.open(str(path), mode="r", metadata_errors="ignore")
    except (av.error.FFmpegError, UnicodeDecodeError) as exc:
        if looks_like_audio_container(head):
            raise JobFailure(
                ErrorCode.CORRUPT_AUDIO, f"the audio container cannot be read: {exc}"
            ) from None
        raise JobFailure(
            ErrorCode.UNSUPPORTED_MEDIA, "the file is not in a recognised audio format"
        ) from None


def _audio_stream(container: av.container.InputContainer) -> av.AudioStream:
    if not container.streams.audio:
        kinds = sorted({str(s.type) for s in container.streams}) or ["nothing decodable"]
        raise JobFailure(
            ErrorCode.UNSUPPORTED_MEDIA,
            f"the file has no audio stream (found: {', '.join(kinds)})",
        )
    return container.streams.audio[0]


def decode_audio(path: Path, *, max_duration_seconds: float) -> DecodedAudio:
    """Decode `path` to 16 kHz mono float32, or raise a classified `JobFailure`. Blocking."""
    container = _open(path)
    with container:
        stream = _audio_stream(container)
        declared = _declared_seconds(container, stream)
        if declared is not None and declared > max_duration_seconds:
            raise _too_long(declared, max_duration_seconds)
        overrun = wav_data_overrun(path)
        if overrun:
            raise JobFailure(
                ErrorCode.CORRUPT_AUDIO,
                f"the WAV file is truncated: its header promises {overrun} more bytes of audio",
            )
        samples, bad_frames, error = _decode_stream(container, stream, max_duration_seconds)
        decoded = DecodedAudio(samples, declared, container.format.name, bad_frames)
    if decoded.samples.size == 0:
        reason = f": {error}" if error else ""
        raise JobFailure(ErrorCode.CORRUPT_AUDIO, f"no audio could be decoded{reason}")
    _check_whole(declared, decoded.duration_seconds, error)
    return decoded


def _check_whole(declared: float | None, decoded_seconds: float, error: str | None) -> None:
    """`corrupt_audio` when the decode came up short of the header, or ended in an error."""
    if declared is not None:
        missing = declared - decoded_seconds
        tolerance = max(_TRUNCATION_TOLERANCE_SECONDS, declared * _TRUNCATION_TOLERANCE_FRACTION)
        if missing > tolerance:
            reason = f" ({error})" if error else ""
            raise JobFailure(
                ErrorCode.CORRUPT_AUDIO,
                f"the audio stops after {decoded_seconds:.1f} s of the "
                f"{declared:.1f} s its header declares: truncated or damaged{reason}",
            )
    elif error is not None:
        # Without a declared length a decode error cannot be told from the end of the data.
        raise JobFailure(ErrorCode.CORRUPT_AUDIO, f"the audio fails to decode: {error}")


def probe_duration(path: Path) -> float:
    """The audio's duration in seconds, from its header, else by decoding it. Blocking.

    The header is exact for WAV and FLAC and an estimate for some compressed formats; where
    there is none (a streamed WAV, raw ADTS), the stream is decoded block by block and
    counted, in bounded memory. Raises the classified `JobFailure` of an unreadable file.
    An uncompressed WAV's header is read directly (what FFmpeg would say, at a fraction of
    its cost: opening a container probes its streams); the decode still checks the file.
    """
    seconds = wav_seconds(path)
    if seconds is not None:
        return seconds
    container = _open(path)
    with container:
        declared = _declared_seconds(container, _audio_stream(container))
    if declared is not None:
        return declared
    blocks = StreamedAudio(path, max_duration_seconds=float("inf"))
    for _ in blocks:
        pass
    return blocks.decoded_seconds


class StreamedAudio:
    """`path` decoded to 16 kHz mono float32 in blocks of `block_seconds`: bounded memory.

    Iterate once; each block is a new array (the last may be shorter). The same failure
    classes as `decode_audio`: opening fails at the first block; over the limit, truncated
    or damaged, at the point it is found (truncation: after the last block).
    """

    def __init__(
        self, path: Path, *, max_duration_seconds: float, block_seconds: float = 30.0
    ) -> None:
        self.path = path
        self.max_duration_seconds = max_duration_seconds
        self.block_samples = max(1, int(block_seconds * SAMPLE_RATE))
        self.decoded_samples = 0
        self.bad_frames = 0
        self.declared_seconds: float | None = None

    @property
    def decoded_seconds(self) -> float:
        """Seconds decoded so far (all of them once the iteration ended)."""
        return self.decoded_samples / SAMPLE_RATE

    def __iter__(self) -> Iterator[npt.NDArray[np.float32]]:
        container = _open(self.path)
        with container:
            stream = _audio_stream(container)
            declared = self.declared_seconds = _declared_seconds(container, stream)
            limit_seconds = self.max_duration_seconds
            if declared is not None and declared > limit_seconds:
                raise _too_long(declared, limit_seconds)
            overrun = wav_data_overrun(self.path)
            if overrun:
                raise JobFailure(
                    ErrorCode.CORRUPT_AUDIO,
                    f"the WAV file is truncated: its header promises {overrun} more bytes",
                )
            resampler = av.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE)
            limit = limit_seconds * SAMPLE_RATE
            pending: list[npt.NDArray[np.int16]] = []
            held = 0
            error: str | None = None
            for frame in _frames(container, stream):
                if isinstance(frame, str):
                    self.bad_frames += 1
                    error = frame
                    continue
                frame.pts = None
                for out in resampler.resample(frame):
                    array = out.to_ndarray().reshape(-1).astype(np.int16, copy=False)
                    pending.append(array)
                    held += array.shape[0]
                while held >= self.block_samples:
                    block, pending, held = _take(pending, self.block_samples)
                    self.decoded_samples += block.shape[0]
                    if self.decoded_samples > limit:
                        raise _too_long(self.decoded_seconds, limit_seconds)
                    yield block
            for out in resampler.resample(None):
                array = out.to_ndarray().reshape(-1).astype(np.int16, copy=False)
                pending.append(array)
                held += array.shape[0]
            while held:
                block, pending, held = _take(pending, min(held, self.block_samples))
                self.decoded_samples += block.shape[0]
                if self.decoded_samples > limit:
                    raise _too_long(self.decoded_seconds, limit_seconds)
                yield block
        if self.decoded_samples == 0:
            reason = f": {error}" if error else ""
            raise JobFailure(ErrorCode.CORRUPT_AUDIO, f"no audio could be decoded{reason}")
        _check_whole(declared, self.decoded_seconds, error)


def _take(
    pending: list[npt.NDArray[np.int16]], count: int
) -> tuple[npt.NDArray[np.float32], list[npt.NDArray[np.int16]], int]:
    """The first `count` samples of `pending` as float32, and what is left."""
    joined = np.concatenate(pending) if len(pending) > 1 else pending[0]
    block = joined[:count].astype(np.float32) / 32768.0
    rest = joined[count:]
    return block, ([rest] if rest.shape[0] else []), int(rest.shape[0])


def _declared_seconds(
    container: av.container.InputContainer, stream: av.AudioStream
) -> float | None:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return float(container.duration) / av.time_base
    return None


def _decode_stream(
    container: av.container.InputContainer, stream: av.AudioStream, max_seconds: float
) -> tuple[npt.NDArray[np.float32], int, str | None]:
    """Samples, the number of undecodable frames, and the last decode error (if any)."""
    resampler = av.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE)
    fifo = av.AudioFifo()
    chunks: list[npt.NDArray[np.int16]] = []
    total = 0
    limit = int(max_seconds * SAMPLE_RATE)
    bad_frames = 0
    error: str | None = None
    # Packet by packet, so one damaged packet is counted and skipped rather than ending the
    # decode; the duration check afterwards decides whether the damage matters.
    for frame in _frames(container, stream):
        if isinstance(frame, str):
            bad_frames += 1
            error = frame
            continue
        frame.pts = None
        fifo.write(frame)
        if fifo.samples >= _GROUP_SAMPLES:
            total += _drain(fifo, resampler, chunks)
            if total > limit:
                raise _too_long(total / SAMPLE_RATE, max_seconds)
    total += _drain(fifo, resampler, chunks, flush=True)
    if total > limit:
        raise _too_long(total / SAMPLE_RATE, max_seconds)
    if not chunks:
        return np.zeros(0, dtype=np.float32), bad_frames, error
    pcm = np.concatenate(chunks)
    return pcm.astype(np.float32) / 32768.0, bad_frames, error


def _frames(
    container: av.container.InputContainer, stream: av.AudioStream
) -> Iterator[av.AudioFrame | str]:
    """Decoded frames, or the text of a decode error in place of a bad packet."""
    packets = container.demux(stream)
    while True:
        try:
            packet = next(packets)
        except StopIteration:
            return
        except av.error.EOFError:
            return
        except av.error.FFmpegError as exc:
            yield str(exc)  # a demuxer error ends the stream: nothing after it is reachable
            return
        try:
            decoded = packet.decode()
        except av.error.FFmpegError as exc:
            yield str(exc)
            continue
        for frame in decoded:
            if isinstance(frame, av.AudioFrame):
                yield frame


def _drain(
    fifo: av.AudioFifo,
    resampler: av.AudioResampler,
    chunks: list[npt.NDArray[np.int16]],
    *,
    flush: bool = False,
) -> int:
    added = 0
    pending = [fifo.read()] if fifo.samples else []
    if flush:
        pending.append(None)
    for frame in pending:
        for out in resampler.resample(frame):
            array = out.to_ndarray().reshape(-1).astype(np.int16, copy=False)
            chunks.append(array)
            added += array.shape[0]
    return added


BLOCK_SECONDS: Final = 30.0


def iter_blocks(
    path: Path, *, channels: bool = False, block_seconds: float = BLOCK_SECONDS
) -> Iterator[npt.NDArray[np.float32]]:
    """The audio at 16 kHz in blocks of `block_seconds`, shaped (channels, samples). Blocking.

    Mono (a downmix) unless `channels`, then every channel of the first audio stream as it
    is. For passes after `decode_audio` has accepted the file (diarization): memory stays at
    one block whatever the length. A file that fails here is `corrupt_audio`.
    """
    block = int(block_seconds * SAMPLE_RATE)
    try:
        with av.open(str(path), mode="r", metadata_errors="ignore") as container:
            stream = container.streams.audio[0]
            layout = stream.layout.name if channels else "mono"
            resampler = av.AudioResampler(format="fltp", layout=layout, rate=SAMPLE_RATE)
            pending: list[npt.NDArray[np.float32]] = []
            held = 0
            for frame in container.decode(stream):
                frame.pts = None
                for out in resampler.resample(frame):
                    pending.append(out.to_ndarray().astype(np.float32, copy=False))
                    held += pending[-1].shape[1]
                if held >= block:
                    joined = np.concatenate(pending, axis=1)
                    for start in range(0, joined.shape[1] - block + 1, block):
                        yield joined[:, start : start + block]
                    rest = joined[:, (joined.shape[1] // block) * block :]
                    pending, held = [rest], rest.shape[1]
            for out in resampler.resample(None):
                pending.append(out.to_ndarray().astype(np.float32, copy=False))
            if pending and sum(p.shape[1] for p in pending):
                yield np.concatenate(pending, axis=1)
    except (av.error.FFmpegError, IndexError) as exc:
        raise JobFailure(
            ErrorCode.CORRUPT_AUDIO, f"the audio cannot be read again: {exc}"
        ) from None
