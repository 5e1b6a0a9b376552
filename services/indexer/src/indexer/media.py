"""The media port of deletion: `delete_media(uri)` erases a deleted job's stored audio.

Ingest stores uploads as `file://` URIs under the media root; the indexer, which applies
deletions, erases them here. Erasing is idempotent (a missing file is already erased) and
an unreachable store is a `TransientError`, so the delete request goes through the retry
stages and is applied once the store is back. An `http(s)://` URI is someone else's
audio: nothing of it is stored. `s3://` objects are erased when they lie in the configured
object store's prefix (`SCRIBE_MEDIA_URL`), kept when they are an external producer's
(another bucket or prefix, like a file outside the media root). An `s3://` URI while no
object store is configured, or a scheme no adapter here erases, is refused with
`UnerasableMediaError`, and the request is dead-lettered rather than reported done.

A long job's chunks (normalised once by the planner) live under
`<media_root>/<tenant>/chunks/<job_id>/`, or `<prefix>/<tenant>/chunks/<job_id>/` in the
object store; `delete_chunks` erases that folder or prefix, whatever the job's own audio
URI is (it is never shared with another job).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import shutil
from pathlib import Path
from typing import Final, Protocol
from urllib.parse import unquote, urlsplit
from uuid import UUID

import structlog

from scribe_runtime.objectstore import S3Location, delete_object, is_transient, open_s3_client
from scribe_runtime.retry import TransientError

log = structlog.get_logger(__name__)

_NOT_STORED: Final = frozenset({"http", "https"})
_STORAGE_DOWN: Final = frozenset({errno.EIO, errno.ENOTCONN, errno.ESTALE, errno.EHOSTDOWN})


class UnerasableMediaError(Exception):
    """The URI names stored media that no adapter here can erase."""


class MediaEraser(Protocol):
    """Erases a job's stored audio."""

    async def delete_media(self, uri: str) -> None:
        """Erase the media at `uri`; idempotent. `TransientError` when the store is away."""
        ...

    async def delete_chunks(self, tenant_id: str, job_id: UUID) -> None:
        """Erase a long job's chunk audio, if it has any; idempotent."""
        ...


CHUNKS_FOLDER: Final = "chunks"
"""`<tenant>/chunks/<job_id>/`: where a long job's normalised chunks are stored."""


class LocalMediaEraser:
    """`file://` media under the media root (the volume ingest writes uploads to)."""

    def __init__(self, media_root: Path) -> None:
        self.root = media_root.resolve()

    async def delete_media(self, uri: str) -> None:
        parts = urlsplit(uri)
        if parts.scheme in _NOT_STORED:
            return
        if parts.scheme != "file" or parts.netloc not in ("", "localhost"):
            raise UnerasableMediaError(f"no adapter erases {parts.scheme}:// media")
        path = Path(unquote(parts.path))
        if ".." in path.parts or not path.is_absolute() or not path.is_relative_to(self.root):
            # Not ingest's: an external producer's file, which deleting a job must not touch.
            log.warning("media_outside_media_root_kept", uri=uri)
            return
        await asyncio.to_thread(self._unlink, path)

    async def delete_chunks(self, tenant_id: str, job_id: UUID) -> None:
        folder = self.root / tenant_id / CHUNKS_FOLDER / str(job_id)
        if not folder.resolve().is_relative_to(self.root):
            log.warning("chunks_outside_media_root_kept", job_id=str(job_id))
            return
        await asyncio.to_thread(self._remove_tree, folder)

    def _remove_tree(self, folder: Path) -> None:
        if not self.root.is_dir():
            raise TransientError(f"media root {self.root} is unavailable")
        try:
            shutil.rmtree(folder)
        except FileNotFoundError:
            return
        except OSError as exc:
            if exc.errno in _STORAGE_DOWN:
                raise TransientError(f"media store unavailable erasing {folder}: {exc}") from exc
            raise

    def _unlink(self, path: Path) -> None:
        if not self.root.is_dir():
            raise TransientError(f"media root {self.root} is unavailable")
        try:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        except OSError as exc:
            if exc.errno in _STORAGE_DOWN:
                raise TransientError(f"media store unavailable erasing {path}: {exc}") from exc
            raise


class StoreMediaEraser:
    """`s3://` media in the configured object store; every other URI to `local`."""

    def __init__(self, local: MediaEraser, store: S3Location | None) -> None:
        self._local = local
        self._store = store

    async def delete_media(self, uri: str) -> None:
        if urlsplit(uri).scheme.lower() != "s3":
            await self._local.delete_media(uri)
            return
        if self._store is None:
            raise UnerasableMediaError("s3:// media, but no object store is configured")
        try:
            location = S3Location.parse(uri)
        except ValueError as exc:
            raise UnerasableMediaError(str(exc)) from None
        if not self._store.contains(location):
            # Not the store's: an external producer's object, which deleting a job keeps.
            log.warning("media_outside_media_store_kept", uri=uri)
            return
        try:
            async with open_s3_client() as client:
                await delete_object(client, location)
        except Exception as exc:
            if is_transient(exc):
                raise TransientError(f"object store unavailable erasing {uri}: {exc!r}") from exc
            raise

    async def delete_chunks(self, tenant_id: str, job_id: UUID) -> None:
        await self._local.delete_chunks(tenant_id, job_id)
        if self._store is None:
            return
        prefix = self._store.child(tenant_id, CHUNKS_FOLDER, str(job_id))
        try:
            async with open_s3_client() as client:
                paginator = client.get_paginator("list_objects_v2")
                async for page in paginator.paginate(Bucket=prefix.bucket, Prefix=prefix.key + "/"):
                    for item in page.get("Contents", []):
                        await client.delete_object(Bucket=prefix.bucket, Key=item["Key"])
        except Exception as exc:
            if is_transient(exc):
                raise TransientError(
                    f"object store unavailable erasing {prefix.uri}/: {exc!r}"
                ) from exc
            raise
