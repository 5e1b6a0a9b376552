"""A real `scribe-transcriber` whose engine says one word in the middle of any audio: no model.

    python -m tests.support.cheap_transcriber   # configured like scribe-transcriber

Everything but the model is the production worker (the router, the planner that splits
long audio with VAD and writes its chunks, the chunk consumer, publisher confirms). The
engine reads only the WAV header of what it is given (a chunk is a 16 kHz WAV) and
answers one one-second segment at the middle of it, so every chunk's segment lies in its
core, in absolute time once the worker has placed it. It serves the configured model's
pool under that model's name (a long job's work items are routed by it). Injected
through `transcriber.main.serve(..., engine=...)`, so no deployment can switch it on.
"""

from __future__ import annotations

import threading
import wave
from pathlib import Path
from typing import Final

from contracts.transcription import Segment
from scribe_runtime import aio
from scribe_runtime.logging import configure_logging
from scribe_runtime.settings import SharedSettings
from tests.support.stack import python_module
from transcriber.engine import EngineRequest, EngineResult, OnSegment
from transcriber.main import SERVICE, serve
from transcriber.settings import TranscriberSettings

MODULE: Final = "tests.support.cheap_transcriber"
WORD: Final = "midpoint"
"""What the engine hears in every audio it is given."""


def command() -> list[str]:
    """The argv of a cheap worker."""
    return python_module(MODULE)


class MidpointEngine:
    """One segment, `WORD`, one second long, at the middle of the (WAV) audio."""

    def __init__(self, model_name: str) -> None:
        self._model_name = model_name

    @property
    def model_name(self) -> str:
        return self._model_name

    def transcribe(
        self,
        path: Path,
        request: EngineRequest,
        *,
        on_segment: OnSegment,
        cancelled: threading.Event,
    ) -> EngineResult:
        with wave.open(str(path), "rb") as audio:
            duration = audio.getnframes() / audio.getframerate()
        middle = duration / 2
        segment = Segment(
            id=0, start=max(0.0, middle - 0.5), end=min(duration, middle + 0.5), text=WORD
        )
        on_segment(segment, duration, duration)
        return EngineResult(
            language=request.language or "en",
            language_probability=1.0,
            duration_seconds=duration,
            segments=[segment],
        )


def main() -> None:
    shared = SharedSettings()
    settings = TranscriberSettings()
    configure_logging(SERVICE, shared.log_level, shared.log_format)
    engine = MidpointEngine(settings.resolved_model_name())
    aio.run(serve(shared, settings, engine=engine))


if __name__ == "__main__":
    main()
