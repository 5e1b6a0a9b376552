"""Fetching a job's audio by URI, to a local file.

- `file://` must resolve (symlinks followed) to a regular file under the event's tenant's
  own part of the media root, `<media_root>/<tenant_id>/` (where ingest stores it): one
  tenant's event cannot read another's file by its content address. `..` segments are
  refused, and confinement is decided on the resolved path before the file's existence is
  looked at, so a path outside that area fails the same way (`source_forbidden`, one
  message) whether or not something is there.
- `s3://` (see `S3Source`) only under the job's tenant's prefixes, streamed to a temp file.
- `http(s)://` goes through `scribe_runtime.netguard`: every address the host resolves to
  must be public, the connection is made to one of those addresses (so DNS cannot change
  between check and use) with the Host header and TLS SNI/certificate check still naming
  the host, every redirect is checked the same way, and size and time are bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Protocol
from urllib.parse import unquote, urljoin, urlsplit

import httpx
import structlog

from contracts.errors import ErrorCode
from scribe_runtime.netguard import (
    ForbiddenUrlError,
    ResolvedUrl,
    allowed_private_endpoints,
    pinned_urls,
    resolve_public_url,
)
from scribe_runtime.objectstore import (
    MediaUrl,
    S3AccessRefusedError,
    S3Location,
    check_tenant_access,
    error_code,
    is_not_found,
    is_transient,
    open_s3_client,
)
from scribe_runtime.retry import TransientError
from scribe_runtime.settings import SharedSettings
from transcriber.errors import JobFailure

log = structlog.get_logger(__name__)

_REDIRECTS: Final = frozenset({301, 302, 303, 307, 308})
_GONE: Final = frozenset({404, 410})
_CHUNK: Final = 1024 * 1024
_STORAGE_DOWN: Final = frozenset(
    {errno.ESTALE, errno.EIO, errno.ETIMEDOUT, errno.ENOTCONN, errno.EHOSTDOWN, errno.ENODEV}
)
"""Errors of a network or removable media store that is away, not of the file itself."""


@dataclass(frozen=True, slots=True)
class FetchedAudio:
    """A local file holding the job's audio, valid inside the `fetch` context."""

    path: Path
    size_bytes: int


class AudioSource(Protocol):
    """Makes a job's audio available as a local file for the duration of a context."""

    def fetch(
        self, uri: str, *, tenant_id: str
    ) -> contextlib.AbstractAsyncContextManager[FetchedAudio]:
        """Fetch `uri` for `tenant_id`'s job; raises `JobFailure` (`source_not_found`, ...)."""
        ...


class TransientFetchError(Exception):
    """A fetch that may work if tried again (5xx, timeout, connection reset)."""


