"""`ingest.server.CoalescedWrites`: a response leaves in one write, nothing is lost or held."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import uvicorn

from ingest.app import build_read_app
from ingest.server import CoalescedWrites, server_config
from ingest.settings import IngestSettings


class RecordingTransport(asyncio.Transport):
    """What reached the socket, write by write."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.closed = False
        self.aborted = False

    def write(self, data: Any) -> None:
        self.writes.append(bytes(data))

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.aborted = True

    def is_closing(self) -> bool:
        return self.closed or self.aborted

    def get_write_buffer_size(self) -> int:
        return 0


async def test_writes_of_one_loop_turn_leave_as_one() -> None:
    real = RecordingTransport()
    transport = CoalescedWrites(real, asyncio.get_running_loop())
    transport.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n")
    transport.write(b"{}")
    assert real.writes == []
    assert transport.get_write_buffer_size() == 40
    await asyncio.sleep(0)
    assert real.writes == [b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}"]
    transport.write(b"next")
    await asyncio.sleep(0)
    assert real.writes[1:] == [b"next"]


async def test_close_sends_what_is_waiting_first_and_abort_drops_it() -> None:
    real = RecordingTransport()
    transport = CoalescedWrites(real, asyncio.get_running_loop())
    transport.write(b"HTTP/1.1 408 Request Timeout\r\n\r\n")
    transport.close()
    assert real.writes == [b"HTTP/1.1 408 Request Timeout\r\n\r\n"]
    assert real.closed
    await asyncio.sleep(0)
    assert len(real.writes) == 1

    aborted = RecordingTransport()
    transport = CoalescedWrites(aborted, asyncio.get_running_loop())
    transport.write(b"partial")
    transport.abort()
    await asyncio.sleep(0)
    assert aborted.writes == []
    assert aborted.aborted


async def test_a_streamed_body_is_never_held_past_the_bound() -> None:
    real = RecordingTransport()
    transport = CoalescedWrites(real, asyncio.get_running_loop())
    chunk = b"x" * (CoalescedWrites.max_pending_bytes // 4)
    for _ in range(10):
        transport.write(chunk)
        assert transport.get_write_buffer_size() < CoalescedWrites.max_pending_bytes
    await asyncio.sleep(0)
    assert b"".join(real.writes) == chunk * 10


async def test_answers_over_a_kept_alive_connection_arrive_whole() -> None:
    """Through uvicorn as `scribe-ingest serve` runs it: each answer is complete, in order,
    on one connection, including a large one (the OpenAPI document)."""
    settings = IngestSettings()
    port = free_port()
    server = uvicorn.Server(
        server_config(build_read_app(lambda: _no_services()), settings, port=port, lifespan="off")
    )
    task = asyncio.create_task(server.serve())
    try:
        for _ in range(500):  # uvicorn offers no event to wait on
            if server.started:
                break
            await asyncio.sleep(0.02)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        for path in ("/openapi.json", "/nowhere", "/openapi.json"):
            writer.write(f"GET {path} HTTP/1.1\r\nHost: ingest\r\n\r\n".encode())
            await writer.drain()
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=10)
            length = next(
                int(line.split(b":")[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            )
            body = await asyncio.wait_for(reader.readexactly(length), timeout=10)
            if path == "/openapi.json":
                assert head.startswith(b"HTTP/1.1 200"), head
                assert length > CoalescedWrites.max_pending_bytes // 4
                assert body.startswith(b"{")
                assert body.endswith(b"}")
            else:
                assert head.startswith(b"HTTP/1.1 404"), head
                assert b'"code":"not_found"' in body
        writer.close()
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, timeout=10)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _no_services() -> Any:
    raise AssertionError("lifespan is off: the read routes are not called here")
