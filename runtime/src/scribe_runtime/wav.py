"""Reading a RIFF/WAVE header's own claim about its samples (stdlib only).

FFmpeg trusts a WAV's file size over its header, so a truncated WAV decodes "fine";
ingest's probe and the transcriber's decoder both compare the header's claim with the file.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import BinaryIO


def wav_data_chunk(path: Path) -> tuple[int, int] | None:
    """Offset of the `data` chunk's payload and the size its header declares.

    None when the file is not RIFF/WAVE, has no `data` chunk, or declares no size
    (streaming writers leave 0 or 0xFFFFFFFF when the length was not known).
    """
    size = path.stat().st_size
    with path.open("rb") as file:
        return wav_data_chunk_in(file, size)


def wav_data_chunk_in(file: BinaryIO, size: int) -> tuple[int, int] | None:
    """`wav_data_chunk` of an open, seekable file of `size` bytes (a local file, an object)."""
    file.seek(0)
    head = file.read(12)
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return None
    offset = 12
    while offset + 8 <= size:
        file.seek(offset)
        chunk = file.read(8)
        if len(chunk) < 8:
            return None
        chunk_id, chunk_size = chunk[:4], struct.unpack("<I", chunk[4:])[0]
        if chunk_id == b"data":
            if chunk_size in (0, 0xFFFFFFFF):
                return None
            return offset + 8, chunk_size
        offset += 8 + chunk_size + (chunk_size & 1)
    return None


_PCM_FORMATS = frozenset({1, 3, 0xFFFE})
"""Integer PCM, IEEE float, and WAVE_FORMAT_EXTENSIBLE (which carries either)."""


def wav_seconds(path: Path) -> float | None:
    """The duration of an uncompressed RIFF/WAVE file from its header, without FFmpeg.

    What FFmpeg reports for such a file: the `data` chunk's samples. None for anything
    else (another container, a compressed WAV codec, a header without sizes, a `data`
    chunk that promises more than the file holds, where FFmpeg's answer depends on the
    codec): ask FFmpeg.
    """
    size = path.stat().st_size
    with path.open("rb") as file:
        data = wav_data_chunk_in(file, size)
        if data is None:
            return None
        file.seek(12)
        offset = 12
        while offset + 8 <= size:
            file.seek(offset)
            chunk = file.read(24)
            if len(chunk) < 8:
                return None
            chunk_id, chunk_size = chunk[:4], struct.unpack("<I", chunk[4:8])[0]
            if chunk_id == b"fmt ":
                if chunk_size < 16 or len(chunk) < 24:
                    return None
                fields: tuple[int, ...] = struct.unpack("<HHIIH", chunk[8:22])
                tag, _channels, rate, _byte_rate, block_align = fields
                if tag not in _PCM_FORMATS or rate == 0 or block_align == 0:
                    return None
                data_offset, declared = data
                if data_offset + declared > size:
                    return None
                return (declared // block_align) / rate
            offset += 8 + chunk_size + (chunk_size & 1)
    return None
