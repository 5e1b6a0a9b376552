"""A real `scribe-transcriber` that SIGKILLs itself on chosen files: a crash loop on demand.

    python -m tests.support.crashing_transcriber --crash-sha256 DIGEST [--crash-sha256 ...]

Configured like `scribe-transcriber` (SCRIBE_*, SCRIBE_TRANSCRIBER_*). A file whose sha256
is named ends the process the way a decoder segfault or the OOM killer would, every time
it is delivered; every other file is transcribed by the real model. The fault suite uses
it to prove that such a file reaches the DLQ through the delivery limit, its job `failed`,
while other jobs go on. It lives here, injected through `transcriber.main.serve(...,
engine=...)` like the benchmarks' instant engine, so that no deployment can switch it on.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import os
import signal
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path

import structlog

from scribe_runtime import aio
from scribe_runtime.logging import configure_logging
from scribe_runtime.settings import SharedSettings
from tests.support.stack import python_module
from transcriber.engine import (
    EngineRequest,
    EngineResult,
    FasterWhisperEngine,
    OnSegment,
    SpeechEngine,
)
from transcriber.main import SERVICE, serve
from transcriber.settings import TranscriberSettings

MODULE = "tests.support.crashing_transcriber"
log = structlog.get_logger(__name__)


def command(digests: Iterable[str]) -> list[str]:
    """The argv of a worker that dies on the files with these sha256 digests."""
    argv = python_module(MODULE)
    for digest in digests:
        argv += ["--crash-sha256", digest]
    return argv


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


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog=f"python -m {MODULE}", description=__doc__)
    parser.add_argument("--crash-sha256", action="append", required=True, metavar="DIGEST")
    args = parser.parse_args(argv)
    digests = frozenset(d.strip().lower() for d in args.crash_sha256)
    shared = SharedSettings()
    settings = TranscriberSettings()
    configure_logging(SERVICE, shared.log_level, shared.log_format)
    # The engine `scribe-transcriber` loads when none is injected, wrapped.
    engine = CrashingEngine(FasterWhisperEngine(settings), digests)
    log.warning("test_crash_injection_enabled", sha256=sorted(digests))
    if not aio.run(serve(shared, settings, engine=engine)):
        # As `scribe-transcriber` does: never tear the interpreter down under a model in use.
        logging.shutdown()
        os._exit(0)


if __name__ == "__main__":
    main()
