"""The media port of deletion: `delete_media(uri)` erases a deleted job's stored audio.

Ingest stores uploads as `file://` URIs under the media root; the indexer, which applies
deletions, erases them here. Erasing is idempotent (a missing file is already erased) and
an unreachable store is a `TransientError`, so the delete request goes through the retry
stages and is applied once the store is back. An `http(s)://` URI is someone else's
audio: nothing of it is stored. A scheme no adapter here erases (`s3://` until the object
store's adapter joins this port) is refused with `UnerasableMediaError`, and the request
is dead-lettered rather than reported done.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
from pathlib import Path
from typing import Final, Protocol
from urllib.parse import unquote, urlsplit

import structlog

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
