"""The tests' own HTTP probes (readiness polls, management calls, metrics scrapes).

`httpx.get(...)` builds a new client per call, and building one loads the CA bundle: about
50 ms of CPU on an idle machine, half a second on a loaded 2-core one, paid on every poll
while the services under test start on the same cores. One client serves every probe
instead. It keeps no connection alive, so each request still opens its own connection,
as `httpx.get` does: a probe never rides on a socket to a process that has since died.
"""

from __future__ import annotations

import threading
from typing import Any

import httpx

_lock = threading.Lock()
_client: httpx.Client | None = None


def client() -> httpx.Client:
    """The one probe client of this process (safe to share between threads)."""
    global _client
    with _lock:
        if _client is None:
            _client = httpx.Client(limits=httpx.Limits(max_keepalive_connections=0))
        return _client


def request(method: str, url: str, **kwargs: Any) -> httpx.Response:
    """`httpx.request` on the shared client (same arguments: timeout, auth, json, ...)."""
    return client().request(method, url, **kwargs)


def get(url: str, **kwargs: Any) -> httpx.Response:
    return request("GET", url, **kwargs)


def post(url: str, **kwargs: Any) -> httpx.Response:
    return request("POST", url, **kwargs)


def put(url: str, **kwargs: Any) -> httpx.Response:
    return request("PUT", url, **kwargs)
