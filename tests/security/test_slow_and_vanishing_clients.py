"""Over real sockets: clients that vanish, stall or crawl mid-upload cost one log line and
their own request, never a traceback, a slot held forever, a file left behind, or the
answers other clients get."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import structlog
from fastapi import FastAPI

from ingest.deps import container_of
from ingest.limits import UploadSlots
from scribe_runtime.logging import configure_logging
from services.ingest.tests import samples
from tests.security.support import KEYS, auth, files_under, running_app, serving
from tests.support.waiting import eventually_async

pytestmark = pytest.mark.integration

LIMIT = 8
BOUNDARY = "hostile-client"
BURST = 1_100_000  # over the media store's 1 MiB flush: a temp file exists on disk
IDLE_SECONDS = 1.5
MIN_RATE = 2_000_000  # bytes/s: the burst alone falls under it once the grace is over


@dataclass
class Server:
    app: FastAPI
    port: int
    media_root: Path

    @property
    def slots(self) -> UploadSlots:
        return container_of(self.app).slots

    def leftovers(self) -> list[Path]:
        return [p for p in files_under(self.media_root) if ".idempotency" not in p.parts]


@pytest.fixture
async def server(amqp_url: str, tmp_path: Path) -> AsyncIterator[Server]:
    media_root = tmp_path / "media"
    async with (
        running_app(
            amqp_url,
            "postgresql://scribe_reader@127.0.0.1:1/unused",
            media_root,
            max_concurrent_uploads_per_tenant=LIMIT,
            upload_idle_timeout_seconds=IDLE_SECONDS,
            upload_min_bytes_per_second=MIN_RATE,
            upload_rate_grace_seconds=1.0,
        ) as app,
        serving(app) as port,
    ):
        yield Server(app, port, media_root)


async def until(condition: Callable[[], bool], what: str, within: float = 20) -> None:
    async def check() -> bool:
        return condition()

    await eventually_async(check, within=within, interval=0.05, what=what)


async def start_upload(
    port: int, tenant: str, body_size: int = 6_000_000
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Headers and the first `BURST` bytes of a multipart body; the rest is up to the test."""
    head = (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\n'
        "Content-Type: audio/wav\r\n\r\n"
    ).encode()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        (
            f"POST /v1/transcriptions HTTP/1.1\r\nHost: ingest\r\n"
            f"Authorization: Bearer {KEYS[tenant]}\r\n"
            f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n"
            f"Content-Length: {body_size}\r\n\r\n"
        ).encode()
        + head
        + bytes(BURST)
    )
    await writer.drain()
    return reader, writer


async def trickle(writer: asyncio.StreamWriter, every: float, size: int) -> None:
    """Keep the body coming, `size` bytes every `every` seconds, until the server hangs up."""
    with contextlib.suppress(ConnectionError):
        while True:
            await asyncio.sleep(every)
            writer.write(bytes(size))
            await writer.drain()


async def answer(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """The status and body of the server's answer (it closes the connection after it)."""
    raw = await asyncio.wait_for(reader.read(), timeout=30)
    status_line, _, rest = raw.partition(b"\r\n")
    return int(status_line.split()[1]), rest.partition(b"\r\n\r\n")[2]


class HealthPoller:
    """Polls `/healthz` while a test runs: every answer must come, and be 200."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.statuses: list[int] = []
        self._task: asyncio.Task[None] | None = None

    async def _poll(self) -> None:
        async with httpx.AsyncClient(timeout=10) as http:
            while True:
                response = await http.get(f"http://127.0.0.1:{self.port}/healthz")
                self.statuses.append(response.status_code)
                await asyncio.sleep(0.05)

    def __enter__(self) -> HealthPoller:
        self._task = asyncio.create_task(self._poll())
        return self

    def __exit__(self, *_: object) -> None:
        assert self._task is not None
        self._task.cancel()


@contextlib.contextmanager
def console_logs() -> Iterator[None]:
    """Ingest's logs as `scribe up` renders them (console format), to the captured stderr."""
    configure_logging("ingest", "INFO", "console")
    try:
        yield
    finally:
        structlog.reset_defaults()
        logging.getLogger().handlers.clear()


async def test_clients_that_disconnect_mid_upload_cost_one_info_line_each(
    server: Server, capsys: pytest.CaptureFixture[str]
) -> None:
    n = LIMIT
    with console_logs(), HealthPoller(server.port) as health:
        uploads = [await start_upload(server.port, "acme") for _ in range(n)]
        await until(lambda: server.slots.in_flight("acme") == n, "every upload to start")
        await until(lambda: len(server.leftovers()) == n, "bytes to reach the temp files")
        for _, writer in uploads:
            writer.close()  # part of the body sent, then gone
        await until(lambda: server.slots.in_flight("acme") == 0, "the slots to be given back")
        await until(lambda: server.leftovers() == [], "the partial files to be removed")

        async with httpx.AsyncClient(timeout=30) as http:
            other = await http.post(
                f"http://127.0.0.1:{server.port}/v1/transcriptions",
                files={"file": ("a.wav", samples.wav_bytes(1.0), "audio/wav")},
                headers=auth("globex"),
            )
        assert other.status_code == 202, other.text

    output = capsys.readouterr()
    logged = output.out + output.err
    print(f"{n} disconnects, {len(health.statuses)} /healthz answers meanwhile")
    assert health.statuses
    assert set(health.statuses) == {200}
    assert logged.count("upload_abandoned") == n
    assert "Traceback" not in logged
    assert "ClientDisconnect" not in logged
    assert "request_failed" not in logged
    for key in KEYS.values():
        assert key not in logged


async def test_stalled_and_crawling_uploads_get_408_and_free_their_slots(server: Server) -> None:
    stalled = [await start_upload(server.port, "acme") for _ in range(LIMIT // 2)]
    crawling = [await start_upload(server.port, "acme") for _ in range(LIMIT // 2)]
    # A byte now and then keeps each one under the idle timeout, not over the minimum rate.
    trickles = [asyncio.create_task(trickle(w, every=0.3, size=1)) for _, w in crawling]
    await until(lambda: server.slots.in_flight("acme") == LIMIT, "every upload to start")
    url = f"http://127.0.0.1:{server.port}/v1/transcriptions"
    files = {"file": ("a.wav", samples.wav_bytes(1.0), "audio/wav")}
    async with httpx.AsyncClient(timeout=30) as http:
        busy = await http.post(url, files=files, headers=auth("acme"))
        assert busy.status_code == 429  # the slow ones hold every slot ...

        answers = [await answer(reader) for reader, _ in (*stalled, *crawling)]
        for trickling in trickles:
            trickling.cancel()
        for status, body in answers:
            assert status == 408, body
            assert b'"code":"upload_too_slow"' in body
        # ... until they are refused: then nothing of them is left, and the tenant uploads.
        await until(lambda: server.slots.in_flight("acme") == 0, "the slots to be freed")
        await until(lambda: server.leftovers() == [], "the partial files to be removed")
        again = await http.post(url, files=files, headers=auth("acme"))
        assert again.status_code == 202, again.text
