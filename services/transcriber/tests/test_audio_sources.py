"""Fetching audio: file:// confined to the media root; http(s):// guarded, pinned, bounded."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from contracts.errors import ErrorCode
from scribe_runtime.netguard import ForbiddenUrlError, ResolvedUrl, resolve_public_url
from transcriber.errors import JobFailure
from transcriber.sources import FileSource, HttpSource, UriSource

AUDIO = b"RIFF" + bytes(range(256)) * 40


# --- file:// -----------------------------------------------------------------------------


@pytest.fixture
def media(tmp_path: Path) -> Path:
    """`<tmp>/media` holding tenant acme's `acme/ab/job.wav`; returns acme's directory."""
    root = tmp_path / "media"
    (root / "acme" / "ab").mkdir(parents=True)
    (root / "acme" / "ab" / "job.wav").write_bytes(AUDIO)
    (root / "globex" / "cd").mkdir(parents=True)
    (root / "globex" / "cd" / "theirs.wav").write_bytes(AUDIO)
    (tmp_path / "secret.txt").write_text("outside")
    return root / "acme"


async def fetch_file(media: Path, uri: str, tenant_id: str = "acme") -> bytes:
    async with FileSource(media.parent).fetch(uri, tenant_id=tenant_id) as audio:
        return audio.path.read_bytes()


async def test_a_file_under_the_media_root_is_served(media: Path) -> None:
    assert await fetch_file(media, (media / "ab" / "job.wav").as_uri()) == AUDIO


async def test_a_missing_file_is_source_not_found(media: Path) -> None:
    with pytest.raises(JobFailure) as info:
        await fetch_file(media, (media / "ab" / "gone.wav").as_uri())
    assert info.value.code == ErrorCode.SOURCE_NOT_FOUND


@pytest.mark.parametrize(
    "make_uri",
    [
        lambda m: f"file://{m}/ab/../../secret.txt",
        lambda m: f"file://{m}/ab/%2E%2E/%2E%2E/secret.txt",
        lambda m: (m.parent / "secret.txt").as_uri(),
        lambda m: "file:///etc/passwd",
        lambda m: (m.parent / "globex" / "cd" / "theirs.wav").as_uri(),
        lambda m: (m.parent / "globex" / "cd" / "not-there.wav").as_uri(),
        lambda m: (m.parent / "stray.wav").as_uri(),
    ],
    ids=[
        "dotdot",
        "encoded-dotdot",
        "sibling",
        "etc-passwd",
        "another-tenants-file",
        "another-tenants-missing-file",
        "media-root-itself",
    ],
)
async def test_paths_outside_the_tenants_directory_are_forbidden(
    media: Path, make_uri: object
) -> None:
    uri = make_uri(media)  # type: ignore[operator]
    with pytest.raises(JobFailure) as info:
        await fetch_file(media, uri)
    assert info.value.code == ErrorCode.SOURCE_FORBIDDEN


async def test_a_remote_file_host_is_unreachable(media: Path) -> None:
    with pytest.raises(JobFailure) as info:
        await fetch_file(media, f"file://otherhost{media}/ab/job.wav")
    assert info.value.code == ErrorCode.SOURCE_UNREACHABLE


async def test_a_forbidden_path_reads_the_same_whether_or_not_it_exists(media: Path) -> None:
    messages = set()
    for target in ("/etc/passwd", "/etc/no-such-file", f"{media.parent}/globex/cd/theirs.wav"):
        with pytest.raises(JobFailure) as info:
            await fetch_file(media, f"file://{target}")
        assert info.value.code == ErrorCode.SOURCE_FORBIDDEN
        messages.add(info.value.message)
        assert target not in info.value.message
    assert len(messages) == 1, messages


async def test_a_symlink_escaping_the_tenants_directory_is_forbidden(media: Path) -> None:
    for n, target in enumerate((media.parent.parent / "secret.txt", media.parent / "nothing")):
        link = media / "ab" / f"escape-{n}.wav"
        link.symlink_to(target)
        with pytest.raises(JobFailure) as info:
            await fetch_file(media, link.as_uri())
        assert info.value.code == ErrorCode.SOURCE_FORBIDDEN


async def test_a_symlink_inside_the_media_root_is_followed(media: Path) -> None:
    link = media / "alias.wav"
    link.symlink_to(media / "ab" / "job.wav")
    assert await fetch_file(media, link.as_uri()) == AUDIO


async def test_a_directory_is_not_audio(media: Path) -> None:
    with pytest.raises(JobFailure) as info:
        await fetch_file(media, (media / "ab").as_uri())
    assert info.value.code == ErrorCode.SOURCE_NOT_FOUND


# --- http(s):// --------------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    hosts: list[str] = []

    def log_message(self, *_args: object) -> None:
        pass

    def do_GET(self) -> None:
        self.hosts.append(self.headers.get("Host", ""))
        port = self.server.server_address[1]  # type: ignore[index]
        path = self.path
        if path == "/audio.wav":
            self._send(200, AUDIO)
        elif path == "/hop":
            self._redirect(f"http://media.test:{port}/audio.wav")
        elif path == "/to-internal":
            self._redirect(f"http://internal.test:{port}/audio.wav")
        elif path == "/loop":
            self._redirect("/loop")
        elif path == "/missing":
            self._send(404, b"no")
        elif path == "/broken":
            self._send(503, b"later")
        elif path == "/forbidden":
            self._send(403, b"no")
        elif path == "/stream":  # no Content-Length: the size limit must hold while streaming
            self.send_response(200)
            self.send_header("Connection", "close")
            self.end_headers()
            self.close_connection = True
            for _ in range(50):
                self.wfile.write(b"x" * 1024)
        else:
            self._send(404, b"")

    def _send(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _redirect(self, location: str) -> None:
        self.send_response(302)
        self.send_header("Location", location)
        self.send_header("Content-Length", "0")
        self.end_headers()


@pytest.fixture
def server() -> Iterator[int]:
    _Handler.hosts = []
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield int(httpd.server_address[1])
    finally:
        httpd.shutdown()
        httpd.server_close()


async def fake_public_dns(url: str) -> ResolvedUrl:
    """`media.test` and `down.test` pose as public hosts (at 127.0.0.1); the rest is private."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if host not in ("media.test", "down.test"):
        raise ForbiddenUrlError(f"host {host!r} resolves to a non-public address (10.0.0.7)")
    return ResolvedUrl(
        url=url, scheme=parts.scheme, host=host, port=parts.port or 80, addresses=("127.0.0.1",)
    )


