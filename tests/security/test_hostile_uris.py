"""Hostile audio URIs in events, each with its expected outcome, through the transcriber's
real sources: file:// confined to the event's tenant's own directory under the media root
(another tenant's stored file is as forbidden as /etc/passwd), http(s):// checked by the
real SSRF guard
(only `media.test` poses as a public host, at a local server, to test redirects)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from contracts.errors import ErrorCode
from scribe_runtime.netguard import ResolvedUrl, parse_remote_url, resolve_public_url
from tests.security.support import files_under
from transcriber.errors import JobFailure
from transcriber.sources import FileSource, HttpSource, UriSource

AUDIO = b"RIFF" + bytes(range(256)) * 16
UNREACHABLE = ErrorCode.SOURCE_UNREACHABLE
FORBIDDEN = ErrorCode.SOURCE_FORBIDDEN


class _Handler(BaseHTTPRequestHandler):
    paths: list[str] = []

    def log_message(self, *_args: object) -> None:
        pass

    def do_GET(self) -> None:
        self.paths.append(self.path)
        port = self.server.server_address[1]  # type: ignore[index]
        targets = {
            "/to-metadata": "http://169.254.169.254/latest/meta-data/iam/",
            "/to-loopback": f"http://127.0.0.1:{port}/audio.wav",
            "/to-private": "http://10.1.2.3/audio.wav",
            "/to-ipv6-loopback": f"http://[::1]:{port}/audio.wav",
            "/to-file": "file:///etc/passwd",
            "/to-gopher": "gopher://127.0.0.1:6379/_FLUSHALL",
        }
        if self.path in targets:
            self.send_response(302)
            self.send_header("Location", targets[self.path])
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif self.path == "/huge":
            self.send_response(200)
            self.send_header("Content-Length", str(10**12))
            self.end_headers()
        else:
            self.send_response(200)
            self.send_header("Content-Length", str(len(AUDIO)))
            self.end_headers()
            self.wfile.write(AUDIO)


@pytest.fixture
def port() -> Iterator[int]:
    _Handler.paths = []
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield int(httpd.server_address[1])
    finally:
        httpd.shutdown()
        httpd.server_close()


async def resolver(url: str) -> ResolvedUrl:
    """The real guard, except `media.test`: a 'public' host that is our local server."""
    parse_remote_url(url)  # the real scheme / credentials / host checks, for every URL
    parts = urlsplit(url)
    if parts.hostname == "media.test":
        return ResolvedUrl(url, parts.scheme, "media.test", parts.port or 80, ("127.0.0.1",))
    return await resolve_public_url(url)


@dataclass
class Sandbox:
    root: Path
    media: Path
    downloads: Path
    source: UriSource


@pytest.fixture
def sandbox(tmp_path: Path) -> Sandbox:
    media = tmp_path / "media"
    (media / "acme" / "ab").mkdir(parents=True)
    (media / "acme" / "ab" / "job.wav").write_bytes(AUDIO)
    (tmp_path / "secret.txt").write_text("outside the media root")
    (tmp_path / "media-evil").mkdir()
    (tmp_path / "media-evil" / "x.wav").write_bytes(AUDIO)
    (media / "acme" / "escape.wav").symlink_to(tmp_path / "secret.txt")
    (media / "acme" / "etc").symlink_to("/etc")
    # Another tenant's upload, where ingest stores it: by content address.
    (media / "globex" / "cd").mkdir(parents=True)
    (media / "globex" / "cd" / "cd01").write_bytes(AUDIO)
    (media / "acme" / "theirs.wav").symlink_to(media / "globex" / "cd" / "cd01")
    downloads = tmp_path / "downloads"
    http = HttpSource(
        max_bytes=1_000_000,
        timeout_seconds=10,
        connect_timeout_seconds=2,
        max_redirects=3,
        attempts=1,
        download_dir=downloads,
        resolver=resolver,
    )
    return Sandbox(tmp_path, media, downloads, UriSource(FileSource(media), http))


# (name, URI template: {m} = media root, {p} = local server port, expected code)
CORPUS: list[tuple[str, str, ErrorCode]] = [
    ("dotdot", "file://{m}/acme/../../secret.txt", FORBIDDEN),
    ("encoded-dotdot", "file://{m}/acme/%2e%2e/%2E%2E/secret.txt", FORBIDDEN),
    ("absolute-escape", "file:///etc/passwd", FORBIDDEN),
    ("sibling-with-same-prefix", "file://{m}-evil/x.wav", FORBIDDEN),
    ("symlinked-file-out", "file://{m}/acme/escape.wav", FORBIDDEN),
    ("symlinked-dir-out", "file://{m}/acme/etc/passwd", FORBIDDEN),
    ("other-tenants-file", "file://{m}/globex/cd/cd01", FORBIDDEN),
    ("other-tenants-missing-file", "file://{m}/globex/cd/gone", FORBIDDEN),
    ("symlink-to-other-tenant", "file://{m}/acme/theirs.wav", FORBIDDEN),
    ("media-root-itself", "file://{m}/stray.wav", FORBIDDEN),
    ("remote-file-host", "file://fileserver{m}/acme/ab/job.wav", UNREACHABLE),
    ("nul-byte", "file://{m}/acme/ab/job.wav%00.txt", UNREACHABLE),
    ("relative-file", "file:secret.txt", UNREACHABLE),
    ("proc-self", "file:///proc/self/environ", FORBIDDEN),
    ("loopback", "http://127.0.0.1:{p}/audio.wav", UNREACHABLE),
    ("localhost-name", "http://localhost:{p}/audio.wav", UNREACHABLE),
    ("ipv6-loopback", "http://[::1]:{p}/audio.wav", UNREACHABLE),
    ("ipv4-mapped-ipv6", "http://[::ffff:127.0.0.1]:{p}/audio.wav", UNREACHABLE),
    ("decimal-ip", "http://2130706433:{p}/audio.wav", UNREACHABLE),
    ("unspecified", "http://0.0.0.0:{p}/audio.wav", UNREACHABLE),
    ("private-10", "http://10.0.0.1/audio.wav", UNREACHABLE),
    ("private-192", "https://192.168.1.1/audio.wav", UNREACHABLE),
    ("cloud-metadata", "http://169.254.169.254/latest/meta-data/", UNREACHABLE),
    ("credentials", "http://user:pass@media.test:{p}/audio.wav", UNREACHABLE),
    ("ftp", "ftp://media.test/audio.wav", UNREACHABLE),
    ("gopher", "gopher://127.0.0.1:6379/_FLUSHALL", UNREACHABLE),
    ("data-uri", "data:audio/wav;base64,UklGRg==", UNREACHABLE),
    ("redirect-to-metadata", "http://media.test:{p}/to-metadata", UNREACHABLE),
    ("redirect-to-loopback", "http://media.test:{p}/to-loopback", UNREACHABLE),
    ("redirect-to-private", "http://media.test:{p}/to-private", UNREACHABLE),
    ("redirect-to-ipv6-loopback", "http://media.test:{p}/to-ipv6-loopback", UNREACHABLE),
    ("redirect-to-file", "http://media.test:{p}/to-file", UNREACHABLE),
    ("redirect-to-gopher", "http://media.test:{p}/to-gopher", UNREACHABLE),
    ("declared-terabyte", "http://media.test:{p}/huge", ErrorCode.FILE_TOO_LARGE),
]


def test_the_corpus_is_big_enough() -> None:
    assert len(CORPUS) >= 10


@pytest.mark.parametrize(("name", "template", "code"), CORPUS, ids=[c[0] for c in CORPUS])
async def test_hostile_uri(
    sandbox: Sandbox, port: int, name: str, template: str, code: ErrorCode
) -> None:
    uri = template.format(m=sandbox.media, p=port)
    with pytest.raises(JobFailure) as failure:
        async with sandbox.source.fetch(uri, tenant_id="acme"):
            pass
    assert failure.value.code == code, failure.value.message
    # The local server saw at most the first (public-looking) request, never a redirect's
    # internal target, and nothing was downloaded or left behind.
    assert all(not p.endswith("/audio.wav") for p in _Handler.paths), _Handler.paths
    assert not sandbox.downloads.exists() or files_under(sandbox.downloads) == []


async def test_the_same_server_is_reachable_through_a_public_name(
    sandbox: Sandbox, port: int
) -> None:
    """The control: the corpus fails because of the guard, not because the server is down."""
    async with sandbox.source.fetch(
        f"http://media.test:{port}/audio.wav", tenant_id="acme"
    ) as audio:
        assert audio.path.read_bytes() == AUDIO
    job = sandbox.media / "acme" / "ab" / "job.wav"
    async with sandbox.source.fetch(job.as_uri(), tenant_id="acme") as a:
        assert a.path.read_bytes() == AUDIO
    # globex reads its own file: the cross-tenant cases fail for the tenant, not the file.
    theirs = sandbox.media / "globex" / "cd" / "cd01"
    async with sandbox.source.fetch(theirs.as_uri(), tenant_id="globex") as a:
        assert a.path.read_bytes() == AUDIO


async def test_forbidden_file_uris_do_not_say_whether_the_path_exists(sandbox: Sandbox) -> None:
    """Probing outside one's own area learns nothing: existing and missing read alike."""
    answers = set()
    for path in (
        "/etc/passwd",
        "/etc/does-not-exist",
        f"{sandbox.root}/secret.txt",
        f"{sandbox.root}/no-secret.txt",
        f"{sandbox.media}/globex/cd/cd01",
        f"{sandbox.media}/globex/cd/missing",
    ):
        with pytest.raises(JobFailure) as failure:
            async with sandbox.source.fetch(f"file://{path}", tenant_id="acme"):
                pass
        answers.add((failure.value.code, failure.value.message, failure.value.retryable))
    assert len(answers) == 1, answers
