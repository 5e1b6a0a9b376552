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

    async def drip() -> None:
        with contextlib.suppress(ConnectionError):
            while True:
                writer.write(b"X")
                await writer.drain()
                await asyncio.sleep(0.5)

    dripping = asyncio.create_task(drip())
    try:
        assert await status_of(reader) in {408, None}
    finally:
        dripping.cancel()
        writer.close()
