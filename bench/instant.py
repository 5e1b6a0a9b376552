"""A real `scribe-transcriber` whose speech engine answers at once: the control plane alone.

    python -m bench.instant   # configured like scribe-transcriber: SCRIBE_*, SCRIBE_TRANSCRIBER_*

Everything but the model is the production worker: the broker, prefetch 1, the file
source (the URI is resolved and stat'ed under the media root), `started`, `completed`,
publisher confirms, ack after the confirmed outcome. The engine is injected here through
`transcriber.main.serve(..., engine=...)`; no setting can select it, so it can never reach
a deployment.
"""

from __future__ import annotations

import threading
from pathlib import Path

from contracts.transcription import Segment
from scribe_runtime import aio
from scribe_runtime.logging import configure_logging
from scribe_runtime.settings import SharedSettings
from transcriber.engine import EngineRequest, EngineResult, OnSegment
from transcriber.main import SERVICE, serve
from transcriber.settings import TranscriberSettings

TEXT = "instant"
DURATION = 1.0


class InstantEngine:
    """Returns one fixed one-second segment without reading the audio."""

    @property
    def model_name(self) -> str:
        return "bench-instant"

    def transcribe(
        self,
        path: Path,
        request: EngineRequest,
        *,
        on_segment: OnSegment,
        cancelled: threading.Event,
    ) -> EngineResult:
        segment = Segment(id=0, start=0.0, end=DURATION, text=TEXT)
        on_segment(segment, DURATION, DURATION)
        return EngineResult(
            language=request.language or "en",
            language_probability=1.0,
            duration_seconds=DURATION,
            segments=[segment],
        )


def main() -> None:
    shared = SharedSettings()
    configure_logging(SERVICE, shared.log_level, shared.log_format)
    # On uvloop, as `scribe-transcriber` runs (`scribe_runtime.aio.run`).
    aio.run(serve(shared, TranscriberSettings(), engine=InstantEngine()))


if __name__ == "__main__":
    main()