def http_source(**overrides: object) -> HttpSource:
    options: dict[str, object] = {
        "max_bytes": 1_000_000,
        "timeout_seconds": 10,
        "connect_timeout_seconds": 5,
        "max_redirects": 3,
        "attempts": 2,
        "resolver": fake_public_dns,
        "retry_backoff_seconds": 0.01,
    }
    options.update(overrides)
    return HttpSource(**options)  # type: ignore[arg-type]


async def fetch_http(uri: str, **overrides: object) -> bytes:
    async with http_source(**overrides).fetch(uri, tenant_id="acme") as audio:
        data = audio.path.read_bytes()
        assert audio.size_bytes == len(data)
        kept = audio.path
    assert not kept.exists(), "the download is deleted after the job"
    return data


async def http_failure(uri: str, **overrides: object) -> JobFailure:
    with pytest.raises(JobFailure) as info:
        await fetch_http(uri, **overrides)
    return info.value


async def test_download_is_pinned_to_the_checked_address_with_the_right_host(server: int) -> None:
    assert await fetch_http(f"http://media.test:{server}/audio.wav") == AUDIO
    assert _Handler.hosts == [f"media.test:{server}"]


async def test_redirects_are_followed_and_rechecked(server: int) -> None:
    assert await fetch_http(f"http://media.test:{server}/hop") == AUDIO
    failure = await http_failure(f"http://media.test:{server}/to-internal")
    assert failure.code == ErrorCode.SOURCE_UNREACHABLE
    assert "non-public" in failure.message
    assert _Handler.hosts.count(f"internal.test:{server}") == 0, "never connected to it"


async def test_a_redirect_loop_is_cut_off(server: int) -> None:
    failure = await http_failure(f"http://media.test:{server}/loop")
    assert failure.code == ErrorCode.SOURCE_UNREACHABLE
    assert "redirects" in failure.message


async def test_private_addresses_are_refused_by_the_real_guard(server: int) -> None:
    for url in (f"http://127.0.0.1:{server}/audio.wav", f"http://localhost:{server}/audio.wav"):
        failure = await http_failure(url, resolver=resolve_public_url)
        assert failure.code == ErrorCode.SOURCE_UNREACHABLE
    assert _Handler.hosts == []


@pytest.mark.parametrize(
    ("path", "code", "retryable"),
    [
        ("/missing", ErrorCode.SOURCE_NOT_FOUND, False),
        ("/forbidden", ErrorCode.SOURCE_UNREACHABLE, False),
        ("/broken", ErrorCode.SOURCE_UNREACHABLE, True),
    ],
)
async def test_http_errors_map_to_stable_codes(
    server: int, path: str, code: ErrorCode, retryable: bool
) -> None:
    failure = await http_failure(f"http://media.test:{server}{path}")
    assert (failure.code, failure.retryable) == (code, retryable)


async def test_server_errors_are_retried_before_giving_up(server: int) -> None:
    await http_failure(f"http://media.test:{server}/broken", attempts=3)
    assert len(_Handler.hosts) == 3


async def test_size_limit_holds_with_and_without_content_length(server: int) -> None:
    failure = await http_failure(f"http://media.test:{server}/audio.wav", max_bytes=1000)
    assert failure.code == ErrorCode.FILE_TOO_LARGE
    failure = await http_failure(f"http://media.test:{server}/stream", max_bytes=10_000)
    assert failure.code == ErrorCode.FILE_TOO_LARGE


async def test_connection_refused_is_source_unreachable() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, never listening: connections are refused
        failure = await http_failure(f"http://down.test:{port}/audio.wav")
    assert failure.code == ErrorCode.SOURCE_UNREACHABLE


async def test_other_schemes_are_refused(media: Path) -> None:
    source = UriSource(FileSource(media.parent), http_source())
    with pytest.raises(JobFailure) as info:
        async with source.fetch("s3://bucket/key.wav", tenant_id="acme"):
            pass
    assert info.value.code == ErrorCode.SOURCE_UNREACHABLE
    async with source.fetch((media / "ab" / "job.wav").as_uri(), tenant_id="acme") as audio:
        assert audio.size_bytes == len(AUDIO)
