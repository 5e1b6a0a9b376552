"""Spare TCP ports for the processes the tests start.

Ports come from below the kernel's ephemeral range (`ip_local_port_range`, 32768-60999 by
default), never from it. A port the OS hands out for `bind(("127.0.0.1", 0))` is one it
also gives, a moment later, as the source port of any outgoing connection: with the suite
running in parallel, a stack's health port was taken that way between being chosen and
being bound (`address already in use`; the indexer then never reported ready). Below the
range no outgoing connection can take it. Each pytest-xdist worker draws from its own slice,
so two workers never hand out the same port.
"""

from __future__ import annotations

import os
import random
import socket
from pathlib import Path
from typing import Final

LOWEST: Final = 20000
"""Where the tests' ports start: above the well-known services that listen on a CI host."""

SLICES: Final = 8
"""How many workers' slices the span is cut into (the suite runs at most 4 workers)."""

_handed_out: set[int] = set()


def ephemeral_start(path: Path = Path("/proc/sys/net/ipv4/ip_local_port_range")) -> int:
    """The lowest port the kernel picks for outgoing connections (32768 when unreadable)."""
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def worker_slice(worker: str | None = None, ephemeral: int | None = None) -> range:
    """This process's ports: one slice of [LOWEST, ephemeral start) per xdist worker."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "") if worker is None else worker
    index = int(worker[2:]) % SLICES if worker.startswith("gw") and worker[2:].isdigit() else 0
    top = ephemeral_start() if ephemeral is None else ephemeral
    span = (top - LOWEST) // SLICES
    return range(LOWEST + index * span, LOWEST + (index + 1) * span)


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port() -> int:
    """A port nothing listens on now, not handed out before by this process, and outside
    the range the kernel gives outgoing connections.

    Two servers started together (a cluster's nodes, a stack's health ports, all chosen
    before any binds) never get the same one. The slice is walked from a random place, so
    that a server left over from an earlier run is stepped over rather than met first.
    """
    ports = worker_slice()
    if len(ports) < 64:  # a kernel whose ephemeral range starts low: let it choose
        return _os_port()
    start = random.randrange(len(ports))
    for offset in range(len(ports)):
        port = ports[(start + offset) % len(ports)]
        if port not in _handed_out and _bindable(port):
            _handed_out.add(port)
            return port
    raise RuntimeError(f"no free port left in {ports}")


def _os_port() -> int:
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port: int = sock.getsockname()[1]
        if port not in _handed_out:
            _handed_out.add(port)
            return port
