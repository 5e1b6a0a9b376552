"""The HTTP server around the app: uvicorn, with limits on what a connection may cost.

uvicorn 0.54 with httptools (its default) bounds neither the size nor the count of request
headers, nor how long a client may take to send them: a 300 MiB header was buffered whole,
and connections that never finished their headers stayed open for ever (slowloris). h11
has `h11_max_incomplete_event_size`, but no header timeout either, so this is a small
subclass of uvicorn's httptools protocol rather than a switch of parser: it counts the
bytes and headers of each request head as they arrive, answers 431 past the limits and
408 when a head is not complete within the timeout, and closes the connection. The
number of connections is bounded by uvicorn's own `limit_concurrency` (503 beyond it)
and `backlog`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any, ClassVar

import structlog
import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from ingest import metrics
from ingest.settings import IngestSettings

log = structlog.get_logger(__name__)


class CoalescedWrites(asyncio.Transport):
    """A connection's transport whose writes within one turn of the event loop leave as one.

    uvicorn writes a response's status line and headers, then its body: two `send` calls
    for a search answer, each a system call on the server and a wake-up for the client.
    Here a write is held until the loop's turn ends (or `max_pending_bytes` are waiting,
    so a streamed export buffers no more than that), then everything waiting goes out in
    one `write`. Closing sends what is waiting first; aborting drops it.
    """

    max_pending_bytes: ClassVar[int] = 64 * 1024

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__()
        self._transport = transport
        self._loop = loop
        self._pending: list[bytes] = []
        self._pending_bytes = 0
        self._flush_scheduled = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not data:
            return
        self._pending.append(bytes(data))
        self._pending_bytes += len(data)
        if self._pending_bytes >= self.max_pending_bytes:
            self.flush()
        elif not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self._scheduled_flush)

    def writelines(self, list_of_data: Iterable[bytes | bytearray | memoryview]) -> None:
        for data in list_of_data:
            self.write(data)

    def _scheduled_flush(self) -> None:
        self._flush_scheduled = False
        self.flush()

    def flush(self) -> None:
        """Hand what is waiting to the real transport now."""
        if not self._pending:
            return
        data = self._pending[0] if len(self._pending) == 1 else b"".join(self._pending)
        self._pending.clear()
        self._pending_bytes = 0
        if not self._transport.is_closing():
            self._transport.write(data)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def abort(self) -> None:
        self._pending.clear()
        self._pending_bytes = 0
        self._transport.abort()

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._transport.get_extra_info(name, default)

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._transport.set_protocol(protocol)

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._transport.get_protocol()

    def is_reading(self) -> bool:
        return self._transport.is_reading()

    def pause_reading(self) -> None:
        self._transport.pause_reading()

    def resume_reading(self) -> None:
        self._transport.resume_reading()

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self._transport.set_write_buffer_limits(high, low)

    def get_write_buffer_size(self) -> int:
        return self._pending_bytes + self._transport.get_write_buffer_size()

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return self._transport.get_write_buffer_limits()

    def can_write_eof(self) -> bool:
        return self._transport.can_write_eof()

    def write_eof(self) -> None:
        self.flush()
        self._transport.write_eof()


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with bounded request heads (`protocol_for` sets them)."""

    max_head_bytes: ClassVar[int] = 64 * 1024
    max_headers: ClassVar[int] = 100
    head_timeout_seconds: ClassVar[float] = 10.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._in_head = True
        self._head_bytes = 0
        self._header_count = 0
        self._refused = False
        self._head_timer: asyncio.TimerHandle | None = None
        self._message_done = True
        """The request's body has been read to its end (or it had none)."""
        self._next_head_after_body = False
        """The answer went out before the body was read: the next head starts after it."""
        self._drain_timer: asyncio.TimerHandle | None = None

    def _arm_head_timer(self) -> None:
        self._cancel_head_timer()
        self._in_head, self._head_bytes, self._header_count = True, 0, 0
        self._head_timer = self.loop.call_later(self.head_timeout_seconds, self._head_timed_out)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        if self._drain_timer is not None:
            self._drain_timer.cancel()
            self._drain_timer = None

    def _drain_timed_out(self) -> None:
        # The answer went out long ago; whatever the client still sends is for nobody.
        self._drain_timer = None
        if not self.transport.is_closing():
            log.info("connection_closed", reason="body of an answered request still arriving")
            self.transport.close()

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self._in_head and not self.transport.is_closing():
            self._refuse(408, "request_header_timeout", b"request headers not received in time")

    def _refuse(self, status: int, code: str, message: bytes) -> None:
        self._refused = True
        self._cancel_head_timer()
        metrics.REQUESTS_REFUSED.labels(str(status), code).inc()
        log.info("request_refused", status=status, code=code, head_bytes=self._head_bytes)
        reason = {408: b"Request Timeout", 431: b"Request Header Fields Too Large"}[status]
        body = b'{"code":"' + code.encode() + b'","message":"' + message + b'"}'
        self.transport.write(
            b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n"
            b"connection: close\r\n\r\n%s" % (status, reason, len(body), body)
        )
        self.transport.close()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        # Every write of uvicorn's (a response's head and body, a refusal) goes through it.
        super().connection_made(CoalescedWrites(transport, self.loop))
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        in_head = self._in_head
        super().data_received(data)
        # Counted after feeding: only a chunk that did not finish the head counts, so body
        # bytes that arrive with the head's end never do; memory stays at the limit plus
        # one read.
        if in_head and self._in_head and not self._refused:
            self._head_bytes += len(data)
            if self._head_bytes > self.max_head_bytes:
                self._refuse(431, "request_headers_too_large", b"request headers are too large")

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._refused:
            return
        self._header_count += 1
        if self._header_count > self.max_headers:
            self._refuse(431, "too_many_request_headers", b"too many request headers")
            return
        super().on_header(name, value)

    def on_message_begin(self) -> None:
        self._message_done = False
        super().on_message_begin()

    def on_headers_complete(self) -> None:
        if self._refused:
            return
        self._in_head = False
        self._cancel_head_timer()
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        if not self._refused:
            super().on_body(body)

    def on_message_complete(self) -> None:
        self._message_done = True
        if self._refused:
            return
        super().on_message_complete()
        if self._next_head_after_body and not self.transport.is_closing():
            self._next_head_after_body = False
            self._arm_head_timer()

    def on_response_complete(self) -> None:
        # A pipelined request's head is already complete: it must not be timed out.
        pipelined = bool(self.pipeline)
        super().on_response_complete()
        if pipelined or self.transport.is_closing():
            return
        if not self._message_done:
            # Answered before its body was read (a 401, a 429): uvicorn reads the rest and
            # drops it. Those bytes are the body, not the next head: neither counted nor
            # timed as one until the body ends; which it must within three head timeouts
            # (a client dripping a body nobody reads would hold the connection for ever).
            self._next_head_after_body = True
            self._drain_timer = self.loop.call_later(
                3 * self.head_timeout_seconds, self._drain_timed_out
            )
            return
        # The next request's head on this kept-alive connection gets the same bound.
        self._arm_head_timer()


def protocol_for(settings: IngestSettings) -> type[LimitedHttpToolsProtocol]:
    """The protocol class with the configured limits (uvicorn instantiates it per connection)."""
    return type(
        "ConfiguredHttpToolsProtocol",
        (LimitedHttpToolsProtocol,),
        {
            "max_head_bytes": settings.max_header_bytes,
            "max_headers": settings.max_headers,
            "head_timeout_seconds": settings.header_timeout_seconds,
        },
    )


def server_config(app: Any, settings: IngestSettings, **overrides: Any) -> uvicorn.Config:
    """How `scribe-ingest serve` runs uvicorn: its limits, our logging, no access log."""
    options: dict[str, Any] = {
        "host": settings.host,
        "port": settings.port,
        "http": protocol_for(settings),
        "limit_concurrency": settings.max_connections,
        "backlog": settings.backlog,
        "timeout_keep_alive": settings.keep_alive_timeout_seconds,
        "log_config": None,  # our structlog set-up renders uvicorn's lines too
        "access_log": False,
        "proxy_headers": False,
    }
    return uvicorn.Config(app, **{**options, **overrides})
