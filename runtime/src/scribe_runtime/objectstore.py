"""S3-compatible object storage: where media lives, who may read what, and one client.

The media store is a URL (`SCRIBE_MEDIA_URL`): `file:///srv/scribe/media` (a shared
filesystem, the default, derived from `SCRIBE_MEDIA_ROOT`) or `s3://bucket/prefix`. The
client's endpoint, region and credentials come from the standard AWS variables
(`AWS_ENDPOINT_URL_S3` or `AWS_ENDPOINT_URL`, `AWS_REGION`, `AWS_ACCESS_KEY_ID`,
`AWS_SECRET_ACCESS_KEY`, or any source botocore reads: profiles, web identity, IMDS), so
an S3 tool's configuration carries over unchanged.

The client is aiobotocore (measured against obstore and boto3 in a thread in
`bench/object_store.py`; the figures and the reason are in bench/README.md).

Scope: a tenant reads `s3://` objects only under its own prefix of the media store
(`<prefix>/<tenant>/`) or under the buckets/prefixes granted to it
(`SCRIBE_S3_TENANT_PREFIXES`); anything else is refused with `source_forbidden` before a
single request is made.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import io
import os
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import unquote, urlsplit

import aiohttp
from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    ReadTimeoutError,
)

if TYPE_CHECKING:
    from types_aiobotocore_s3 import S3Client
else:
    S3Client = Any

FORBIDDEN_CODE: Final = "source_forbidden"
"""The stable code of an `s3://` URI outside what the tenant may read."""

PART_BYTES: Final = 8 * 1024 * 1024
"""Multipart part size (S3's minimum is 5 MiB): the most one upload holds in memory."""

RANGE_BYTES: Final = 4 * 1024 * 1024
"""How much one ranged GET reads for a decoder seeking through an object."""

_NOT_FOUND: Final = frozenset({"NoSuchKey", "NotFound", "404", "NoSuchBucket", "NoSuchUpload"})
_TRANSIENT_CODES: Final = frozenset(
    {"SlowDown", "ServiceUnavailable", "InternalError", "RequestTimeout", "Throttling", "503"}
)


class S3AccessRefusedError(ValueError):
    """An `s3://` URI the tenant may not read (`source_forbidden`); nothing was fetched."""

    code = FORBIDDEN_CODE

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class S3Location:
    """An object (or a prefix) in a bucket."""

    bucket: str
    key: str

    @classmethod
    def parse(cls, uri: str) -> S3Location:
        """`s3://bucket/key`; refuses anything that is not one (ValueError)."""
        parts = urlsplit(uri)
        if parts.scheme.lower() != "s3" or not parts.netloc:
            raise ValueError(f"not an s3:// URI: {parts.scheme}://")
        if parts.query or parts.fragment or "@" in parts.netloc:
            raise ValueError("an s3:// URI has no query, fragment or user-info")
        key = unquote(parts.path).lstrip("/")
        if "\x00" in key or ".." in key.split("/"):
            raise ValueError("an s3:// key may not contain NUL or '..' segments")
        return cls(bucket=parts.netloc, key=key)

    @property
    def uri(self) -> str:
        """`s3://bucket/key`."""
        return f"s3://{self.bucket}/{self.key}"

    def child(self, *names: str) -> S3Location:
        """The key `names` joined under this prefix."""
        parts = [p.strip("/") for p in (self.key, *names) if p.strip("/")]
        return S3Location(self.bucket, "/".join(parts))

    def contains(self, other: S3Location) -> bool:
        """True when `other` is this prefix or lies under it (by whole path segments)."""
        if other.bucket != self.bucket:
            return False
        prefix = self.key.strip("/")
        return not prefix or other.key == prefix or other.key.startswith(prefix + "/")


@dataclass(frozen=True, slots=True)
class MediaUrl:
    """The configured media store: a filesystem root or an S3 bucket and prefix."""

    root: Path | None = None
    s3: S3Location | None = None

    @classmethod
    def parse(cls, url: str | None, media_root: Path) -> MediaUrl:
        """`SCRIBE_MEDIA_URL`, or `file://<SCRIBE_MEDIA_ROOT>` when it is not set."""
        if not url:
            return cls(root=media_root.resolve())
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme == "file":
            if parts.netloc not in ("", "localhost"):
                raise ValueError("a file:// media URL names a local path, not a host")
            return cls(root=Path(unquote(parts.path)).resolve())
        if scheme == "s3":
            return cls(s3=S3Location.parse(url))
        raise ValueError(f"SCRIBE_MEDIA_URL must be file:// or s3://, not {scheme}://")

    @property
    def is_s3(self) -> bool:
        """True when media lives in object storage."""
        return self.s3 is not None

    def tenant_prefix(self, tenant: str) -> S3Location:
        """`<prefix>/<tenant>`: where the store keeps (and a tenant may read) its objects."""
        assert self.s3 is not None
        return self.s3.child(tenant)


def parse_grants(raw: Mapping[str, Sequence[str]]) -> dict[str, tuple[S3Location, ...]]:
    """`{"tenant": ["s3://bucket/prefix/", ...]}` as locations (ValueError when malformed)."""
    return {tenant: tuple(S3Location.parse(uri) for uri in uris) for tenant, uris in raw.items()}


def check_tenant_access(
    location: S3Location,
    tenant: str,
    *,
    media: MediaUrl,
    grants: Mapping[str, Sequence[S3Location]],
) -> None:
    """Refuse (`S3AccessRefusedError`) an object the tenant may not read; no request made."""
    allowed = list(grants.get(tenant, ()))
    if media.s3 is not None:
        allowed.append(media.tenant_prefix(tenant))
    if any(prefix.contains(location) for prefix in allowed):
        return
    if any(prefix.bucket == location.bucket for prefix in allowed):
        raise S3AccessRefusedError(
            f"tenant {tenant!r} may not read {location.uri}: outside its prefixes of bucket "
            f"{location.bucket!r}"
        )
    raise S3AccessRefusedError(
        f"bucket {location.bucket!r} is not configured for tenant {tenant!r}"
    )


def tenant_of(
    location: S3Location, *, media: MediaUrl, grants: Mapping[str, Sequence[S3Location]]
) -> str | None:
    """Whose object this is: the tenant whose store prefix or grant holds it (most specific)."""
    best: tuple[int, str] | None = None
    candidates: list[tuple[S3Location, str]] = [
        (prefix, tenant) for tenant, prefixes in grants.items() for prefix in prefixes
    ]
    if media.s3 is not None and media.s3.contains(location):
        rest = location.key[len(media.s3.key.strip("/")) :].strip("/")
        tenant = rest.split("/", 1)[0]
        if tenant and "/" in rest:
            candidates.append((media.tenant_prefix(tenant), tenant))
    for prefix, tenant in candidates:
        if prefix.contains(location) and (best is None or len(prefix.key) > best[0]):
            best = (len(prefix.key), tenant)
    return best[1] if best else None


# --- the client ----------------------------------------------------------------------------


def endpoint_url(env: Mapping[str, str] | None = None) -> str | None:
    """The S3 endpoint the standard variables name (None: AWS's own)."""
    env = os.environ if env is None else env
    return env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL") or None


def region(env: Mapping[str, str] | None = None) -> str:
    """`AWS_REGION` (or `AWS_DEFAULT_REGION`); us-east-1 when neither is set."""
    env = os.environ if env is None else env
    return env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or "us-east-1"


@functools.cache
def _session() -> Any:
    # One session per process: it caches the service models a client is built from, so a
    # client per job costs milliseconds, not a reload of botocore's JSON.
    return get_session()


@contextlib.asynccontextmanager
async def open_s3_client(*, read_timeout_seconds: float = 60.0) -> AsyncIterator[S3Client]:
    """An S3 client configured from the standard AWS variables, closed afterwards."""
    endpoint = endpoint_url()
    config = AioConfig(
        connect_timeout=5,
        read_timeout=read_timeout_seconds,
        # Few in-client retries: an outage surfaces fast as a transient error, and the
        # message's retry stages (not a blocked worker) wait it out.
        retries={"max_attempts": 2, "mode": "standard"},
        # Self-hosted stores (SeaweedFS, MinIO, Ceph) answer path-style requests.
        s3={"addressing_style": "path" if endpoint else "auto"},
        signature_version="s3v4",
        max_pool_connections=20,
    )
    async with _session().create_client(
        "s3", endpoint_url=endpoint, region_name=region(), config=config
    ) as client:
        yield client


def error_code(exc: BaseException) -> str | None:
    """The S3 error code of a `ClientError` (or its HTTP status), None otherwise."""
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = error.get("Code")
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        return str(code or status or "")
    return None


def is_not_found(exc: BaseException) -> bool:
    """The object (or bucket) is not there."""
    return error_code(exc) in _NOT_FOUND


def is_transient(exc: BaseException) -> bool:
    """The store is away or overloaded, not refusing this request for good."""
    if isinstance(
        exc,
        EndpointConnectionError
        | ConnectionClosedError
        | ConnectTimeoutError
        | ReadTimeoutError
        | aiohttp.ClientError
        | asyncio.TimeoutError
        | ConnectionError,
    ):
        return True
    if isinstance(exc, ClientError):
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
        return int(status) >= 500 or error_code(exc) in _TRANSIENT_CODES
    # Other botocore errors (a response cut short, a checksum mismatch) may pass too.
    return isinstance(exc, BotoCoreError) and "credentials" not in type(exc).__name__.lower()


async def delete_object(client: S3Client, location: S3Location) -> bool:
    """Remove the object; False when it was not there (S3 answers 204 either way)."""
    try:
        await client.head_object(Bucket=location.bucket, Key=location.key)
    except ClientError as exc:
        if is_not_found(exc):
            return False
        raise
    await client.delete_object(Bucket=location.bucket, Key=location.key)
    return True


class RangeReader(io.RawIOBase):
    """A read-only, seekable file over one object, for a decoder running in a thread.

    Each read past the buffered window is one ranged GET of `RANGE_BYTES` made on the
    event loop's client (`run_coroutine_threadsafe`), so memory stays at one window
    however large the object, and a decoder's seeks (a WAV header, an MP4 `moov` at the
    end) cost a request, not a download.
    """

    def __init__(
        self,
        client: S3Client,
        location: S3Location,
        size: int,
        loop: asyncio.AbstractEventLoop,
        *,
        window: int = RANGE_BYTES,
        timeout_seconds: float = 60.0,
    ) -> None:
        super().__init__()
        self._client = client
        self._location = location
        self._size = size
        self._loop = loop
        self._window = window
        self._timeout = timeout_seconds
        self._position = 0
        self._start = 0
        self._buffer = b""
        self.requests = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self._size}[whence]
        self._position = max(0, base + offset)
        return self._position

    def readinto(self, target: Any) -> int:
        view = memoryview(target).cast("B")
        if self._position >= self._size or not len(view):
            return 0
        end = self._start + len(self._buffer)
        if not (self._start <= self._position < end):
            self._fill(self._position)
            end = self._start + len(self._buffer)
        offset = self._position - self._start
        count = min(len(view), end - self._position)
        view[:count] = self._buffer[offset : offset + count]
        self._position += count
        return count

    def _fill(self, start: int) -> None:
        last = min(self._size, start + self._window) - 1
        future = asyncio.run_coroutine_threadsafe(self._get(start, last), self._loop)
        self._buffer = future.result(self._timeout)
        self._start = start
        self.requests += 1

    async def _get(self, first: int, last: int) -> bytes:
        response = await self._client.get_object(
            Bucket=self._location.bucket, Key=self._location.key, Range=f"bytes={first}-{last}"
        )
        async with response["Body"] as body:
            data: bytes = await body.read()
        return data
