"""Over real sockets, against uvicorn configured as `scribe-ingest serve` configures it: a
huge or crowded request head is refused with 431 without being buffered, and clients that
send their headers a byte at a time (slowloris) are cut off, while `/healthz` answers."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import uvicorn

from ingest.server import server_config
from ingest.settings import IngestSettings
from tests.security.support import running_app
from tests.support.ports import free_port
from tests.support.waiting import eventually_async

pytestmark = pytest.mark.integration

LIMITS = IngestSettings(max_header_bytes=32 * 1024, max_headers=50, header_timeout_seconds=2.0)


@pytest.fixture
async def port(amqp_url: str, tmp_path: Path) -> AsyncIterator[int]:
    async with running_app(
        amqp_url, "postgresql://scribe_reader@127.0.0.1:1/unused", tmp_path / "media"
    ) as app:
        chosen = free_port()
        server = uvicorn.Server(server_config(app, LIMITS, port=chosen, lifespan="off"))
        task = asyncio.create_task(server.serve())

        async def started() -> bool:
            return server.started

        await eventually_async(started, within=10, interval=0.05, what="uvicorn to start")
        try:
            yield chosen
        finally:
            server.should_exit = True
            await asyncio.wait_for(task, timeout=15)


def rss_bytes() -> int:
    """This process's resident memory (the server runs in it)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS in /proc/self/status")


async def drip(writer: asyncio.StreamWriter) -> None:
    """A byte every half second, until the server hangs up."""
    with contextlib.suppress(ConnectionError):
        while True:
            writer.write(b"X")
            await writer.drain()
            await asyncio.sleep(0.5)


async def status_of(reader: asyncio.StreamReader) -> int | None:
    """The status of the answer, or None when the server closed (or reset) without one."""
    try:
        raw = await asyncio.wait_for(reader.read(), timeout=30)
    except ConnectionError:
        # Closing with unread bytes makes the kernel reset: the 431 may be lost with it.
        return None
    return int(raw.split()[1]) if raw else None


async def test_a_huge_header_is_431_and_never_buffered(port: int) -> None:
    before = rss_bytes()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: ingest\r\nX-Big: ")
    sent = 0
    with contextlib.suppress(ConnectionError):
        while sent < 64 * 1024 * 1024:  # 64 MiB of one header value
            writer.write(b"a" * 1024 * 1024)
            await writer.drain()
            sent += 1024 * 1024
    status = await status_of(reader)
    writer.close()
    grown = rss_bytes() - before
    mib = 2**20
    print(f"sent {sent / mib:.0f} MiB of header before the hang-up; RSS +{grown / mib:.1f} MiB")
    assert status in {431, None}
    assert sent < 64 * 1024 * 1024
    assert grown < 8 * 1024 * 1024


async def test_too_many_headers_are_431(port: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    headers = b"".join(b"X-H%d: v\r\n" % i for i in range(LIMITS.max_headers + 1))
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: ingest\r\n" + headers + b"\r\n")
    await writer.drain()
    assert await status_of(reader) == 431
    writer.close()
    async with httpx.AsyncClient() as http:  # a head within the limits is served
        fine = {f"X-H{i}": "v" for i in range(LIMITS.max_headers - 5)}
        response = await http.get(f"http://127.0.0.1:{port}/healthz", headers=fine)
        assert response.status_code == 200


async def test_clients_that_send_headers_slowly_are_cut_off(port: int) -> None:
    n = 100

    async def slowloris() -> float:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        started = time.monotonic()
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: ingest\r\n")

        async def drip() -> None:
            with contextlib.suppress(ConnectionError):
                while True:
                    writer.write(b"X")  # one more byte of a header that never ends
                    await writer.drain()
                    await asyncio.sleep(0.5)

        dripping = asyncio.create_task(drip())
        try:
            status = await status_of(reader)
        finally:
            dripping.cancel()
            writer.close()
        assert status in {408, None}
        return time.monotonic() - started

    healthz: list[int] = []

    async def poll() -> None:
        async with httpx.AsyncClient(timeout=10) as http:
            while True:
                healthz.append((await http.get(f"http://127.0.0.1:{port}/healthz")).status_code)
                await asyncio.sleep(0.1)

    polling = asyncio.create_task(poll())
    try:
        held = await asyncio.gather(*(slowloris() for _ in range(n)))
    finally:
        polling.cancel()
    print(
        f"{n} slow-header connections closed after {min(held):.1f}-{max(held):.1f} s "
        f"(timeout {LIMITS.header_timeout_seconds} s); /healthz answered {len(healthz)} times"
    )
    assert healthz
    assert set(healthz) == {200}


async def test_a_slow_second_head_on_a_kept_alive_connection_is_cut_off_too(port: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: ingest\r\n\r\n")
    await writer.drain()
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=10)
    assert head.startswith(b"HTTP/1.1 200")
    length = int(
        next(
            v
            for k, _, v in (h.partition(b": ") for h in head.split(b"\r\n"))
            if k.lower() == b"content-length"
        )
    )
    await reader.readexactly(length)

    writer.write(b"GET /healthz HTTP/1.1\r\nHost: ingest\r\n")

    dripping = asyncio.create_task(drip(writer))
    try:
        assert await status_of(reader) in {408, None}
    finally:
        dripping.cancel()
        writer.close()


async def read_answer(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """One whole answer (status, body) from a kept-alive connection."""
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=10)
    fields = dict(h.partition(b": ")[::2] for h in head.split(b"\r\n")[1:] if h)
    length = int(next(v for k, v in fields.items() if k.lower() == b"content-length"))
    return int(head.split()[1]), await reader.readexactly(length)


async def test_a_body_still_arriving_after_an_early_answer_is_not_taken_for_headers(
    port: int,
) -> None:
    """An upload refused before its body is read (401 here; 429 `too_many_uploads` under
    load) keeps sending the body; uvicorn reads and drops it. Before: those bytes were
    counted as the next request's head, so past 32 KiB (or after 2 s) came an unasked-for
    431 (408) and a close, and clients saw the connection reset instead of the 401/429."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    size = 1024 * 1024
    writer.write(
        b"POST /v1/transcriptions HTTP/1.1\r\nHost: ingest\r\nAuthorization: Bearer wrong\r\n"
        b"Content-Type: multipart/form-data; boundary=zz\r\n"
        b"Content-Length: %d\r\n\r\n" % size
    )
    await writer.drain()
    status, _ = await read_answer(reader)
    assert status == 401
    chunk = size // 8
    for _ in range(8):  # 1 MiB over ~3 s: past the head's size limit and its timeout
        writer.write(b"z" * chunk)
        await writer.drain()
        await asyncio.sleep(0.4)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: ingest\r\n\r\n")
    await writer.drain()
    status, body = await read_answer(reader)
    writer.close()
    assert status == 200, body


async def test_a_body_dripping_after_its_answer_is_cut_off(port: int) -> None:
    """Nobody reads that body: it gets three head timeouts (6 s here) to end, not for ever."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        b"POST /v1/transcriptions HTTP/1.1\r\nHost: ingest\r\nAuthorization: Bearer wrong\r\n"
        b"Content-Type: multipart/form-data; boundary=zz\r\nContent-Length: 1000000\r\n\r\n"
    )
    await writer.drain()
    status, _ = await read_answer(reader)
    assert status == 401
    started = time.monotonic()

    dripping = asyncio.create_task(drip(writer))
    try:
        with contextlib.suppress(ConnectionError):
            assert await asyncio.wait_for(reader.read(), timeout=30) == b""
    finally:
        dripping.cancel()
        writer.close()
    assert 5 < time.monotonic() - started < 20
