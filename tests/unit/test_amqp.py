"""What a delivery's headers say: attempts, retry stages, deaths, where it was going."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from scribe_runtime.amqp import (
    HEADER_ORIGINAL_ROUTING_KEY,
    HEADER_RETRY,
    Delivery,
    latest_death,
    original_routing_key,
    retries_done,
)


def _delivery(headers: dict[str, Any] | None, redelivered: bool = False) -> Delivery:
    return Delivery(body=b"{}", headers=headers or {}, redelivered=redelivered)


def test_attempt_counts_quorum_queue_redeliveries() -> None:
    assert _delivery({}).attempt == 1
    assert _delivery(None).attempt == 1
    assert _delivery({"x-delivery-count": 1}).attempt == 2
    assert _delivery({"x-delivery-count": 4}).attempt == 5
    assert _delivery({"x-delivery-count": b"3"}).attempt == 4
    assert _delivery({}, redelivered=True).attempt == 2


def test_retry_stages_are_counted_from_our_header_only() -> None:
    assert retries_done({}) == 0
    assert retries_done({HEADER_RETRY: 2}) == 2
    assert retries_done({HEADER_RETRY: "3"}) == 3
    assert retries_done({HEADER_RETRY: True}) == 0
    assert retries_done({HEADER_RETRY: "soon"}) == 0


def test_latest_death_is_rabbitmqs_first_x_death_entry() -> None:
    when = datetime(2026, 1, 1, tzinfo=UTC)
    headers = {
        "x-death": [
            {"reason": b"delivery_limit", "queue": "q", "count": 1, "time": when,
             "routing-keys": [b"audio.uploaded.v1"]},
            {"reason": "rejected", "queue": "older", "count": 3},
        ]
    }  # fmt: skip
    death = latest_death(headers)
    assert death is not None
    assert (death.reason, death.queue, death.count, death.time) == ("delivery_limit", "q", 1, when)
    assert original_routing_key(headers, "other.v1") == "audio.uploaded.v1"
    assert latest_death({}) is None
    assert latest_death({"x-death": "garbage"}) is None


def test_original_routing_key_prefers_ours_then_x_death_then_the_type() -> None:
    ours = {HEADER_ORIGINAL_ROUTING_KEY: b"a.v1", "x-death": [{"routing-keys": ["b.v1"]}]}
    assert original_routing_key(ours, "c.v1") == "a.v1"
    assert original_routing_key({"x-death": [{"routing-keys": ["b.v1"]}]}, "c.v1") == "b.v1"
    assert original_routing_key({}, "c.v1") == "c.v1"
