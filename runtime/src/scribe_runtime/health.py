"""A tiny HTTP endpoint beside a consumer: `/healthz`, `/readyz`, `/metrics`.

Written on `asyncio.start_server` rather than uvicorn: uvicorn's `Server.serve()` installs
its own SIGINT/SIGTERM handlers, which would take graceful shutdown away from the worker
it sits beside, and three GET routes need no framework. `prometheus_client` renders the
metrics.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable, Mapping

import structlog
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest

log = structlog.get_logger(__name__)

Check = Callable[[], Awaitable[bool]]
_REQUEST_LIMIT = 8192
_TIMEOUT = 5.0


class HealthServer:
    """Serves liveness, readiness (named async checks) and Prometheus metrics."""

    def __init__(
        self,
        host: str,
        port: int,
        checks: Mapping[str, Check],
        registry: CollectorRegistry = REGISTRY,
    ) -> None:
        self.host = host
        self.port = port
        self.checks = dict(checks)
        self.registry = registry
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(
            self._handle, self.host, self.port, limit=_REQUEST_LIMIT
        )
        sockets = self._server.sockets or ()
        if sockets:
            self.port = int(sockets[0].getsockname()[1])
        log.info("health_endpoint_listening", host=self.host, port=self.port)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
            self._server = None

    async def readiness(self) -> dict[str, bool]:
        """Run every check (each bounded in time); a check that raises is not ready."""

        async def run(check: Check) -> bool:
            try:
                return await asyncio.wait_for(check(), _TIMEOUT)
            except Exception:
                return False

        results = await asyncio.gather(*(run(c) for c in self.checks.values()))
        return dict(zip(self.checks, results, strict=True))

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request_line = await asyncio.wait_for(reader.readline(), _TIMEOUT)
            while (await asyncio.wait_for(reader.readline(), _TIMEOUT)) not in (
                b"\r\n",
                b"\n",
                b"",
            ):
                pass  # headers are not needed
            parts = request_line.decode("latin-1").split()
            method, path = (parts[0], parts[1].split("?", 1)[0]) if len(parts) >= 2 else ("", "")
            status, content_type, body = await self._route(method, path)
        except (TimeoutError, ValueError, asyncio.LimitOverrunError):
            status, content_type, body = 400, "text/plain", b"bad request\n"
        try:
            writer.write(
                f"HTTP/1.1 {status} {_REASONS.get(status, 'OK')}\r\n"
                f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
                "Connection: close\r\n\r\n".encode("latin-1")
                + (body if method != "HEAD" else b"")
            )
            await writer.drain()
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _route(self, method: str, path: str) -> tuple[int, str, bytes]:
        if method not in {"GET", "HEAD"}:
            return 405, "text/plain", b"method not allowed\n"
        if path == "/healthz":
            return 200, "application/json", b'{"status":"ok"}'
        if path == "/readyz":
            checks = await self.readiness()
            ready = all(checks.values())
            body = json.dumps({"status": "ready" if ready else "not_ready", "checks": checks})
            return (200 if ready else 503), "application/json", body.encode()
        if path == "/metrics":
            return 200, CONTENT_TYPE_LATEST, generate_latest(self.registry)
        return 404, "text/plain", b"not found\n"


_REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    503: "Service Unavailable",
}
