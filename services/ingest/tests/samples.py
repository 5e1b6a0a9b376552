"""Media samples made in the test: good audio, and every kind of bad upload."""

from __future__ import annotations

import io
import math
import struct
import wave
import zlib

import av

RATE = 16000


def tone_pcm(seconds: float, rate: int = RATE) -> bytes:
    """A 440 Hz tone as 16-bit mono PCM."""
    frames = int(seconds * rate)
    return b"".join(
        struct.pack("<h", int(8000 * math.sin(2 * math.pi * 440 * i / rate))) for i in range(frames)
    )


def wav_bytes(seconds: float = 1.0, rate: int = RATE) -> bytes:
    """A valid mono 16-bit WAV."""
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(tone_pcm(seconds, rate))
    return out.getvalue()


def wav_header_only() -> bytes:
    """A WAV header declaring no samples, and none after it."""
    return wav_bytes(0.0)


def flac_bytes(seconds: float = 1.0) -> bytes:
    """A valid FLAC (STREAMINFO declares the exact sample count)."""
    out = io.BytesIO()
    with (
        av.open(io.BytesIO(wav_bytes(seconds)), "r") as src,
        av.open(out, "w", format="flac") as dst,
    ):
        stream = dst.add_stream("flac", rate=RATE, layout="mono")
        assert isinstance(stream, av.AudioStream)
        for frame in src.decode(audio=0):
            frame.pts = None
            for packet in stream.encode(frame):
                dst.mux(packet)
        for packet in stream.encode(None):
            dst.mux(packet)
    return out.getvalue()


def truncated(data: bytes, keep: float = 0.5) -> bytes:
    """The first part of a file, as an interrupted copy leaves it."""
    return data[: int(len(data) * keep)]


def png_bytes() -> bytes:
    """A tiny valid PNG image."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body) & 0xFFFFFFFF
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    raw = b"".join(b"\x00" + b"\xff\x00\x00" * 4 for _ in range(4))
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", 4, 4, 8, 2, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


def playlist_bytes() -> bytes:
    """An HLS playlist pointing at a local file and an internal URL: must open neither."""
    return (
        b"#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:10,\nhttp://127.0.0.1:9/x.ts\n"
        b"#EXTINF:10,\n/etc/passwd\n#EXT-X-ENDLIST\n"
    )


PLAIN_TEXT = b"This is not audio. It is a plain text file with a .wav name.\n" * 10
