"""Where a long job's normalised chunks are written: the media store, under the tenant.

- filesystem: `<media_root>/<tenant>/chunks/<job_id>/<index>.wav` (`file://`), written to
  a `.part` file and renamed, so a reader never sees half a chunk;
- S3 (`SCRIBE_MEDIA_URL=s3://bucket/prefix`): `<prefix>/<tenant>/chunks/<job_id>/<index>.wav`,
  staged in a local temp file and uploaded when the chunk is complete.

Both are inside the tenant's own area, so `sources` reads them back under the same
confinement rules as any upload. Writing a chunk again (a redelivered upload re-planned)
replaces it with the same bytes.

Beside each chunk, once the broker confirmed its work item, an empty mark
(`<index>.published`): a planner killed mid-split leaves the chunks it handed out
marked, and the redelivered upload, split again, hands out only the others, so no chunk
is transcribed twice for it. The indexer erases the marks with the chunks.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import wave
from pathlib import Path
from typing import Final, Protocol
from uuid import UUID

import numpy as np

from scribe_runtime.objectstore import MediaUrl, open_s3_client
from transcriber.audio import SAMPLE_RATE
from transcriber.chunking import ChunkSink, ChunkWriter, Samples

CHUNK_DIR: Final = "chunks"
UPLOAD_TIMEOUT_SECONDS: Final = 300.0


def chunk_name(index: int) -> str:
    """`0000.wav`, `0001.wav`, ... (sorted by name is sorted by index)."""
    return f"{index:04d}.wav"


def mark_name(index: int) -> str:
    """`0000.published`: chunk `index`'s work item is out."""
    return f"{index:04d}.published"


def _pcm16(samples: Samples) -> bytes:
    # The decoder made these floats as int16 / 32768: this is exact on the way back.
    return np.clip(np.round(samples * 32768.0), -32768, 32767).astype("<i2").tobytes()


class _WavFile:
    """A PCM16 16 kHz mono WAV being written to `partial`; `finish` renames it to `final`."""

    def __init__(self, partial: Path) -> None:
        self.partial = partial
        partial.parent.mkdir(parents=True, exist_ok=True)
        self._wav = wave.open(str(partial), "wb")  # noqa: SIM115 - closed in `finish`
        self._wav.setnchannels(1)
        self._wav.setsampwidth(2)
        self._wav.setframerate(SAMPLE_RATE)

    def write(self, samples: Samples) -> None:
        if samples.shape[0]:
            self._wav.writeframes(_pcm16(samples))

    def finish(self) -> None:
        self._wav.close()


class ChunkStore(Protocol):
    """Makes the sink of one job's chunks."""

    def sink(self, tenant_id: str, job_id: UUID) -> ChunkSink:
        """Where the chunks of `job_id` go (blocking writers, for the planner's thread)."""
        ...


class FileChunkStore:
    """Chunks as files under the media root."""

    def __init__(self, media_root: Path) -> None:
        self.root = media_root.resolve()

    def directory(self, tenant_id: str, job_id: UUID) -> Path:
        """`<root>/<tenant>/chunks/<job_id>`."""
        return self.root / tenant_id / CHUNK_DIR / str(job_id)

    def sink(self, tenant_id: str, job_id: UUID) -> ChunkSink:
        return _FileSink(self.directory(tenant_id, job_id))


class _FileSink:
    def __init__(self, directory: Path) -> None:
        self._directory = directory

    def open(self, index: int) -> ChunkWriter:
        return _FileWriter(self._directory / chunk_name(index))

    def is_published(self, index: int) -> bool:
        return (self._directory / mark_name(index)).exists()

    def mark_published(self, index: int) -> None:
        self._directory.mkdir(parents=True, exist_ok=True)
        (self._directory / mark_name(index)).touch()


class _FileWriter:
    def __init__(self, target: Path) -> None:
        self._target = target
        self._file = _WavFile(target.with_name(target.name + ".part"))

    def write(self, samples: Samples) -> None:
        self._file.write(samples)

    def close(self) -> str:
        self._file.finish()
        self._file.partial.replace(self._target)
        return self._target.as_uri()


class S3ChunkStore:
    """Chunks as objects under the tenant's prefix of the S3 media store.

    Writers run on the planner's thread; each upload runs on the event loop (`loop`) and
    the thread waits for it, so a chunk's URI is returned only once the object is there.
    """

    def __init__(
        self, media: MediaUrl, loop: asyncio.AbstractEventLoop, staging: Path | None = None
    ) -> None:
        if media.s3 is None:
            raise ValueError("S3ChunkStore needs an s3:// media URL")
        self._media = media
        self._loop = loop
        self._staging = staging

    def sink(self, tenant_id: str, job_id: UUID) -> ChunkSink:
        return _S3Sink(self, tenant_id, job_id)

    def _upload(self, path: Path, key_parts: tuple[str, ...], tenant_id: str) -> str:
        body = path.read_bytes()  # one chunk (at most 600 s: 19 MB), on the planner's thread
        return self._put(body, key_parts, tenant_id, "audio/wav")

    def _put(self, body: bytes, key_parts: tuple[str, ...], tenant_id: str, kind: str) -> str:
        location = self._media.tenant_prefix(tenant_id).child(*key_parts)

        async def put() -> None:
            async with open_s3_client() as client:
                await client.put_object(
                    Bucket=location.bucket, Key=location.key, Body=body, ContentType=kind
                )

        asyncio.run_coroutine_threadsafe(put(), self._loop).result(UPLOAD_TIMEOUT_SECONDS)
        return location.uri

    def _exists(self, key_parts: tuple[str, ...], tenant_id: str) -> bool:
        location = self._media.tenant_prefix(tenant_id).child(*key_parts)

        async def head() -> bool:
            async with open_s3_client() as client:
                listed = await client.list_objects_v2(
                    Bucket=location.bucket, Prefix=location.key, MaxKeys=1
                )
                return any(o["Key"] == location.key for o in listed.get("Contents", []))

        future = asyncio.run_coroutine_threadsafe(head(), self._loop)
        return future.result(UPLOAD_TIMEOUT_SECONDS)


class _S3Sink:
    def __init__(self, store: S3ChunkStore, tenant_id: str, job_id: UUID) -> None:
        self._store = store
        self._tenant = tenant_id
        self._job = job_id

    def open(self, index: int) -> ChunkWriter:
        return _S3Writer(self, index)

    def is_published(self, index: int) -> bool:
        return self._store._exists((CHUNK_DIR, str(self._job), mark_name(index)), self._tenant)

    def mark_published(self, index: int) -> None:
        key = (CHUNK_DIR, str(self._job), mark_name(index))
        self._store._put(b"", key, self._tenant, "application/octet-stream")


class _S3Writer:
    def __init__(self, sink: _S3Sink, index: int) -> None:
        self._sink = sink
        self._index = index
        directory = sink._store._staging
        if directory is not None:
            directory.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix="scribe-chunk-", suffix=".wav", dir=directory)
        os.close(fd)
        self._file = _WavFile(Path(name))

    def write(self, samples: Samples) -> None:
        self._file.write(samples)

    def close(self) -> str:
        self._file.finish()
        try:
            return self._sink._store._upload(
                self._file.partial,
                (CHUNK_DIR, str(self._sink._job), chunk_name(self._index)),
                self._sink._tenant,
            )
        finally:
            self._file.partial.unlink(missing_ok=True)
