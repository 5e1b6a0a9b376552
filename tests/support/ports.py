"""Spare TCP ports for the processes the tests start."""

from __future__ import annotations

import socket

_handed_out: set[int] = set()


def free_port() -> int:
    """A port nothing listens on now, and not handed out before by this process.

    The OS picks it; a race with other binders remains, but two servers started together
    (a cluster's nodes, a stack's health ports, all chosen before any binds) never get the
    same one.
    """
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port: int = sock.getsockname()[1]
        if port not in _handed_out:
            _handed_out.add(port)
            return port
