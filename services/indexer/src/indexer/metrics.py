"""Prometheus metrics of an indexer process (served at `/metrics`).

Events consumed and dead-lettered are counted by `scribe_runtime.metrics` (`scribe_events_*`).
"""

from __future__ import annotations

from typing import Final

from prometheus_client import Counter, Histogram

LAG_SECONDS: Final = Histogram(
    "scribe_indexer_lag_seconds",
    "Now minus the event's occurred_at when its projection committed, by event type.",
    ["type"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600),
)
JOB_OUTCOMES: Final = Counter(
    "scribe_indexer_job_outcomes_total",
    "Terminal job events projected (duplicates excluded), by outcome and error code.",
    ["outcome", "code"],
)
DUPLICATES: Final = Counter(
    "scribe_indexer_duplicate_events_total",
    "Events already projected (redelivered or republished), acked without effect, by type.",
    ["type"],
)