class FileSource:
    """`file://` URIs confined to the tenant's own directory under the media root."""

    def __init__(self, media_root: Path) -> None:
        self._root = media_root.resolve()

    def resolve(self, uri: str, *, tenant_id: str) -> Path:
        """The real path of a `file://` URI, or a `JobFailure` saying why not."""
        parts = urlsplit(uri)
        if parts.scheme != "file":
            raise JobFailure(ErrorCode.SOURCE_UNREACHABLE, f"not a file URI: {uri!r}")
        if parts.netloc not in ("", "localhost"):
            raise JobFailure(
                ErrorCode.SOURCE_UNREACHABLE, f"file URI names a remote host {parts.netloc!r}"
            )
        raw = unquote(parts.path)
        if "\x00" in raw or not raw.startswith("/"):
            raise JobFailure(ErrorCode.SOURCE_UNREACHABLE, "file URI path must be absolute")
        if ".." in raw.split("/"):
            raise JobFailure(ErrorCode.SOURCE_FORBIDDEN, "file URI path may not contain '..'")
        # The tenant id is a contract-validated name (no '/', no '..'): a plain child.
        allowed = self._root / tenant_id
        forbidden = JobFailure(
            # One message whatever is (or is not) there: the reply must not tell an event's
            # author which paths exist outside its tenant's area.
            ErrorCode.SOURCE_FORBIDDEN,
            f"file URIs of tenant {tenant_id!r} must name a file under its media directory",
        )
        try:
            # Non-strict: confinement is judged on where the path leads, before existence.
            real = Path(raw).resolve(strict=False)
        except OSError as exc:
            if exc.errno in _STORAGE_DOWN:
                raise TransientError(f"media store unavailable: {exc.strerror}") from None
            raise forbidden from None
        except RuntimeError:  # symlink loop
            raise forbidden from None
        if not real.is_relative_to(allowed):
            raise forbidden
        try:
            is_file = real.is_file()
        except OSError as exc:
            if exc.errno in _STORAGE_DOWN:
                raise TransientError(f"media store unavailable reading {raw}: {exc}") from None
            raise JobFailure(ErrorCode.SOURCE_UNREACHABLE, f"cannot open {raw}: {exc}") from None
        if not is_file:
            if not self._root.is_dir():
                # The whole store is gone (volume unmounted, NFS away), not this file:
                # retried with backoff rather than failing every job that comes by.
                raise TransientError(f"media root {self._root} is unavailable")
            raise JobFailure(ErrorCode.SOURCE_NOT_FOUND, f"no regular file at {raw}")
        return real

    @contextlib.asynccontextmanager
    async def fetch(self, uri: str, *, tenant_id: str) -> AsyncIterator[FetchedAudio]:
        """The file itself; nothing is copied."""
        path = await asyncio.to_thread(self.resolve, uri, tenant_id=tenant_id)
        size = (await asyncio.to_thread(path.stat)).st_size
        yield FetchedAudio(path=path, size_bytes=size)


Resolver = Callable[[str], Awaitable[ResolvedUrl]]


def guarded_resolver(shared: SharedSettings) -> Resolver:
    """The SSRF guard, letting through only the configured store and allow-listed endpoints."""
    allowed = allowed_private_endpoints(shared)

    async def resolve(url: str) -> ResolvedUrl:
        return await resolve_public_url(url, allowed=allowed)

    return resolve


