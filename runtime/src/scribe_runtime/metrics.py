"""Prometheus metrics every service shares: events published, consumed, dead-lettered.

Recorded by `EventPublisher`, `publish_event`, `dead_letter` and `subscribe_events`, so
each service counts its traffic the same way without repeating it. Labels are bounded:
event types come from the contract (anything else is `unknown`), queues and codes are
names in the code. Never a job id. A counter increment is a lock and an add, cheap enough
for every message.
"""

from __future__ import annotations

from typing import Final

from prometheus_client import Counter, Histogram

from contracts.routing import ALL_EVENT_CLASSES

KNOWN_TYPES: Final = frozenset(cls.routing_key() for cls in ALL_EVENT_CLASSES)
UNKNOWN_TYPE: Final = "unknown"

EVENTS_PUBLISHED: Final = Counter(
    "scribe_events_published_total",
    "Events this process published and the broker confirmed, by type.",
    ["type"],
)
EVENT_PUBLISH_FAILURES: Final = Counter(
    "scribe_event_publish_failures_total",
    "Event publishes that raised (not confirmed, unroutable, connection lost), by type.",
    ["type"],
)
EVENTS_CONSUMED: Final = Counter(
    "scribe_events_consumed_total",
    "Messages taken from a queue, by queue, event type and outcome (handled: the handler "
    "returned, acked; failed: it raised, nacked for redelivery; rejected: a contract "
    "violation, moved to the queue's DLQ; deferred: its handler could not start it yet, "
    "sent through the first retry stage without spending a retry).",
    ["queue", "type", "outcome"],
)
EVENTS_DEAD_LETTERED: Final = Counter(
    "scribe_events_dead_lettered_total",
    "Messages this process moved to a dead-letter queue, by queue and reason code.",
    ["queue", "code"],
)
EVENT_HANDLING_SECONDS: Final = Histogram(
    "scribe_event_handling_seconds",
    "Time a handler took per event (decode to return), by queue.",
    ["queue"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5, 30, 120, 600, 1800),
)


def type_label(message_type: str | None) -> str:
    """The `type` label of a message: a contract routing key, or `unknown` (bounded)."""
    return message_type if message_type in KNOWN_TYPES else UNKNOWN_TYPE
