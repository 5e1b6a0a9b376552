"""Opaque paging cursors: base64url JSON, bound to the query they page through.

Clients must treat a cursor as opaque; binding it to the query's fingerprint turns a cursor
replayed against a different query into a clear 422 instead of a silently wrong page.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from typing import Any, Final

_VERSION: Final = 1
MAX_CURSOR_CHARS: Final = 1024


class InvalidCursorError(ValueError):
    """The cursor was not made by this API for this query."""


def fingerprint(*parts: object) -> str:
    """A short stable digest of a query's parameters."""
    blob = json.dumps([str(p) if p is not None else None for p in parts], separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def encode_cursor(kind: str, scope: str, position: list[Any]) -> str:
    """A cursor for `position` (JSON-able values) in the result of query `scope`."""
    payload = {"v": _VERSION, "k": kind, "s": scope, "p": position}
    raw = json.dumps(payload, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def decode_cursor(token: str, kind: str, scope: str) -> list[Any]:
    """The position inside a cursor; `InvalidCursorError` for anything not ours."""
    if len(token) > MAX_CURSOR_CHARS:
        raise InvalidCursorError("cursor is too long")
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        payload = json.loads(raw)
    except (binascii.Error, ValueError) as exc:
        raise InvalidCursorError("cursor is not one this API issued") from exc
    if not isinstance(payload, dict) or payload.get("v") != _VERSION or payload.get("k") != kind:
        raise InvalidCursorError("cursor is not one this API issued for this endpoint")
    if payload.get("s") != scope:
        raise InvalidCursorError("cursor belongs to a different query; start again without it")
    position = payload.get("p")
    if not isinstance(position, list):
        raise InvalidCursorError("cursor is not one this API issued")
    return position
