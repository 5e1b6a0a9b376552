"""Opaque paging cursors: base64url JSON, bound to the query they page through, and signed.

Clients must treat a cursor as opaque; binding it to the query's fingerprint turns a cursor
replayed against a different query into a clear 422 instead of a silently wrong page. The
fingerprint alone is computable by anyone who knows the query, so each cursor also carries
an HMAC-SHA256 under a server secret (`SCRIBE_INGEST_CURSOR_SECRET`): a forged or edited
cursor is refused before any of its values reaches a query.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
from typing import Any, Final

_VERSION: Final = 1
MAX_CURSOR_CHARS: Final = 1024
_MAC_BYTES: Final = 16  # 128 bits: forging one takes 2**128 guesses, and the token stays short


class InvalidCursorError(ValueError):
    """The cursor was not made by this API for this query."""


def fingerprint(*parts: object) -> str:
    """A short stable digest of a query's parameters."""
    blob = json.dumps([str(p) if p is not None else None for p in parts], separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class CursorCodec:
    """Makes and reads cursors signed with one secret (every replica must share it)."""

    def __init__(self, secret: bytes | None = None) -> None:
        # Without a configured secret the process makes its own: cursors then page only
        # on this process, until it restarts (documented with the setting).
        # Derived, so the secret a deployment configures is never itself an HMAC key.
        seed = secret or secrets.token_bytes(32)
        self._key = hashlib.sha256(b"scribe-cursor\n" + seed).digest()

    def _mac(self, payload: bytes) -> bytes:
        return hmac.digest(self._key, payload, "sha256")[:_MAC_BYTES]

    def encode(self, kind: str, scope: str, position: list[Any]) -> str:
        """A cursor for `position` (JSON-able values) in the result of query `scope`."""
        payload = {"v": _VERSION, "k": kind, "s": scope, "p": position}
        raw = json.dumps(payload, separators=(",", ":")).encode()
        return f"{_b64(raw)}.{_b64(self._mac(raw))}"

    def decode(self, token: str, kind: str, scope: str) -> list[Any]:
        """The position inside a cursor; `InvalidCursorError` for anything not ours."""
        if len(token) > MAX_CURSOR_CHARS:
            raise InvalidCursorError("cursor is too long")
        body, dot, mac = token.partition(".")
        try:
            raw, signature = _unb64(body), _unb64(mac)
        except (binascii.Error, ValueError) as exc:
            raise InvalidCursorError("cursor is not one this API issued") from exc
        if not dot or not hmac.compare_digest(signature, self._mac(raw)):
            raise InvalidCursorError("cursor is not one this API issued (or has expired)")
        try:
            payload = json.loads(raw)
        except ValueError as exc:
            raise InvalidCursorError("cursor is not one this API issued") from exc
        if not isinstance(payload, dict) or (payload.get("v"), payload.get("k")) != (
            _VERSION,
            kind,
        ):
            raise InvalidCursorError("cursor is not one this API issued for this endpoint")
        if payload.get("s") != scope:
            raise InvalidCursorError("cursor belongs to a different query; start again without it")
        position = payload.get("p")
        if not isinstance(position, list):
            raise InvalidCursorError("cursor is not one this API issued")
        return position
