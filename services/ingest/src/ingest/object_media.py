"""The media store on S3-compatible object storage (`SCRIBE_MEDIA_URL=s3://bucket/prefix`).

Same contract as the filesystem store, same layout under the prefix:

    <prefix>/.tmp/<random>                uploads in flight (a multipart upload, then
                                          one object while probed; never seen by workers)
    <prefix>/<tenant>/<sha[:2]>/<sha>     stored audio, content-addressed per tenant

An upload streams into a multipart upload one part at a time (`PART_BYTES` held at most),
hashed on the way; a disconnect or a refusal aborts it, so no part stays behind. The
finished object is probed through ranged reads, then copied server-side to its content
address (CopyObject: nothing passes through ingest) and the temp object removed.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import secrets
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, BinaryIO, Final, cast

import structlog
from botocore.exceptions import ClientError

from ingest.failures import UnavailableError
from ingest.media import StoredMedia, UploadTooLargeError
from scribe_runtime.objectstore import (
    PART_BYTES,
    RangeReader,
    S3Location,
    delete_object,
    is_not_found,
    is_transient,
)

if TYPE_CHECKING:
    from types_aiobotocore_s3 import S3Client
else:
    S3Client = Any

log = structlog.get_logger(__name__)

TMP_DIR: Final = ".tmp"
MEDIA_STORE_UNAVAILABLE: Final = "media_store_unavailable"
RETRY_AFTER_SECONDS: Final = 5


def store_unavailable(exc: BaseException) -> UnavailableError:
    """`media_store_unavailable` (503): the object store did not take the bytes."""
    return UnavailableError(
        MEDIA_STORE_UNAVAILABLE,
        f"the media store is unavailable ({type(exc).__name__}); nothing was kept, retry later",
        retry_after_seconds=RETRY_AFTER_SECONDS,
    )


class S3MediaStore:
    """Uploads into a bucket under `base` (`s3://bucket/prefix`)."""

    def __init__(self, client: S3Client, base: S3Location) -> None:
        self.client = client
        self.base = base
        # As in the filesystem store: the request that created an object holds its lock
        # until its event is confirmed, so no concurrent request reuses an object that is
        # about to be removed again.
        self._locks: dict[str, asyncio.Lock] = {}
        self._held: dict[str, int] = {}

    def begin(self, max_bytes: int) -> S3Upload:
        return S3Upload(self, max_bytes)

    def content_location(self, tenant: str, sha256: str) -> S3Location:
        """`<prefix>/<tenant>/<sha[:2]>/<sha>`; the tenant id is validated by the contract."""
        return self.base.child(tenant, sha256[:2], sha256)

    def temp_location(self) -> S3Location:
        return self.base.child(TMP_DIR, secrets.token_hex(16))

    async def release(self, stored: StoredMedia) -> None:
        try:
            if stored.created:
                with _unavailable_as_503():
                    await delete_object(self.client, S3Location.parse(stored.uri))
                log.info("media_released", uri=stored.uri)
        finally:
            self.unlock(stored.uri)

    def keep(self, stored: StoredMedia) -> None:
        self.unlock(stored.uri)

    async def check_writable(self) -> str | None:
        probe = self.base.child(TMP_DIR, f"ready-{secrets.token_hex(8)}")
        try:
            await self.client.put_object(Bucket=probe.bucket, Key=probe.key, Body=b"ok")
            await self.client.delete_object(Bucket=probe.bucket, Key=probe.key)
        except Exception as exc:
            return f"media store {self.base.uri} is not writable: {type(exc).__name__}"
        return None

    async def delete(self, uri: str) -> bool:
        location = S3Location.parse(uri)
        temp = self.base.child(TMP_DIR)
        if not self.base.contains(location) or temp.contains(location) or location == self.base:
            raise ValueError("the URI is outside this media store")
        return await delete_object(self.client, location)

    async def sweep_stale_uploads(self, older_than_seconds: float) -> int:
        """Abort multipart uploads and remove temp objects a crashed process left.

        Only old ones: other replicas share `.tmp` and may be streaming right now.
        """
        cutoff = datetime.now(UTC) - timedelta(seconds=older_than_seconds)
        prefix = self.base.child(TMP_DIR).key + "/"
        removed = 0
        uploads = await self.client.list_multipart_uploads(Bucket=self.base.bucket, Prefix=prefix)
        for upload in uploads.get("Uploads", []):
            if upload["Initiated"] < cutoff:
                await self.client.abort_multipart_upload(
                    Bucket=self.base.bucket, Key=upload["Key"], UploadId=upload["UploadId"]
                )
                removed += 1
        paginator = self.client.get_paginator("list_objects_v2")
        async for page in paginator.paginate(Bucket=self.base.bucket, Prefix=prefix):
            for item in page.get("Contents", []):
                if item["LastModified"] < cutoff:
                    await self.client.delete_object(Bucket=self.base.bucket, Key=item["Key"])
                    removed += 1
        return removed

    async def acquire(self, key: str) -> None:
        lock = self._locks.setdefault(key, asyncio.Lock())
        self._held[key] = self._held.get(key, 0) + 1
        try:
            await lock.acquire()
        except BaseException:
            self._forget(key)
            raise

    def unlock(self, key: str) -> None:
        lock = self._locks.get(key)
        if lock is not None and lock.locked():
            lock.release()
            self._forget(key)

    def _forget(self, key: str) -> None:
        waiting = self._held.get(key, 0) - 1
        if waiting <= 0:
            self._held.pop(key, None)
            self._locks.pop(key, None)
        else:
            self._held[key] = waiting


class S3Upload:
    """One upload streamed into a multipart upload at `<prefix>/.tmp/<random>`."""

    def __init__(self, store: S3MediaStore, max_bytes: int) -> None:
        self._store = store
        self._client = store.client
        self._max_bytes = max_bytes
        self._temp = store.temp_location()
        self._hash = hashlib.sha256()
        self._size = 0
        self._buffer = bytearray()
        self._upload_id: str | None = None
        self._parts: list[dict[str, Any]] = []
        self._object_written = False
        self._sha256: str | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def size_bytes(self) -> int:
        return self._size

    async def write(self, data: bytes) -> None:
        self._size += len(data)
        if self._size > self._max_bytes:
            raise UploadTooLargeError(self._max_bytes)
        self._buffer += data
        while len(self._buffer) >= PART_BYTES:
            part = bytes(self._buffer[:PART_BYTES])
            del self._buffer[:PART_BYTES]
            await self._upload_part(part)

    async def _upload_part(self, part: bytes) -> None:
        # Awaited before more of the body is read: the client's upload is paced by the
        # store's, so memory holds one part, never the file.
        await asyncio.to_thread(self._hash.update, part)
        with _unavailable_as_503():
            if self._upload_id is None:
                created = await self._client.create_multipart_upload(
                    Bucket=self._temp.bucket, Key=self._temp.key
                )
                self._upload_id = created["UploadId"]
            number = len(self._parts) + 1
            answer = await self._client.upload_part(
                Bucket=self._temp.bucket,
                Key=self._temp.key,
                UploadId=self._upload_id,
                PartNumber=number,
                Body=part,
            )
        self._parts.append({"ETag": answer["ETag"], "PartNumber": number})

    async def finish(self) -> str:
        if self._sha256 is not None:
            return self._sha256
        self._loop = asyncio.get_running_loop()
        rest = bytes(self._buffer)
        self._buffer.clear()
        if self._upload_id is None:
            # Smaller than one part: one PUT (an empty upload too; the prober judges it).
            self._hash.update(rest)
            with _unavailable_as_503():
                await self._client.put_object(
                    Bucket=self._temp.bucket, Key=self._temp.key, Body=rest
                )
        else:
            if rest:
                await self._upload_part(rest)
            with _unavailable_as_503():
                await self._client.complete_multipart_upload(
                    Bucket=self._temp.bucket,
                    Key=self._temp.key,
                    UploadId=self._upload_id,
                    MultipartUpload={"Parts": cast(Any, self._parts)},
                )
            self._upload_id = None
        self._object_written = True
        self._sha256 = self._hash.hexdigest()
        return self._sha256

    def reader(self) -> contextlib.AbstractContextManager[BinaryIO]:
        assert self._loop is not None, "finish() first"
        reader = RangeReader(self._client, self._temp, self._size, self._loop)
        return contextlib.closing(cast(BinaryIO, reader))

    async def commit(self, tenant: str) -> StoredMedia:
        sha256 = await self.finish()
        target = self._store.content_location(tenant, sha256)
        await self._store.acquire(target.uri)
        try:
            with _unavailable_as_503():
                created = await self._move_to(target)
        except BaseException:
            self._store.unlock(target.uri)
            raise
        return StoredMedia(uri=target.uri, sha256=sha256, size_bytes=self._size, created=created)

    async def _move_to(self, target: S3Location) -> bool:
        try:
            await self._client.head_object(Bucket=target.bucket, Key=target.key)
        except ClientError as exc:
            if not is_not_found(exc):
                raise
        else:
            return False  # the same bytes are already stored for this tenant: reuse them
        # Server-side: the store copies, ingest sends one request (up to 5 GiB, S3's limit
        # for one CopyObject; uploads are capped well below by `max_upload_bytes`).
        await self._client.copy_object(
            Bucket=target.bucket,
            Key=target.key,
            CopySource={"Bucket": self._temp.bucket, "Key": self._temp.key},
        )
        return True

    async def discard(self) -> None:
        self._buffer.clear()
        upload_id, self._upload_id = self._upload_id, None
        written, self._object_written = self._object_written, False
        # Shielded: a request cancelled by a disconnect still aborts its parts.
        await asyncio.shield(self._cleanup(upload_id, written))

    async def _cleanup(self, upload_id: str | None, written: bool) -> None:
        try:
            if upload_id is not None:
                await self._client.abort_multipart_upload(
                    Bucket=self._temp.bucket, Key=self._temp.key, UploadId=upload_id
                )
                log.info("upload_aborted", key=self._temp.key, parts=len(self._parts))
            if written:
                await self._client.delete_object(Bucket=self._temp.bucket, Key=self._temp.key)
        except Exception as exc:
            log.warning("upload_cleanup_failed", key=self._temp.key, error=type(exc).__name__)


@contextlib.contextmanager
def _unavailable_as_503() -> Any:
    try:
        yield
    except Exception as exc:
        if is_transient(exc):
            raise store_unavailable(exc) from None
        raise
