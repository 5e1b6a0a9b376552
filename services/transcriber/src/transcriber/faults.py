"""Test-only fault injection: a file that makes the worker process die every time.

`SCRIBE_TRANSCRIBER_TEST_CRASH_SHA256` (comma-separated sha256 digests) makes the worker
SIGKILL itself when asked to transcribe a file with one of those digests, the way a
decoder segfault or the OOM killer would end it. Only `tests/faults/` sets it; it exists
to prove that such a file ends in the DLQ through the delivery limit and its job `failed`,
while other jobs go on. Unset (always, in production) it changes nothing.
"""

from __future__ import annotations

import hashlib
import os
import signal
import threading
from pathlib import Path
from typing import Final

import structlog

from transcriber.engine import EngineRequest, EngineResult, OnSegment, SpeechEngine

CRASH_ENV: Final = "SCRIBE_TRANSCRIBER_TEST_CRASH_SHA256"
log = structlog.get_logger(__name__)


def crash_digests() -> frozenset[str]:
    """The digests named by the test-only variable (empty when unset)."""
    raw = os.environ.get(CRASH_ENV, "")
    return frozenset(d.strip().lower() for d in raw.split(",") if d.strip())


class CrashingEngine:
    """Wraps an engine; kills the process on the named files, transcribes the rest."""

    def __init__(self, inner: SpeechEngine, digests: frozenset[str]) -> None:
        self._inner = inner
        self._digests = digests

    @property
    def model_name(self) -> str:
        return self._inner.model_name

    def transcribe(
        self,
        path: Path,
        request: EngineRequest,
        *,
        on_segment: OnSegment,
        cancelled: threading.Event,
    ) -> EngineResult:
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        if digest in self._digests:
            log.error("test_crash_injected", sha256=digest)
            os.kill(os.getpid(), signal.SIGKILL)
        return self._inner.transcribe(path, request, on_segment=on_segment, cancelled=cancelled)
