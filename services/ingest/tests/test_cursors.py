"""Opaque cursors: they round-trip, and refuse what this API did not issue for the query."""

from __future__ import annotations

import pytest

from ingest.cursors import InvalidCursorError, decode_cursor, encode_cursor, fingerprint


def test_round_trip_and_url_safety() -> None:
    scope = fingerprint("default", "fox", None)
    token = encode_cursor("search", scope, [0.0607927, "0b9f6a52-3c1e-4d5f-9a8b-7c6d5e4f3a21", 3])
    assert token.isascii()
    assert not set(token) & set("+/=&?# ")
    assert decode_cursor(token, "search", scope) == [
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
    ["", "!!!", "bm90IGpzb24", "W10", "eyJ2IjoxfQ", "x" * 2000],
)
def test_garbage_is_refused(token: str) -> None:
    with pytest.raises(InvalidCursorError):
        decode_cursor(token, "search", fingerprint("q"))


def test_a_cursor_for_another_query_or_endpoint_is_refused() -> None:
    token = encode_cursor("search", fingerprint("fox"), [1.0, "x", 0])
    with pytest.raises(InvalidCursorError, match="different query"):
        decode_cursor(token, "search", fingerprint("dog"))
    with pytest.raises(InvalidCursorError):
        decode_cursor(token, "jobs", fingerprint("fox"))
