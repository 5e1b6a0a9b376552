"""Handling one `audio.uploaded` job: fetch, transcribe off the loop, publish the outcome.

Before any work, `admission.Admission` refuses uploads of unknown tenants and conflicting
re-uploads of a job (dead-lettered, nothing published) and skips redeliveries whose outcome
this process already confirmed. The handler returns (and the message is acked) only once
the outcome event is confirmed by the broker. `started` and `progress` events are
published concurrently with the work, never on its critical path; they are best-effort
(the outcome is what the job's state rests on).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import contextvars
import dataclasses
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

import structlog

from contracts.audio import AudioUploadedV1
from contracts.chunks import (
    TranscriptionChunkedV1,
    TranscriptionChunkRequestedV1,
    TranscriptionChunkTranscribedV1,
)
from contracts.envelope import Event
from contracts.errors import ErrorCode, RefusalCode
from contracts.speakers import SpeakerTurn
from contracts.transcription import (
    Segment,
    TranscriptCompletedV1,
    TranscriptionFailedV1,
    TranscriptionProgressV1,
    TranscriptionStartedV1,
)
from scribe_runtime.amqp import Delivery
from scribe_runtime.cancellations import CancelMarks
from scribe_runtime.retry import TransientError
from scribe_runtime.topology import DELIVERY_LIMIT
from transcriber import metrics, models
from transcriber.admission import Admission, DeadLetter, Refusal, Verdict
from transcriber.audio import StreamedAudio, probe_duration
from transcriber.chunking import Cut, Planned, Samples, plan_chunks
from transcriber.diarization import Diarizer, Turn, label_segments
from transcriber.engine import (
    EngineRequest,
    EngineResult,
    LanguageDetector,
    ModelChooser,
    OnSegment,
    SpeechEngine,
)
from transcriber.errors import CancelledByRequest, JobCancelled, JobFailure
from transcriber.long_audio import (
    LongAudio,
    chunk_event_id,
    chunk_specs,
    has_overlap,
    keep_owned,
)
from transcriber.progress import ProgressThrottle
from transcriber.sources import AudioSource

log = structlog.get_logger(__name__)

T = TypeVar("T")
Publish = Callable[[Event], Awaitable[None]]

_MAX_MESSAGE = 4000
_REMEMBERED_CHUNKS = 10_000

PUBLISHES: tuple[type[Event], ...] = (
    TranscriptionStartedV1,
    TranscriptionProgressV1,
    TranscriptCompletedV1,
    TranscriptionFailedV1,
    TranscriptionChunkRequestedV1,
    TranscriptionChunkedV1,
    TranscriptionChunkTranscribedV1,
)
"""Every event a `Transcriber` publishes (its composition root declares them)."""


@dataclass(frozen=True, slots=True)
class JobPolicy:
    """The per-job knobs the handler needs from the settings."""

    word_timestamps: bool = False
    progress_min_fraction: float = 0.05
    progress_min_interval_seconds: float = 2.0
    delivery_limit: int = DELIVERY_LIMIT
    cancel_poll_seconds: float = 1.0


@dataclass(frozen=True, slots=True)
class _Plan:
    """A long job split: its chunks and its language."""

    planned: Planned
    language: str
    language_probability: float
    turns: list[Turn] | None = None


def outcome_event_id(
    event: AudioUploadedV1 | TranscriptionChunkRequestedV1, outcome: str
) -> uuid.UUID:
    """The outcome's event id, derived from the job (tenant and id), not from the upload.

    A worker killed after its outcome was confirmed but before the ack transcribes the job
    again on redelivery; the same id then lets the indexer and every downstream consumer
    drop the repeat (they deduplicate on `message_id`), so each job ends exactly once. Not
    the upload's id: a second upload of the job (a producer's retry, or a conflicting one
    that reached a worker that never saw the job) must not make a second completion.
    """
    return uuid.uuid5(event.job_id, f"outcome:{event.tenant_id}:{outcome}")


def run_in_daemon_thread(
    fn: Callable[[], T], *, name: str, after: Callable[[], object] | None = None
) -> tuple[asyncio.Future[T], threading.Thread]:
    """Run blocking `fn` on a daemon thread; its result arrives as a future on this loop.

    A daemon thread (not the default executor) so a worker told to stop can exit even while
    the model is in the middle of a window; the job then goes back to the queue. `after`
    runs on that thread once `fn` has returned or raised, before the result is handed over.
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
        if after is not None:
            try:
                after()
            except Exception:
                log.exception("after_work_failed", thread=name)
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
        admission: Admission,
        dead_letter: DeadLetter,
        worker: str,
        producer: str,
        policy: JobPolicy | None = None,
        clock: Callable[[], float] = time.monotonic,
        marks: CancelMarks | None = None,
        diarizer: Diarizer | None = None,
        long_audio: LongAudio | None = None,
        after_work: Callable[[], object] | None = None,
    ) -> None:
        """`after_work`: run on the worker thread once a job's or a chunk's blocking work
        (inference, the split, diarization) has ended, e.g. to hand its memory back."""
        self._engine = engine
        self._diarizer = diarizer or Diarizer()
        self._source = source
        self._publish = publish
        self._admission = admission
        self._dead_letter = dead_letter
        self._worker = worker
        self._producer = producer
        self._policy = policy or JobPolicy()
        self._clock = clock
        self._marks = marks
        self._long = long_audio
        self._after_work = after_work
        self._chunks_done: dict[tuple[str, uuid.UUID, int], None] = {}
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
        """The subscriber: returning acks, raising nacks for redelivery.

        Refused uploads (unknown tenant, a conflicting definition) are dead-lettered before
        any work. A job cancelled (or deleted) by request is acked without an outcome: never
        started when its mark is there on arrival, stopped at the next segment when it
        appears later. The indexer, which decided the cancel, announces it.
        """
        verdict = self._admission.check(event)
        if isinstance(verdict, Refusal):
            await self._dead_letter(delivery, code=verdict.code, reason=verdict.reason)
            metrics.REFUSED.labels(str(verdict.code)).inc()
            return
        if verdict is Verdict.ALREADY_CONFIRMED:
            metrics.SKIPPED.inc()
            log.info(
                "transcription_skipped",
                reason="outcome_already_confirmed",
                event_id=str(event.event_id),
                attempt=delivery.attempt,
            )
            return
        if await self._cancel_requested(event):
            metrics.CANCELLED.labels("queued").inc()
            log.info("cancelled_job_skipped", attempt=delivery.attempt)
            return
        try:
            outcome = await self.transcribe(event, attempt=delivery.attempt)
        except CancelledByRequest:
            metrics.CANCELLED.labels("running").inc()
            log.info("transcription_cancelled", attempt=delivery.attempt)
            return
        final = isinstance(outcome, TranscriptCompletedV1 | TranscriptionChunkedV1) or (
            isinstance(outcome, TranscriptionFailedV1) and not outcome.retryable
        )
        self._admission.confirmed(event, final=final)

    async def on_chunk_requested(
        self, event: TranscriptionChunkRequestedV1, delivery: Delivery
    ) -> None:
        """The chunk subscriber: transcribe one chunk, publish its result, return (ack).

        A chunk of a cancelled job is acked without work (so a cancel stops the job's
        remaining chunks, whichever workers hold them); a chunk this process already
        confirmed is acked again without work. A permanent failure of a chunk fails the
        job (`transcription.failed.v1`): its transcript could never be whole.
        """
        if event.tenant_id not in self._admission.tenants:
            await self._dead_letter(
                delivery,
                code=RefusalCode.UNKNOWN_TENANT,
                reason=f"tenant {event.tenant_id!r} is not served by this deployment",
            )
            metrics.REFUSED.labels(str(RefusalCode.UNKNOWN_TENANT)).inc()
            return
        key = (event.tenant_id, event.job_id, event.chunk.index)
        if key in self._chunks_done:
            metrics.CHUNKS.labels("skipped").inc()
            log.info("chunk_skipped", chunk=event.chunk.index, reason="already_confirmed")
            return
        if await self._cancel_requested(event):
            metrics.CHUNKS.labels("cancelled").inc()
            log.info("cancelled_chunk_skipped", chunk=event.chunk.index)
            return
        attempt = delivery.attempt
        started_at = self._clock()
        cancel = threading.Event()
        self._cancels.add(cancel)
        self._idle.clear()
        metrics.IN_FLIGHT.inc()
        outcome: Event
        try:
            try:
                outcome = await self._transcribe_chunk(event, cancel, attempt, started_at)
            except CancelledByRequest:
                metrics.CHUNKS.labels("cancelled").inc()
                log.info("chunk_cancelled", chunk=event.chunk.index, attempt=attempt)
                return
            except JobFailure as failure:
                outcome = self._chunk_failed(event, failure.code, failure.message, attempt)
                outcome = outcome.model_copy(update={"retryable": failure.retryable})
            except (JobCancelled, asyncio.CancelledError):
                cancel.set()
                metrics.HANDED_BACK.inc()
                log.warning("chunk_handed_back", chunk=event.chunk.index, attempt=attempt)
                raise
            except TransientError:
                log.warning("chunk_deferred", chunk=event.chunk.index, attempt=attempt)
                raise
            except Exception as exc:
                if attempt <= self._policy.delivery_limit:
                    raise
                log.exception("chunk_gave_up", chunk=event.chunk.index, attempt=attempt)
                outcome = self._chunk_failed(
                    event,
                    ErrorCode.INTERNAL_ERROR,
                    f"chunk {event.chunk.index} failed on every delivery; last error: {exc!r}",
                    attempt,
                )
        finally:
            self._cancels.discard(cancel)
            if not self._cancels:
                self._idle.set()
            metrics.IN_FLIGHT.dec()
        await self._publish(outcome)
        if isinstance(outcome, TranscriptionChunkTranscribedV1):
            metrics.CHUNKS.labels("transcribed").inc()
            self._chunks_done[key] = None
            while len(self._chunks_done) > _REMEMBERED_CHUNKS:
                del self._chunks_done[next(iter(self._chunks_done))]
            log.info(
                "chunk_transcribed",
                chunk=event.chunk.index,
                chunks=event.chunk_count,
                attempt=attempt,
                audio_seconds=outcome.audio_seconds,
                processing_seconds=outcome.processing_seconds,
                segments=len(outcome.segments),
            )
        else:
            self._log_outcome(outcome, self._clock() - started_at)

    async def _transcribe_chunk(
        self,
        event: TranscriptionChunkRequestedV1,
        cancel: threading.Event,
        attempt: int,
        started_at: float,
    ) -> TranscriptionChunkTranscribedV1:
        chunk = event.chunk
        options = event.options
        wants_words = options.word_timestamps or self._policy.word_timestamps
        request = EngineRequest(
            language=event.language,
            # Words place an overlap's cut exactly; kept in the result only if asked for.
            word_timestamps=wants_words or has_overlap(chunk),
            task=options.task or "transcribe",
            initial_prompt=options.initial_prompt,
            hotwords=options.hotwords,
            temperature=options.temperature,
            beam_size=options.beam_size,
            vad_filter=options.vad_filter,
            model=event.model,
        )
        model = self._served_model(request)
        segments: list[Segment] = []
        audio_seconds = 0.0
        if chunk.core_seconds > 0:
            async with self._source.fetch(str(chunk.audio_uri), tenant_id=event.tenant_id) as audio:
                engine = self._engine
                result = await self._off_loop(
                    event,
                    lambda: engine.transcribe(
                        audio.path, request, on_segment=_ignore_segment, cancelled=cancel
                    ),
                    cancel,
                    name=f"chunk-{event.job_id}-{chunk.index}",
                )
            audio_seconds = result.duration_seconds
            segments = keep_owned(result.segments, chunk, words=wants_words)
            model = result.model_name or model
            # The audio decoded and transcribed, counted once per chunk done: summed over
            # the fleet, what a job cost (a killed worker's chunk in hand is done again).
            metrics.AUDIO_SECONDS.observe(audio_seconds)
            inference = self._clock() - started_at
            metrics.TRANSCRIPTION_SECONDS.observe(inference)
            if audio_seconds > 0:
                metrics.REAL_TIME_FACTOR.observe(inference / audio_seconds)
        return TranscriptionChunkTranscribedV1(
            **self._chunk_envelope(event),
            event_id=chunk_event_id(event.job_id, event.tenant_id, "transcribed", chunk.index),
            chunk_index=chunk.index,
            chunk_count=event.chunk_count,
            core_start=chunk.core_start,
            core_end=chunk.core_end,
            model=model,
            language=event.language,
            segments=segments,
            audio_seconds=round(audio_seconds, 3),
            processing_seconds=round(self._clock() - started_at, 3),
            worker=self._worker,
            attempt=attempt,
        )

    def _chunk_failed(
        self, event: TranscriptionChunkRequestedV1, code: ErrorCode, message: str, attempt: int
    ) -> TranscriptionFailedV1:
        return TranscriptionFailedV1(
            **self._chunk_envelope(event),
            event_id=outcome_event_id(event, f"failed:{code}"),
            code=code,
            message=message[:_MAX_MESSAGE],
            retryable=False,
            attempts=attempt,
        )

    def _chunk_envelope(self, event: TranscriptionChunkRequestedV1) -> dict[str, Any]:
        return {
            "job_id": event.job_id,
            "tenant_id": event.tenant_id,
            "correlation_id": event.correlation_id,
            "producer": self._producer,
            "job_fingerprint": event.job_fingerprint,
        }

    async def _cancel_requested(self, event: Event) -> bool:
        if self._marks is None:
            return False
        try:
            return await self._marks.is_marked(event.tenant_id, event.job_id)
        except OSError as exc:
            # The media volume is away: the job could not be fetched either. Back off.
            raise TransientError(f"cannot read the cancel mark: {exc!r}") from exc

    async def _watch_for_cancel(self, event: Event, cancel: threading.Event) -> bool:
        """Poll the job's cancel mark until it appears (then stop the engine) or the job ends."""
        while not cancel.is_set():
            await asyncio.sleep(self._policy.cancel_poll_seconds)
            try:
                if await self._cancel_requested(event):
                    cancel.set()
                    return True
            except TransientError as exc:
                log.warning("cancel_mark_unreadable", error=str(exc))
        return False

    async def transcribe(self, event: AudioUploadedV1, *, attempt: int) -> Event:
        """Run the job and publish its outcome; returns the confirmed outcome event.

        Raises `CancelledByRequest` (nothing published) when the job's cancel mark appears
        while it runs.
        """
        started_at = self._clock()
        request = self._engine_request(event)
        try:
            model = self._served_model(request)
        except JobFailure as refused:
            # Refused before any work: no `started`, no inference, never a silent downgrade.
            failed = TranscriptionFailedV1(
                **self._envelope(event),
                event_id=outcome_event_id(event, f"failed:{refused.code}"),
                code=refused.code,
                message=refused.message[:_MAX_MESSAGE],
                retryable=False,
                attempts=attempt,
            )
            await self._publish(failed)
            self._log_outcome(failed, self._clock() - started_at)
            return failed
        background: list[asyncio.Task[None]] = []
        background.append(
            asyncio.create_task(
                self._best_effort(
                    TranscriptionStartedV1(
                        **self._envelope(event), attempt=attempt, worker=self._worker, model=model
                    )
                )
            )
        )
        cancel = threading.Event()
        self._cancels.add(cancel)
        self._idle.clear()
        metrics.IN_FLIGHT.inc()
        try:
            outcome: Event
            try:
                result = await self._run(event, request, cancel, background, model)
            except JobFailure as failure:
                outcome = TranscriptionFailedV1(
                    **self._envelope(event),
                    event_id=outcome_event_id(event, f"failed:{failure.code}"),
                    code=failure.code,
                    message=failure.message[:_MAX_MESSAGE],
                    retryable=failure.retryable,
                    attempts=attempt,
                )
            except CancelledByRequest:
                await _settle(background)
                raise
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
                if isinstance(result, _Plan):
                    outcome = self._plan_event(event, result, model, attempt)
                else:
                    outcome = self._completed(event, result, model, attempt, started_at)
        finally:
            self._cancels.discard(cancel)
            if not self._cancels:
                self._idle.set()
            metrics.IN_FLIGHT.dec()
        # The outcome is the one publish the ack depends on; the others finish alongside it.
        # A plan's work items are all confirmed by now (`_split`): whoever hears the plan
        # can count on its chunks being on the broker.
        await asyncio.gather(self._publish(outcome), _settle(background))
        self._log_outcome(outcome, self._clock() - started_at)
        return outcome

    def _completed(
        self,
        event: AudioUploadedV1,
        result: EngineResult,
        model: str,
        attempt: int,
        started_at: float,
    ) -> TranscriptCompletedV1:
        return TranscriptCompletedV1(
            **self._envelope(event),
            event_id=outcome_event_id(event, "completed"),
            language=result.language,
            language_probability=result.language_probability,
            duration_seconds=result.duration_seconds,
            model=result.model_name or model,
            text=result.text,
            segments=result.segments,
            processing_seconds=round(self._clock() - started_at, 3),
            attempt=attempt,
            empty_reason=result.empty_reason,
        )

    def _work_item(
        self,
        event: AudioUploadedV1,
        cut: Cut,
        expected: int,
        duration: float,
        model: str,
        language: str,
    ) -> TranscriptionChunkRequestedV1:
        """Chunk `cut`'s work item, as soon as its audio is written (the split goes on).

        `expected` and `duration` are what the planner knows then (the estimated count,
        the probed duration): the plan has the final ones. Every field is a function of
        the upload and the settings, so a redelivered upload hands out equal items.
        """
        (spec,) = chunk_specs([cut])
        return TranscriptionChunkRequestedV1(
            **self._envelope(event),
            event_id=chunk_event_id(event.job_id, event.tenant_id, "requested", spec.index),
            chunk=spec,
            chunk_count=expected,
            duration_seconds=round(duration, 3),
            model=model,
            language=language,
            options=event.options,
        )

    def _plan_event(
        self, event: AudioUploadedV1, plan: _Plan, model: str, attempt: int
    ) -> TranscriptionChunkedV1:
        """The plan of a split job (its work items are out already)."""
        specs = chunk_specs(plan.planned.cuts)
        duration = round(plan.planned.duration_seconds, 3)
        envelope = self._envelope(event)
        return TranscriptionChunkedV1(
            **envelope,
            event_id=chunk_event_id(event.job_id, event.tenant_id, "planned"),
            duration_seconds=duration,
            model=model,
            language=plan.language,
            language_probability=plan.language_probability,
            chunks=specs,
            worker=self._worker,
            attempt=attempt,
            speaker_turns=None
            if plan.turns is None
            else [SpeakerTurn(start=t.start, end=t.end, speaker=t.speaker) for t in plan.turns],
        )

    def _engine_request(self, event: AudioUploadedV1) -> EngineRequest:
        """Every option the job asks for, carried to the engine (none ignored)."""
        options = event.options
        return EngineRequest(
            language=options.language,
            word_timestamps=options.word_timestamps or self._policy.word_timestamps,
            task=options.task or "transcribe",
            initial_prompt=options.initial_prompt,
            hotwords=options.hotwords,
            temperature=options.temperature,
            beam_size=options.beam_size,
            vad_filter=options.vad_filter,
            model=options.model,
        )

    def _served_model(self, request: EngineRequest) -> str:
        """The model that will serve `request` (`JobFailure` when none of this worker's can)."""
        if isinstance(self._engine, ModelChooser):
            return self._engine.check(request)
        return self._engine.model_name

    async def _run(
        self,
        event: AudioUploadedV1,
        request: EngineRequest,
        cancel: threading.Event,
        background: list[asyncio.Task[None]],
        model: str,
    ) -> EngineResult | _Plan:
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

        async with self._source.fetch(str(event.audio_uri), tenant_id=event.tenant_id) as audio:
            if self._long is not None:
                long = self._long
                duration = await asyncio.to_thread(probe_duration, audio.path)
                if duration > long.max_duration_seconds:
                    raise JobFailure(
                        ErrorCode.AUDIO_TOO_LONG,
                        f"the audio lasts {duration:.1f} s; this service accepts at most "
                        f"{long.max_duration_seconds:.0f} s",
                    )
                if duration > long.threshold_seconds:
                    return await self._split(event, request, model, audio.path, duration, cancel)
            future, thread = run_in_daemon_thread(
                lambda: self._transcribe_and_label(
                    audio.path, request, event, on_segment=on_segment, cancelled=cancel
                ),
                name=f"inference-{event.job_id}",
                after=self._after_work,
            )
            self._threads.add(thread)
            inference_started = self._clock()
            watcher = (
                asyncio.create_task(self._watch_for_cancel(event, cancel))
                if self._marks is not None
                else None
            )
            try:
                result = await future
            except asyncio.CancelledError:
                cancel.set()
                raise
            except JobCancelled:
                if watcher is not None and watcher.done() and watcher.result():
                    raise CancelledByRequest(str(event.job_id)) from None
                raise
            finally:
                if watcher is not None and not watcher.done():
                    watcher.cancel()
            self._threads.discard(thread)
            inference = self._clock() - inference_started
            metrics.TRANSCRIPTION_SECONDS.observe(inference)
            if result.duration_seconds > 0:
                metrics.REAL_TIME_FACTOR.observe(inference / result.duration_seconds)
            return result

    def _transcribe_and_label(
        self,
        path: Path,
        request: EngineRequest,
        event: AudioUploadedV1,
        *,
        on_segment: OnSegment,
        cancelled: threading.Event,
    ) -> EngineResult:
        """The engine's transcript, its segments labelled by speaker when the job asks."""
        result = self._engine.transcribe(path, request, on_segment=on_segment, cancelled=cancelled)
        options = event.options
        if options.diarize is False or not result.segments:
            return result
        if cancelled.is_set():
            raise JobCancelled("shutdown before diarization")
        turns = self._speaker_turns(path, event, cancelled)
        return dataclasses.replace(result, segments=label_segments(result.segments, turns))

    def _speaker_turns(
        self, path: Path, event: AudioUploadedV1, cancelled: threading.Event
    ) -> list[Turn]:
        """Who spoke when in the whole file at `path`, as the job asks (blocking)."""
        options = event.options
        began = time.perf_counter()
        turns = self._diarizer.turns(
            path,
            options.diarize,
            min_speakers=options.min_speakers,
            max_speakers=options.max_speakers,
            cancelled=cancelled,
        )
        log.info(
            "speakers_diarized",
            mode="channels" if options.diarize == "channels" else self._diarizer.engine.name,
            speakers=len({t.speaker for t in turns}),
            turns=len(turns),
            duration_ms=round((time.perf_counter() - began) * 1000),
        )
        return turns

    async def _split(
        self,
        event: AudioUploadedV1,
        request: EngineRequest,
        model: str,
        path: Path,
        duration: float,
        cancel: threading.Event,
    ) -> _Plan:
        """Plan a long job: chunks written to the store, each handed out once written.

        The split runs on a thread; each chunk's work item is published from the loop as
        soon as the chunk's audio is in the store, so idle workers start on the first
        chunks while the planner still reads the rest. The language is decided once, on
        the first speech (`on_speech`, on the planner's thread), before any item goes out.
        A chunk whose item the broker confirmed is marked in the store; a redelivered
        upload (the planner killed mid-split) hands out only the chunks not marked.
        Returns once every item handed out is confirmed.
        """
        assert self._long is not None
        long = self._long
        detect = request.language is None and not models.is_english_only(model)
        sink = long.store.sink(event.tenant_id, event.job_id)
        started = self._clock()
        loop = asyncio.get_running_loop()
        engine = self._engine
        language: tuple[str, float] | None = None if detect else (request.language or "en", 1.0)
        waiting: list[tuple[Cut, int]] = []
        handed: list[concurrent.futures.Future[None]] = []
        skipped = 0

        async def hand_out(item: TranscriptionChunkRequestedV1) -> None:
            await self._publish(item)
            await asyncio.to_thread(sink.mark_published, item.chunk.index)

        def on_cut(cut: Cut, expected: int) -> None:  # on the planner's thread
            nonlocal skipped
            for future in handed:  # a publish that failed stops the split
                error = future.exception() if future.done() else None
                if error is not None:
                    raise error
            if language is None:
                waiting.append((cut, expected))
                return
            if sink.is_published(cut.index):
                skipped += 1
                return
            item = self._work_item(event, cut, expected, duration, model, language[0])
            handed.append(asyncio.run_coroutine_threadsafe(hand_out(item), loop))

        def on_speech(speech: Samples | None) -> None:  # on the planner's thread
            nonlocal language
            if speech is None or not isinstance(engine, LanguageDetector):
                language = ("en", 0.0)  # nothing to listen to: English, unsure
            else:
                language = engine.detect_language(speech, replace(request, model=model))
            for cut, expected in waiting:
                on_cut(cut, expected)
            waiting.clear()

        def split() -> Planned:
            blocks = StreamedAudio(
                path,
                max_duration_seconds=long.max_duration_seconds,
                block_seconds=long.policy.block_seconds,
            )
            return plan_chunks(
                blocks,
                estimated_seconds=duration,
                policy=long.policy,
                sink=sink,
                sample_speech=detect,
                cancelled=cancel,
                on_cut=on_cut,
                on_speech=on_speech,
            )

        # The whole file is diarized once, beside the split (a second reader of the file),
        # so that a speaker keeps one label across chunks; the indexer labels with it.
        diarizing = (
            asyncio.ensure_future(
                self._off_loop(
                    event,
                    lambda: self._speaker_turns(path, event, cancel),
                    cancel,
                    name=f"diarize-{event.job_id}",
                )
            )
            if event.options.diarize is not False
            else None
        )
        try:
            try:
                planned = await self._off_loop(event, split, cancel, name=f"split-{event.job_id}")
            finally:
                # Whatever went out is confirmed (or failed) before this attempt ends.
                settled = await asyncio.gather(
                    *(asyncio.wrap_future(f) for f in handed), return_exceptions=True
                )
            for outcome in settled:
                if isinstance(outcome, BaseException):
                    raise outcome
        except BaseException:
            if diarizing is not None:
                diarizing.cancel()  # sets `cancel`: its thread stops at the next block
                await asyncio.gather(diarizing, return_exceptions=True)
            raise
        assert language is not None
        log.info(
            "audio_split",
            chunks=len(planned.cuts),
            silence_cuts=sum(c.silence_cut for c in planned.cuts),
            already_handed_out=skipped,
            duration_seconds=round(planned.duration_seconds, 3),
            language=language[0],
            split_seconds=round(self._clock() - started, 3),
        )
        turns = None if diarizing is None else await diarizing
        return _Plan(planned, language[0], language[1], turns)

    async def _off_loop(
        self, event: Event, fn: Callable[[], T], cancel: threading.Event, *, name: str
    ) -> T:
        """`fn` on a daemon thread, stopped by `cancel` and by the job's cancel mark."""
        future, thread = run_in_daemon_thread(fn, name=name, after=self._after_work)
        self._threads.add(thread)
        watcher = (
            asyncio.create_task(self._watch_for_cancel(event, cancel))
            if self._marks is not None
            else None
        )
        try:
            result = await future
        except asyncio.CancelledError:
            cancel.set()
            raise
        except JobCancelled:
            if watcher is not None and watcher.done() and watcher.result():
                raise CancelledByRequest(str(event.job_id)) from None
            raise
        finally:
            if watcher is not None and not watcher.done():
                watcher.cancel()
        self._threads.discard(thread)
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
            "job_fingerprint": event.job_fingerprint(),
        }

    def _log_outcome(self, outcome: Event, wall: float) -> None:
        metrics.PROCESSING_SECONDS.observe(wall)
        if isinstance(outcome, TranscriptionChunkedV1):
            metrics.JOBS.labels(outcome="chunked", code="").inc()
            log.info(
                "transcription_chunked",
                attempt=outcome.attempt,
                chunks=len(outcome.chunks),
                language=outcome.language,
                duration_seconds=outcome.duration_seconds,
                model=outcome.model,
                duration_ms=round(wall * 1000, 1),
            )
        elif isinstance(outcome, TranscriptCompletedV1):
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


def _ignore_segment(_segment: Segment, _processed: float, _duration: float) -> None:
    """A chunk reports no progress of its own: the indexer counts finished chunks."""


async def _settle(tasks: list[asyncio.Task[None]]) -> None:
    """Wait for background publishes (they never raise: see `_best_effort`)."""
    if tasks:
        await asyncio.gather(*tasks, return_exceptions=True)
