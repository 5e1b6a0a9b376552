"""Handling one `audio.uploaded` job: fetch, transcribe off the loop, publish the outcome.

The handler returns (and the message is acked) only once the outcome event is confirmed by
the broker. `started` and `progress` events are published concurrently with the work, never
on its critical path; they are best-effort (the outcome is what the job's state rests on).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import structlog

from contracts.audio import AudioUploadedV1
from contracts.envelope import Event
from contracts.errors import ErrorCode
from contracts.transcription import (
    Segment,
    TranscriptCompletedV1,
    TranscriptionFailedV1,
    TranscriptionProgressV1,
    TranscriptionStartedV1,
)
from scribe_runtime.amqp import Delivery
from scribe_runtime.retry import TransientError
from scribe_runtime.topology import DELIVERY_LIMIT
from transcriber import metrics
from transcriber.engine import EngineRequest, EngineResult, SpeechEngine
from transcriber.errors import JobCancelled, JobFailure
from transcriber.progress import ProgressThrottle
from transcriber.sources import AudioSource

log = structlog.get_logger(__name__)

T = TypeVar("T")
Publish = Callable[[Event], Awaitable[None]]

_MAX_MESSAGE = 4000

PUBLISHES: tuple[type[Event], ...] = (
    TranscriptionStartedV1,
    TranscriptionProgressV1,
    TranscriptCompletedV1,
    TranscriptionFailedV1,
)
"""Every event a `Transcriber` publishes (its composition root declares them)."""


@dataclass(frozen=True, slots=True)
class JobPolicy:
    """The per-job knobs the handler needs from the settings."""

    word_timestamps: bool = False
    progress_min_fraction: float = 0.05
    progress_min_interval_seconds: float = 2.0
    delivery_limit: int = DELIVERY_LIMIT


def outcome_event_id(event: AudioUploadedV1, outcome: str) -> uuid.UUID:
    """The outcome's event id, derived from the upload's.

    A worker killed after its outcome was confirmed but before the ack transcribes the job
    again on redelivery; the same id then lets the indexer and every downstream consumer
    drop the repeat (they deduplicate on `message_id`), so each job ends exactly once.
    """
    return uuid.uuid5(event.event_id, f"outcome:{outcome}")


def run_in_daemon_thread(
    fn: Callable[[], T], *, name: str
) -> tuple[asyncio.Future[T], threading.Thread]:
    """Run blocking `fn` on a daemon thread; its result arrives as a future on this loop.

    A daemon thread (not the default executor) so a worker told to stop can exit even while
    the model is in the middle of a window; the job then goes back to the queue.
    """
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()
    context = contextvars.copy_context()  # log lines from the thread keep the job's ids

    def settle(result: T | None, error: BaseException | None) -> None:
        if future.done():
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)  # type: ignore[arg-type]

    def target() -> None:
        result: T | None = None
        error: BaseException | None = None
        try:
            result = context.run(fn)
        except BaseException as exc:
            error = exc
        # RuntimeError: the loop is gone, the process is exiting, the job was handed back.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(settle, result, error)

    thread = threading.Thread(target=target, name=name, daemon=True)
    thread.start()
    return future, thread


class Transcriber:
    """The application service: one `AudioUploadedV1` in, its events out."""

    def __init__(
        self,
        *,
        engine: SpeechEngine,
        source: AudioSource,
        publish: Publish,
        worker: str,
        producer: str,
        policy: JobPolicy | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._engine = engine
        self._source = source
        self._publish = publish
        self._worker = worker
        self._producer = producer
        self._policy = policy or JobPolicy()
        self._clock = clock
        self._cancels: set[threading.Event] = set()
        self._idle = asyncio.Event()
        self._idle.set()
        self._threads: set[threading.Thread] = set()

    @property
    def busy(self) -> bool:
        """Whether a job is in hand."""
        return bool(self._cancels)

    @property
    def inferring(self) -> bool:
        """Whether an inference thread is still running (it may outlive a cancelled job)."""
        return any(t.is_alive() for t in self._threads)

    async def wait_idle(self, seconds: float) -> bool:
        """Wait up to `seconds` for the job in hand and its inference thread to end.

        The handler can end (cancelled with its channel) while the model is still inside a
        window; the thread is what must be gone before the interpreter shuts down.
        """
        deadline = time.monotonic() + seconds
        try:
            async with asyncio.timeout(seconds):
                await self._idle.wait()
        except TimeoutError:
            return False
        for thread in list(self._threads):
            await asyncio.to_thread(thread.join, max(0.0, deadline - time.monotonic()))
        self._threads = {t for t in self._threads if t.is_alive()}
        return not self._threads

    def cancel_in_flight(self) -> None:
        """Ask running inference to stop at the next segment (shutdown past its grace)."""
        for cancel in self._cancels:
            cancel.set()

    async def on_audio_uploaded(self, event: AudioUploadedV1, delivery: Delivery) -> None:
        """The subscriber: returning acks, raising nacks for redelivery."""
        await self.transcribe(event, attempt=delivery.attempt)

    async def transcribe(self, event: AudioUploadedV1, *, attempt: int) -> Event:
        """Run the job and publish its outcome; returns the confirmed outcome event."""
        started_at = self._clock()
        background: list[asyncio.Task[None]] = []
        model = self._engine.model_name
        background.append(
            asyncio.create_task(
                self._best_effort(
                    TranscriptionStartedV1(
                        **self._envelope(event), attempt=attempt, worker=self._worker, model=model
                    )
                )
            )
        )
        if event.options.model and event.options.model != model:
            log.warning("requested_model_unavailable", requested=event.options.model, model=model)
        cancel = threading.Event()
        self._cancels.add(cancel)
        self._idle.clear()
        metrics.IN_FLIGHT.inc()
        try:
            outcome: Event
            try:
                result = await self._run(event, cancel, background)
            except JobFailure as failure:
                outcome = TranscriptionFailedV1(
                    **self._envelope(event),
                    event_id=outcome_event_id(event, f"failed:{failure.code}"),
                    code=failure.code,
                    message=failure.message[:_MAX_MESSAGE],
                    retryable=failure.retryable,
                    attempts=attempt,
                )
            except TransientError:
                # Storage briefly gone: the consumer backs off through the retry stages.
                await _settle(background)
                log.warning("transcription_deferred", attempt=attempt)
                raise
            except (JobCancelled, asyncio.CancelledError):
                cancel.set()
                await _settle(background)
                metrics.HANDED_BACK.inc()
                log.warning("transcription_handed_back", attempt=attempt)
                raise
            except Exception as exc:
                if attempt <= self._policy.delivery_limit:
                    await _settle(background)
                    raise  # unexpected: redeliver; the delivery limit ends a crash loop
                # The last delivery the queue allows: say so instead of leaving the job open.
                log.exception("transcription_gave_up", attempt=attempt)
                outcome = TranscriptionFailedV1(
                    **self._envelope(event),
                    code=ErrorCode.INTERNAL_ERROR,
                    message=f"failed on every delivery; last error: {exc!r}"[:_MAX_MESSAGE],
                    retryable=True,
                    attempts=attempt,
                )
            else:
                outcome = TranscriptCompletedV1(
                    **self._envelope(event),
                    event_id=outcome_event_id(event, "completed"),
                    language=result.language,
                    language_probability=result.language_probability,
                    duration_seconds=result.duration_seconds,
                    model=model,
                    text=result.text,
                    segments=result.segments,
                    processing_seconds=round(self._clock() - started_at, 3),
                    attempt=attempt,
                )
        finally:
            self._cancels.discard(cancel)
            if not self._cancels:
                self._idle.set()
            metrics.IN_FLIGHT.dec()
        # The outcome is the one publish the ack depends on; the others finish alongside it.
        await asyncio.gather(self._publish(outcome), _settle(background))
        self._log_outcome(outcome, self._clock() - started_at)
        return outcome

    async def _run(
        self,
        event: AudioUploadedV1,
        cancel: threading.Event,
        background: list[asyncio.Task[None]],
    ) -> EngineResult:
        request = EngineRequest(
            language=event.options.language,
            word_timestamps=event.options.word_timestamps or self._policy.word_timestamps,
        )
        throttle = ProgressThrottle(
            min_fraction=self._policy.progress_min_fraction,
            min_interval_seconds=self._policy.progress_min_interval_seconds,
            clock=self._clock,
        )
        loop = asyncio.get_running_loop()
        context = contextvars.copy_context()
        done = 0

        def report(processed: float, duration: float) -> None:  # on the loop
            nonlocal done
            if cancel.is_set():
                return  # handed back: nothing more to say about this attempt
            done += 1
            fraction = min(1.0, processed / duration) if duration > 0 else 0.0
            if throttle.should_report(fraction):
                progress = TranscriptionProgressV1(
                    **self._envelope(event),
                    progress=round(fraction, 4),
                    processed_seconds=round(processed, 3),
                    duration_seconds=round(duration, 3),
                    segments_done=done,
                )
                background.append(asyncio.create_task(self._best_effort(progress)))

        def on_segment(_segment: Segment, processed: float, duration: float) -> None:
            with contextlib.suppress(RuntimeError):  # loop closed: shutting down
                loop.call_soon_threadsafe(report, processed, duration, context=context)

        async with self._source.fetch(str(event.audio_uri), tenant=event.tenant_id) as audio:
            future, thread = run_in_daemon_thread(
                lambda: self._engine.transcribe(
                    audio.path, request, on_segment=on_segment, cancelled=cancel
                ),
                name=f"inference-{event.job_id}",
            )
            self._threads.add(thread)
            inference_started = self._clock()
            try:
                result = await future
            except asyncio.CancelledError:
                cancel.set()
                raise
            self._threads.discard(thread)
            inference = self._clock() - inference_started
            metrics.TRANSCRIPTION_SECONDS.observe(inference)
            if result.duration_seconds > 0:
                metrics.REAL_TIME_FACTOR.observe(inference / result.duration_seconds)
            return result

    async def _best_effort(self, event: Event) -> None:
        try:
            await self._publish(event)
        except Exception as exc:
            log.warning("event_publish_failed", event_type=event.message_type, error=repr(exc))

    def _envelope(self, event: AudioUploadedV1) -> dict[str, Any]:
        return {
            "job_id": event.job_id,
            "tenant_id": event.tenant_id,
            "correlation_id": event.correlation_id,
            "producer": self._producer,
        }

    def _log_outcome(self, outcome: Event, wall: float) -> None:
        metrics.PROCESSING_SECONDS.observe(wall)
        if isinstance(outcome, TranscriptCompletedV1):
            metrics.JOBS.labels(outcome="completed", code="").inc()
            metrics.AUDIO_SECONDS.observe(outcome.duration_seconds)
            log.info(
                "transcript_completed",
                attempt=outcome.attempt,
                language=outcome.language,
                duration_seconds=round(outcome.duration_seconds, 3),
                processing_seconds=outcome.processing_seconds,
                real_time_factor=round(wall / outcome.duration_seconds, 3)
                if outcome.duration_seconds
                else None,
                segments=len(outcome.segments),
                model=outcome.model,
            )
        elif isinstance(outcome, TranscriptionFailedV1):
            metrics.JOBS.labels(outcome="failed", code=str(outcome.code)).inc()
            log.warning(
                "transcription_failed",
                attempt=outcome.attempts,
                code=str(outcome.code),
                reason=outcome.message,
                retryable=outcome.retryable,
                duration_ms=round(wall * 1000, 1),
            )


async def _settle(tasks: list[asyncio.Task[None]]) -> None:
    """Wait for background publishes (they never raise: see `_best_effort`)."""
    if tasks:
        await asyncio.gather(*tasks, return_exceptions=True)
