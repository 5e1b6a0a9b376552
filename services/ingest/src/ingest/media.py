"""The media store: uploads streamed to a temp file, then renamed to a content address.

Layout under the media root (one filesystem, so the rename is atomic):

    <root>/.tmp/<random>               uploads in flight (never seen by workers)
    <root>/<tenant>/<sha[:2]>/<sha>    stored audio, content-addressed per tenant

A client's file name never becomes part of a path. An upload that fails for any reason
leaves nothing behind; a stored file is removed again only by the request that created it,
and only while no other job uses it (same tenant, same bytes).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import os
import secrets
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Final, Protocol, TypeVar
from urllib.parse import unquote, urlsplit

import structlog

from ingest import metrics
from ingest.failures import InsufficientStorageError, TooLargeError, file_too_large

log = structlog.get_logger(__name__)

T = TypeVar("T")

_NO_SPACE: Final = frozenset({errno.ENOSPC, errno.EDQUOT})

FLUSH_BYTES: Final = 1024 * 1024
"""Bytes gathered on the event loop before one write+hash in a thread: bounds memory."""

TMP_DIR: Final = ".tmp"


class UploadTooLargeError(TooLargeError):
    """The upload passed the size limit while streaming (`file_too_large`)."""

    def __init__(self, limit: int) -> None:
        refused = file_too_large(limit)
        super().__init__(refused.code, refused.message)
        self.limit = limit


@dataclass(frozen=True, slots=True)
class StoredMedia:
    """Audio at its content address."""

    uri: str
    """What events carry: `file:///<root>/...` or `s3://bucket/key`."""
    sha256: str
    size_bytes: int
    created: bool
    """True when this request put the file there (it did not exist before)."""

    @property
    def path(self) -> Path:
        """The local path of a `file://` URI (filesystem store only)."""
        return Path(unquote(urlsplit(self.uri).path))


class PendingUpload(Protocol):
    """An upload being written: bytes in, then `commit` or `discard`."""

    def reader(self) -> contextlib.AbstractContextManager[BinaryIO]:
        """The finished upload as a seekable file, for the prober (called in a thread)."""
        ...

    @property
    def size_bytes(self) -> int:
        """Bytes received so far."""
        ...

    async def write(self, data: bytes) -> None:
        """Append bytes; raises `UploadTooLargeError` past the limit."""
        ...

    async def finish(self) -> str:
        """Flush and close; return the sha256 (lower-case hex) of everything written."""
        ...

    async def commit(self, tenant: str) -> StoredMedia:
        """Move the finished upload to its content address, atomically."""
        ...

    async def discard(self) -> None:
        """Remove the in-flight file. Safe to call more than once, and after `commit`."""
        ...


class MediaStore(Protocol):
    """Where uploaded audio lives."""

    def begin(self, max_bytes: int) -> PendingUpload:
        """Start an upload of at most `max_bytes`."""
        ...

    async def release(self, stored: StoredMedia) -> None:
        """Undo a `commit` whose job was never accepted (removes it only if it created it)."""
        ...

    def keep(self, stored: StoredMedia) -> None:
        """The job was accepted: the stored file stays, other requests may share it."""
        ...

    async def check_writable(self) -> str | None:
        """None when uploads can be stored; otherwise why not."""
        ...

    async def delete(self, uri: str) -> bool:
        """Remove the stored audio `uri` names (a job's deletion); False if it was not there.

        Refuses (ValueError) a URI outside this store: deletion never reaches elsewhere.
        """
        ...


async def off_loop(call: Callable[[], T]) -> T:
    """Run a filesystem call in a thread; a full disk or quota is `InsufficientStorageError`."""
    try:
        return await asyncio.to_thread(call)
    except OSError as exc:
        if exc.errno in _NO_SPACE:
            log.warning("media_root_full", error=exc.strerror)
            raise InsufficientStorageError() from None
        raise


class FilesystemMediaStore:
    """The media store on a (shared) filesystem under `root`.

    `/readyz` fails while the filesystem has less than `min_free_bytes` free, so a load
    balancer stops sending uploads before they start failing with 507.
    """

    def __init__(self, root: Path, *, min_free_bytes: int = 0) -> None:
        self.root = root.resolve()
        self.min_free_bytes = min_free_bytes
        self.tmp = self.root / TMP_DIR
        # Same-tenant uploads of the same bytes share one file: the request that created it
        # holds its lock from commit until its event is confirmed, so a concurrent request
        # never reuses a file that is about to be removed again.
        self._locks: dict[Path, asyncio.Lock] = {}
        self._held: dict[Path, int] = {}

    def begin(self, max_bytes: int) -> FilesystemUpload:
        return FilesystemUpload(self, max_bytes)

    def content_path(self, tenant: str, sha256: str) -> Path:
        """`<root>/<tenant>/<sha[:2]>/<sha>`; the tenant id is validated by the contract."""
        return self.root / tenant / sha256[:2] / sha256

    async def release(self, stored: StoredMedia) -> None:
        try:
            if stored.created:
                await asyncio.to_thread(_unlink, stored.path)
                log.info("media_released", path=str(stored.path))
        finally:
            self.unlock(stored.path)

    def keep(self, stored: StoredMedia) -> None:
        self.unlock(stored.path)

    async def check_writable(self) -> str | None:
        return await asyncio.to_thread(self._check_writable)

    async def delete(self, uri: str) -> bool:
        parts = urlsplit(uri)
        if parts.scheme != "file" or parts.netloc not in ("", "localhost"):
            raise ValueError("not a file:// URI of this media store")
        path = Path(unquote(parts.path))
        if ".." in path.parts or not path.is_relative_to(self.root) or TMP_DIR in path.parts:
            raise ValueError("the URI is outside this media store")
        return await asyncio.to_thread(_remove, path)

    async def sweep_stale_uploads(self, older_than_seconds: float) -> int:
        """Remove temp files a crashed process left; returns how many.

        Only old ones: other replicas share `.tmp` and may be streaming right now.
        """
        return await asyncio.to_thread(self._sweep, older_than_seconds)

    def _sweep(self, older_than_seconds: float) -> int:
        cutoff = time.time() - older_than_seconds
        removed = 0
        with contextlib.suppress(FileNotFoundError):
            for entry in self.tmp.iterdir():
                with contextlib.suppress(FileNotFoundError):
                    if entry.is_file() and entry.stat().st_mtime < cutoff:
                        entry.unlink()
                        removed += 1
        return removed

    def _check_writable(self) -> str | None:
        try:
            self.tmp.mkdir(parents=True, exist_ok=True)
            free = shutil.disk_usage(self.tmp).free
            metrics.MEDIA_FREE_BYTES.set(free)
            if free < self.min_free_bytes:
                floor = self.min_free_bytes
                return f"the media root has {free} bytes free, under the floor of {floor}"
            probe = self.tmp / f"ready-{secrets.token_hex(8)}"
            probe.write_bytes(b"ok")
            probe.unlink()
        except OSError as exc:
            # Never the path: /readyz is open, and says nothing about the server's layout.
            return f"the media root is not writable: {exc.strerror or exc}"
        return None

    async def acquire(self, path: Path) -> None:
        lock = self._locks.setdefault(path, asyncio.Lock())
        self._held[path] = self._held.get(path, 0) + 1
        try:
            await lock.acquire()
        except BaseException:
            self._forget(path)
            raise

    def unlock(self, path: Path) -> None:
        lock = self._locks.get(path)
        if lock is not None and lock.locked():
            lock.release()
            self._forget(path)

    def _forget(self, path: Path) -> None:
        waiting = self._held.get(path, 0) - 1
        if waiting <= 0:
            self._held.pop(path, None)
            self._locks.pop(path, None)
        else:
            self._held[path] = waiting


class FilesystemUpload:
    """One upload streamed to `<root>/.tmp/<random>`, hashed as it goes."""

    def __init__(self, store: FilesystemMediaStore, max_bytes: int) -> None:
        self._store = store
        self._max_bytes = max_bytes
        # No extension: PyAV must judge the bytes, not a name.
        self._path = store.tmp / secrets.token_hex(16)
        self._hash = hashlib.sha256()
        self._size = 0
        self._buffer = bytearray()
        self._file: int | None = None
        self._sha256: str | None = None

    @property
    def path(self) -> Path:
        """Where the bytes are while in flight."""
        return self._path

    @property
    def size_bytes(self) -> int:
        return self._size

    def reader(self) -> contextlib.AbstractContextManager[BinaryIO]:
        return self._path.open("rb")

    async def write(self, data: bytes) -> None:
        self._size += len(data)
        if self._size > self._max_bytes:
            raise UploadTooLargeError(self._max_bytes)
        self._buffer += data
        if len(self._buffer) >= FLUSH_BYTES:
            await self._flush()

    async def _flush(self) -> None:
        if not self._buffer:
            return
        chunk = bytes(self._buffer)
        self._buffer.clear()
        await off_loop(lambda: self._write_chunk(chunk))

    def _write_chunk(self, chunk: bytes) -> None:
        if self._file is None:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            self._file = os.open(self._path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
        view = memoryview(chunk)
        while view:
            written = os.write(self._file, view)
            view = view[written:]
        self._hash.update(chunk)

    async def finish(self) -> str:
        if self._sha256 is None:
            # Even an empty upload gets a file: the prober decides what "empty" means.
            await self._flush()
            await off_loop(lambda: self._close(True))
            self._sha256 = self._hash.hexdigest()
        return self._sha256

    def _close(self, sync: bool) -> None:
        if self._file is None:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            self._file = os.open(self._path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
        try:
            if sync:
                os.fsync(self._file)
        finally:
            os.close(self._file)
            self._file = -1

    async def commit(self, tenant: str) -> StoredMedia:
        sha256 = await self.finish()
        target = self._store.content_path(tenant, sha256)
        # Held until the store's `keep` or `release`: see FilesystemMediaStore.
        await self._store.acquire(target)
        try:
            created = await off_loop(lambda: self._rename(target))
        except BaseException:
            self._store.unlock(target)
            raise
        return StoredMedia(
            uri=target.as_uri(), sha256=sha256, size_bytes=self._size, created=created
        )

    def _rename(self, target: Path) -> bool:
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.exists():
            # The same bytes are already stored for this tenant: reuse them.
            self._path.unlink()
            return False
        self._path.replace(target)
        _fsync_dir(target.parent)
        return True

    async def discard(self) -> None:
        self._buffer.clear()
        file, self._file = self._file, -1
        await asyncio.to_thread(self._discard, file)

    def _discard(self, file: int | None) -> None:
        if file is not None and file >= 0:
            with contextlib.suppress(OSError):
                os.close(file)
        _unlink(self._path)


def _remove(path: Path) -> bool:
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    return True


def _unlink(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def _fsync_dir(directory: Path) -> None:
    """Make the rename durable: a crash must not lose a file an event points at."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