class HttpSource:
    """`http(s)://` URIs, public addresses only, pinned, size- and time-bounded."""

    def __init__(
        self,
        *,
        max_bytes: int,
        timeout_seconds: float,
        connect_timeout_seconds: float,
        max_redirects: int,
        attempts: int,
        download_dir: Path | None = None,
        resolver: Resolver = resolve_public_url,
        retry_backoff_seconds: float = 0.5,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._max_bytes = max_bytes
        self._timeout = timeout_seconds
        self._connect_timeout = connect_timeout_seconds
        self._max_redirects = max_redirects
        self._attempts = attempts
        self._download_dir = download_dir
        self._resolve = resolver
        self._backoff = retry_backoff_seconds
        self._transport = transport

    @contextlib.asynccontextmanager
    async def fetch(self, uri: str, *, tenant_id: str) -> AsyncIterator[FetchedAudio]:
        """Download to a temporary file, deleted when the context ends (any tenant)."""
        path = await asyncio.to_thread(_temp_file, self._download_dir)
        try:
            size = await self._download_with_retries(uri, path)
            yield FetchedAudio(path=path, size_bytes=size)
        finally:
            await asyncio.to_thread(path.unlink, missing_ok=True)

    async def _download_with_retries(self, uri: str, path: Path) -> int:
        for attempt in range(1, self._attempts + 1):
            try:
                async with asyncio.timeout(self._timeout):
                    return await self._download(uri, path)
            except TimeoutError:
                reason = f"the download took longer than {self._timeout:.0f} s"
            except TransientFetchError as exc:
                reason = str(exc)
            log.warning("audio_fetch_retry", attempt=attempt, reason=reason)
            if attempt < self._attempts:
                await asyncio.sleep(self._backoff * 2 ** (attempt - 1))
        raise JobFailure(
            ErrorCode.SOURCE_UNREACHABLE,
            f"gave up after {self._attempts} tries: {reason}",
            retryable=True,
        )

    async def _download(self, uri: str, path: Path) -> int:
        url = uri
        timeout = httpx.Timeout(self._connect_timeout)
        async with httpx.AsyncClient(
            timeout=timeout, follow_redirects=False, trust_env=False, transport=self._transport
        ) as client:
            for _ in range(self._max_redirects + 1):
                try:
                    target = await self._resolve(url)
                except ForbiddenUrlError as exc:
                    raise JobFailure(ErrorCode.SOURCE_UNREACHABLE, exc.reason) from None
                async with self._open(client, target) as response:
                    if response.status_code in _REDIRECTS:
                        location = response.headers.get("location")
                        if not location:
                            raise JobFailure(
                                ErrorCode.SOURCE_UNREACHABLE,
                                f"HTTP {response.status_code} without a Location from {url}",
                            )
                        url = urljoin(url, location)
                        continue
                    return await self._save(response, url, path)
        raise JobFailure(ErrorCode.SOURCE_UNREACHABLE, f"more than {self._max_redirects} redirects")

    @contextlib.asynccontextmanager
    async def _open(
        self, client: httpx.AsyncClient, target: ResolvedUrl
    ) -> AsyncIterator[httpx.Response]:
        """A streamed GET to the first resolved address that accepts a connection."""
        last: Exception | None = None
        for pinned in pinned_urls(target):
            request = client.build_request(
                "GET",
                pinned.url,
                headers={"Host": pinned.host_header, "Accept": "audio/*, */*;q=0.5"},
                extensions={"sni_hostname": pinned.sni_hostname} if pinned.sni_hostname else {},
            )
            try:
                response = await client.send(request, stream=True)
            except httpx.ConnectError as exc:
                last = exc
                continue
            except (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError) as exc:
                raise TransientFetchError(f"{target.host}: {exc!r}") from None
            try:
                yield response
            except httpx.TimeoutException as exc:
                raise TransientFetchError(f"{target.host}: read timed out: {exc!r}") from None
            except (httpx.NetworkError, httpx.RemoteProtocolError) as exc:
                raise TransientFetchError(f"{target.host}: {exc!r}") from None
            finally:
                await response.aclose()
            return
        # Every address refused the connection: the server is not there to serve it.
        raise JobFailure(ErrorCode.SOURCE_UNREACHABLE, f"cannot connect to {target.host}: {last}")

    async def _save(self, response: httpx.Response, url: str, path: Path) -> int:
        status = response.status_code
        if status in _GONE:
            raise JobFailure(ErrorCode.SOURCE_NOT_FOUND, f"HTTP {status} from {url}")
        if status >= 500 or status in (408, 429):
            raise TransientFetchError(f"HTTP {status} from {url}")
        if status != 200:
            raise JobFailure(ErrorCode.SOURCE_UNREACHABLE, f"HTTP {status} from {url}")
        declared = response.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > self._max_bytes:
            raise _too_large(int(declared), self._max_bytes)
        size = 0
        with path.open("wb") as out:
            async for chunk in response.aiter_bytes(_CHUNK):
                size += len(chunk)
                if size > self._max_bytes:
                    raise _too_large(size, self._max_bytes)
                out.write(chunk)
        return size


def _temp_file(directory: Path | None) -> Path:
    if directory is not None:
        directory.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix="scribe-audio-", dir=directory)
    os.close(fd)
    return Path(name)


def _too_large(size: int, limit: int) -> JobFailure:
    return JobFailure(
        ErrorCode.FILE_TOO_LARGE, f"the source is over {limit} bytes (at least {size}); refused"
    )


