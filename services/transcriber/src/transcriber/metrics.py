"""Prometheus metrics of a transcriber process (served at `/metrics`).

Events published and consumed are counted by `scribe_runtime.metrics` (`scribe_events_*`).
"""

from __future__ import annotations

from typing import Final

from prometheus_client import Counter, Gauge, Histogram

_DURATION_BUCKETS: Final = (1, 5, 10, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200)

JOBS: Final = Counter(
    "scribe_transcriber_jobs_total",
    "Jobs finished by this worker, by outcome (completed, failed) and error code.",
    ["outcome", "code"],
)
AUDIO_SECONDS: Final = Histogram(
    "scribe_transcriber_audio_seconds",
    "Duration of the audio of each completed job, and of each chunk of a long job "
    "transcribed (the sum is the audio transcribed).",
    buckets=_DURATION_BUCKETS,
)
TRANSCRIPTION_SECONDS: Final = Histogram(
    "scribe_transcriber_transcription_seconds",
    "Wall time of inference per completed job (decoding and the model; fetching excluded).",
    buckets=(0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600),
)
REAL_TIME_FACTOR: Final = Histogram(
    "scribe_transcriber_real_time_factor",
    "Inference wall time divided by audio duration, per completed job (below 1: faster "
    "than real time).",
    buckets=(0.02, 0.05, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1, 1.5, 2, 5),
)
PROCESSING_SECONDS: Final = Histogram(
    "scribe_transcriber_processing_seconds",
    "Wall time per job, from delivery to confirmed outcome.",
    buckets=(0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800),
)
CHUNKS: Final = Counter(
    "scribe_transcriber_chunks_total",
    "Chunks of long jobs handled by this worker: transcribed, skipped (already "
    "confirmed here), cancelled.",
    ["outcome"],
)
IN_FLIGHT: Final = Gauge("scribe_transcriber_jobs_in_flight", "Jobs being transcribed now.")
CANCELLED: Final = Counter(
    "scribe_transcriber_jobs_cancelled_total",
    "Jobs this worker skipped or stopped because their tenant cancelled or deleted them.",
    ["when"],
)
HANDED_BACK: Final = Counter(
    "scribe_transcriber_jobs_handed_back_total",
    "Jobs returned to the queue unfinished (shutdown past its grace period).",
)
REFUSED: Final = Counter(
    "scribe_transcriber_uploads_refused_total",
    "Uploads dead-lettered before any work, by code (unknown_tenant, conflicting_job).",
    ["code"],
)
SKIPPED: Final = Counter(
    "scribe_transcriber_uploads_skipped_total",
    "Redeliveries acked without work: this process had already confirmed their outcome.",
)
ROUTED: Final = Counter(
    "scribe_transcriber_uploads_routed_total",
    "Uploads this worker's router forwarded from the intake to a model pool, by pool "
    "(only pools that exist: a model no pool serves fails the job instead).",
    ["pool"],
)
