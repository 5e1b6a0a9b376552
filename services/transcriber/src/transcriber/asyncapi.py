"""The transcriber's AsyncAPI document, from the broker `build` wires."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from scribe_runtime.asyncapi import DOCUMENTED_AMQP_URL, asyncapi_document
from scribe_runtime.settings import SharedSettings
from transcriber.engine import EngineRequest, EngineResult, OnSegment
from transcriber.main import build
from transcriber.settings import TranscriberSettings


class _NoModel:
    """Stands in for the model while only the broker's shape is read; never transcribes."""

    model_name = "none"

    def transcribe(
        self,
        path: Path,
        request: EngineRequest,
        *,
        on_segment: OnSegment,
        cancelled: threading.Event,
    ) -> EngineResult:
        raise NotImplementedError("documentation only")


def document() -> dict[str, Any]:
    """AsyncAPI 3.0 for `scribe-transcriber` (committed as `docs/asyncapi/transcriber.json`)."""
    broker, _ = build(
        SharedSettings(amqp_url=DOCUMENTED_AMQP_URL), TranscriberSettings(), _NoModel()
    )
    return asyncapi_document(
        broker,
        title="Scribe transcriber",
        description="faster-whisper workers, one job at a time per process (prefetch 1). "
        "Each `audio.uploaded.v1` yields `transcription.started.v1`, throttled "
        "`transcription.progress.v1`, then `transcript.completed.v1` or "
        "`transcription.failed.v1` (a stable `code`); the message is acked once the "
        "outcome is confirmed. Every event carries the upload's `correlation_id`.",
    )
