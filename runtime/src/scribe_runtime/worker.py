"""The shell every consuming worker runs in: name, health endpoint, signals, graceful stop.

A worker's `main.py` builds its broker (subscribers and publishers wired to its
application service) and hands it to `Worker.run`, which:

1. serves `/healthz`, `/readyz` (broker connected, plus the worker's own checks) and
   `/metrics` when a health port is set (a port in use is logged, never fatal);
2. starts the broker and logs `<name>_ready`;
3. waits for SIGTERM/SIGINT (or the `stop` event a caller passes);
4. logs `<name>_stopping` and stops the broker: it stops taking messages, waits up to its
   `graceful_timeout` for those in hand, then closes, so anything unacked goes back to the
   queue (redelivered to another worker, never lost);
5. runs the worker's `after_stop` hook (hand back work still running), stops the health
   endpoint, and logs `<name>_stopped`.

`<name>` is the service without its `scribe-` prefix (`transcriber_ready`).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Awaitable, Callable, Mapping
from importlib.metadata import PackageNotFoundError, version

import structlog
from faststream.rabbit import RabbitBroker

from scribe_runtime.health import Check, HealthServer

log = structlog.get_logger(__name__)

Fields = Mapping[str, object]


def producer_name(service: str) -> str:
    """`<service>/<version>`: the `producer` of every event a service publishes.

    The version is the installed distribution's of the same name (`scribe-transcriber`).
    """
    try:
        return f"{service}/{version(service)}"
    except PackageNotFoundError:
        return f"{service}/0+unknown"


def stop_on_signals() -> asyncio.Event:
    """An event SIGTERM and SIGINT set (on the running loop), for a graceful stop."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):  # not on Windows' loop
            loop.add_signal_handler(sig, stop.set)
    return stop


class Worker:
    """One consuming process: its broker, its health endpoint, its lifecycle log lines."""

    def __init__(
        self,
        service: str,
        broker: RabbitBroker,
        *,
        health_host: str = "127.0.0.1",
        health_port: int | None = None,
        checks: Mapping[str, Check] | None = None,
    ) -> None:
        self.service = service
        name = service.removeprefix("scribe-")
        self._events = (f"{name}_ready", f"{name}_stopping", f"{name}_stopped")
        self.broker = broker
        self._health_host = health_host
        self._health_port = health_port
        self._checks = dict(checks or {})

    async def run(
        self,
        stop: asyncio.Event | None = None,
        *,
        ready: Fields | None = None,
        stopping: Callable[[], Fields] | None = None,
        after_stop: Callable[[], Awaitable[Fields]] | None = None,
        started: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        """Consume until `stop` is set (SIGTERM/SIGINT set it when not given), then stop.

        `ready` goes on the `<name>_ready` line, `stopping()` on `<name>_stopping`;
        `started` runs once the broker is started (its publishers usable);
        `after_stop` runs once the broker is closed, even after an error, and what it
        returns goes on the `<name>_stopped` line.
        """
        stop = stop or stop_on_signals()
        ready_event, stopping_event, stopped_event = self._events
        health = await self._start_health()
        stopped: Fields = {}
        try:
            async with self.broker:
                await self.broker.start()
                if started is not None:
                    await started()
                log.info(ready_event, **(ready or {}))
                await stop.wait()
                log.info(stopping_event, **(stopping() if stopping else {}))
                await self.broker.stop()
        finally:
            try:
                if after_stop is not None:
                    stopped = await after_stop()
            finally:
                if health is not None:
                    await health.stop()
        log.info(stopped_event, **stopped)

    async def _start_health(self) -> HealthServer | None:
        if self._health_port is None:
            return None
        broker = self.broker

        async def broker_connected() -> bool:
            return bool(await broker.ping(timeout=2.0))

        server = HealthServer(
            self._health_host, self._health_port, {"broker": broker_connected, **self._checks}
        )
        try:
            await server.start()
        except OSError as exc:  # a port in use must not stop the worker
            log.warning("health_endpoint_unavailable", port=self._health_port, error=str(exc))
            return None
        return server
