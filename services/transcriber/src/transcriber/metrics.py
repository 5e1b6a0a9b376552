"""Prometheus metrics of a transcriber process (served at `/metrics`)."""

from __future__ import annotations

from typing import Final

from prometheus_client import Counter, Gauge, Histogram

JOBS: Final = Counter(
    "scribe_transcriber_jobs_total",
    "Jobs finished by this worker, by outcome and error code.",
    ["outcome", "code"],
)
AUDIO_SECONDS: Final = Counter(
    "scribe_transcriber_audio_seconds_total", "Seconds of audio transcribed."
)
PROCESSING_SECONDS: Final = Histogram(
    "scribe_transcriber_processing_seconds",
    "Wall time per job, from delivery to confirmed outcome.",
    buckets=(0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800),
)
IN_FLIGHT: Final = Gauge("scribe_transcriber_jobs_in_flight", "Jobs being transcribed now.")
HANDED_BACK: Final = Counter(
    "scribe_transcriber_jobs_handed_back_total",
    "Jobs returned to the queue unfinished (shutdown past its grace period).",
)
