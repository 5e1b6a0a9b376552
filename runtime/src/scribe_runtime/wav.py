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
