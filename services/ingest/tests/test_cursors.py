"""Opaque cursors: they round-trip, are signed, and refuse what this API did not issue."""

from __future__ import annotations

import base64
import json

import pytest

from ingest.cursors import CursorCodec, InvalidCursorError, fingerprint

CODEC = CursorCodec(b"test-secret")


def test_round_trip_and_url_safety() -> None:
    scope = fingerprint("default", "fox", None)
    token = CODEC.encode("search", scope, [0.0607927, "0b9f6a52-3c1e-4d5f-9a8b-7c6d5e4f3a21", 3])
    assert token.isascii()
    assert not set(token) & set("+/=&?# ")
    assert CODEC.decode(token, "search", scope) == [
        0.0607927,
        "0b9f6a52-3c1e-4d5f-9a8b-7c6d5e4f3a21",
        3,
    ]


def test_fingerprint_tells_queries_apart() -> None:
    assert fingerprint("default", "fox") == fingerprint("default", "fox")
    assert fingerprint("default", "fox") != fingerprint("acme", "fox")
    assert fingerprint("a", None) != fingerprint("a", "None ")


@pytest.mark.parametrize(
    "token",
    ["", "!!!", "bm90IGpzb24", "W10", "eyJ2IjoxfQ", "eyJ2IjoxfQ.", "a.b.c", "x" * 2000],
)
def test_garbage_is_refused(token: str) -> None:
    with pytest.raises(InvalidCursorError):
        CODEC.decode(token, "search", fingerprint("q"))


def test_a_cursor_for_another_query_or_endpoint_is_refused() -> None:
    token = CODEC.encode("search", fingerprint("fox"), [1.0, "x", 0])
    with pytest.raises(InvalidCursorError, match="different query"):
        CODEC.decode(token, "search", fingerprint("dog"))
    with pytest.raises(InvalidCursorError):
        CODEC.decode(token, "jobs", fingerprint("fox"))


def test_a_forged_or_edited_cursor_is_refused() -> None:
    # Anyone can compute the scope fingerprint of their own query; only the server can sign.
    scope = fingerprint("default", "fox", None, None, None)
    payload = {"v": 1, "k": "search", "s": scope, "p": [1.0, "x", 2**40]}
    body = base64.urlsafe_b64encode(json.dumps(payload).encode()).rstrip(b"=").decode()
    with pytest.raises(InvalidCursorError):
        CODEC.decode(body, "search", scope)
    genuine = CODEC.encode("search", scope, [1.0, "x", 3])
    _, mac = genuine.split(".")
    with pytest.raises(InvalidCursorError):
        CODEC.decode(f"{body}.{mac}", "search", scope)


def test_a_cursor_signed_with_another_secret_is_refused() -> None:
    scope = fingerprint("q")
    token = CursorCodec(b"another-secret").encode("jobs", scope, ["x"])
    with pytest.raises(InvalidCursorError):
        CODEC.decode(token, "jobs", scope)
    assert CursorCodec(b"test-secret").decode(CODEC.encode("jobs", scope, ["x"]), "jobs", scope)