class S3Source:
    """`s3://` URIs, only under the tenant's prefixes; streamed to a temp file.

    Bounded memory, not bounded disk: the object is copied to `download_dir` one chunk at a
    time (PyAV then decodes the local file). The tenant check comes first and makes no
    request: an event naming another tenant's prefix or an unconfigured bucket fails with
    `source_forbidden`. A store that is away raises `TransientError` (the message waits
    in the retry stages), never a failed job.
    """

    def __init__(
        self,
        *,
        media: MediaUrl,
        grants: Mapping[str, Sequence[S3Location]],
        max_bytes: int,
        download_dir: Path | None = None,
        open_client: Callable[[], contextlib.AbstractAsyncContextManager[Any]] = open_s3_client,
    ) -> None:
        self._media = media
        self._grants = grants
        self._max_bytes = max_bytes
        self._download_dir = download_dir
        self._open_client = open_client

    def location(self, uri: str, tenant: str | None) -> S3Location:
        """The object, once the tenant may read it; `JobFailure` otherwise."""
        try:
            location = S3Location.parse(uri)
        except ValueError as exc:
            raise JobFailure(ErrorCode.SOURCE_UNREACHABLE, str(exc)) from None
        if tenant is None:
            raise JobFailure(ErrorCode.SOURCE_FORBIDDEN, "an s3:// job must name its tenant")
        try:
            check_tenant_access(location, tenant, media=self._media, grants=self._grants)
        except S3AccessRefusedError as exc:
            raise JobFailure(ErrorCode.SOURCE_FORBIDDEN, exc.reason) from None
        return location

    @contextlib.asynccontextmanager
    async def fetch(self, uri: str, *, tenant_id: str) -> AsyncIterator[FetchedAudio]:
        """Download to a temporary file, deleted when the context ends."""
        location = self.location(uri, tenant_id)
        path = await asyncio.to_thread(_temp_file, self._download_dir)
        try:
            try:
                async with self._open_client() as client:
                    size = await self._download(client, location, path)
            except (JobFailure, TransientError):
                raise
            except Exception as exc:
                if is_not_found(exc):
                    raise JobFailure(
                        ErrorCode.SOURCE_NOT_FOUND, f"no object at {location.uri}"
                    ) from None
                if is_transient(exc):
                    raise TransientError(
                        f"object store unavailable reading {location.uri}: {type(exc).__name__}"
                    ) from None
                raise JobFailure(
                    ErrorCode.SOURCE_UNREACHABLE,
                    f"cannot read {location.uri}: {error_code(exc) or type(exc).__name__}",
                ) from None
            log.info("audio_fetched", source="s3", size_bytes=size)
            yield FetchedAudio(path=path, size_bytes=size)
        finally:
            await asyncio.to_thread(path.unlink, missing_ok=True)

    async def _download(self, client: Any, location: S3Location, path: Path) -> int:
        head = await client.head_object(Bucket=location.bucket, Key=location.key)
        declared = int(head.get("ContentLength", 0))
        if declared > self._max_bytes:
            raise _too_large(declared, self._max_bytes)
        # Pinned to the version HEAD saw: an object replaced mid-download is not mixed.
        response = await client.get_object(
            Bucket=location.bucket, Key=location.key, IfMatch=head["ETag"]
        )
        size = 0
        with path.open("wb") as out:
            async with response["Body"] as body:
                while chunk := await body.read(_CHUNK):
                    size += len(chunk)
                    if size > self._max_bytes:
                        raise _too_large(size, self._max_bytes)
                    await asyncio.to_thread(out.write, chunk)
        return size


class UriSource:
    """Dispatches by scheme; any other scheme fails the job as unreachable."""

    def __init__(self, files: FileSource, http: HttpSource, s3: S3Source | None = None) -> None:
        self._files = files
        self._http = http
        self._s3 = s3

    def fetch(
        self, uri: str, *, tenant_id: str
    ) -> contextlib.AbstractAsyncContextManager[FetchedAudio]:
        """Fetch by the URI's scheme."""
        scheme = urlsplit(uri).scheme.lower()
        if scheme == "file":
            return self._files.fetch(uri, tenant_id=tenant_id)
        if scheme in ("http", "https"):
            return self._http.fetch(uri, tenant_id=tenant_id)
        if scheme == "s3" and self._s3 is not None:
            return self._s3.fetch(uri, tenant_id=tenant_id)
        return _Refused(
            JobFailure(
                # The URI is not repeated: its user-info could hold credentials.
                ErrorCode.SOURCE_UNREACHABLE,
                f"this worker cannot fetch {scheme!r} URIs",
            )
        )


class _Refused(contextlib.AbstractAsyncContextManager[FetchedAudio]):
    """A fetch that fails on entry."""

    def __init__(self, failure: JobFailure) -> None:
        self._failure = failure

    async def __aenter__(self) -> FetchedAudio:
        raise self._failure

    async def __aexit__(self, *_exc: object) -> None:
        return None
