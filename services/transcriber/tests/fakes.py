"""Fakes at the transcriber's ports: engine, audio source, publisher."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from uuid import uuid4

from contracts.audio import AudioUploadedV1, TranscriptionOptions
from contracts.envelope import Event
from contracts.transcription import Segment, Word
from transcriber.engine import EngineRequest, EngineResult, OnSegment
from transcriber.errors import JobCancelled, JobFailure
from transcriber.sources import FetchedAudio


def upload(**options: object) -> AudioUploadedV1:
    return AudioUploadedV1(
        job_id=uuid4(),
        tenant_id="acme",
        correlation_id=uuid4(),
        producer="test",
        audio_uri="file:///media/a.wav",  # type: ignore[arg-type]
        options=TranscriptionOptions.model_validate(options),
    )


class FakeEngine:
    """Emits `segments` evenly over `duration`, or raises `error`."""

    def __init__(
        self,
        *,
        segments: int = 3,
        duration: float = 30.0,
        error: Exception | None = None,
        block: threading.Event | None = None,
        work: Callable[[], None] | None = None,
    ) -> None:
        self.segments = segments
        self.duration = duration
        self.error = error
        self.block = block
        self.work = work
        self.requests: list[EngineRequest] = []
        self.thread_names: list[str] = []

    @property
    def model_name(self) -> str:
        return "fake-tiny"

    def transcribe(
        self,
        path: Path,
        request: EngineRequest,
        *,
        on_segment: OnSegment,
        cancelled: threading.Event,
    ) -> EngineResult:
        self.requests.append(request)
        self.thread_names.append(threading.current_thread().name)
        if self.error is not None:
            raise self.error
        if self.work is not None:
            self.work()
        step = self.duration / self.segments
        out: list[Segment] = []
        for i in range(self.segments):
            if self.block is not None:
                while not self.block.wait(0.01):
                    if cancelled.is_set():
                        raise JobCancelled("cancelled")
            words = (
                [Word(word=f"w{i}", start=i * step, end=(i + 1) * step, probability=0.9)]
                if request.word_timestamps
                else None
            )
            seg = Segment(id=i, start=i * step, end=(i + 1) * step, text=f" word{i} ", words=words)
            out.append(seg)
            on_segment(seg, seg.end, self.duration)
            if cancelled.is_set():
                raise JobCancelled("cancelled")
        return EngineResult(
            language="en", language_probability=0.98, duration_seconds=self.duration, segments=out
        )


class FakeSource:
    def __init__(self, error: JobFailure | None = None) -> None:
        self.error = error
        self.fetched: list[str] = []
        self.released = 0

    @contextlib.asynccontextmanager
    async def fetch(self, uri: str, *, tenant: str | None = None) -> AsyncIterator[FetchedAudio]:
        self.fetched.append(uri)
        if self.error is not None:
            raise self.error
        try:
            yield FetchedAudio(path=Path("/media/a.wav"), size_bytes=1000)
        finally:
            self.released += 1


class Recorder:
    """Collects published events; can fail or delay chosen event types."""

    def __init__(self, *, fail: tuple[type[Event], ...] = (), delay: float = 0.0) -> None:
        self.events: list[Event] = []
        self.fail = fail
        self.delay = delay

    async def __call__(self, event: Event) -> None:
        if self.delay:
            await asyncio.sleep(self.delay)
        if isinstance(event, self.fail):
            raise ConnectionError(f"broker refused {event.message_type}")
        self.events.append(event)

    def of(self, cls: type[Event]) -> list[Event]:
        return [e for e in self.events if isinstance(e, cls)]


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def busy_sleep(seconds: float) -> Callable[[], None]:
    return lambda: time.sleep(seconds)
