"""The job handler with fakes at every port: event sequence, failures, acks, cancellation."""

from __future__ import annotations

import asyncio
import itertools
import threading
from typing import Any

import pytest

from contracts.errors import ErrorCode
from contracts.transcription import (
    TranscriptCompletedV1,
    TranscriptionFailedV1,
    TranscriptionProgressV1,
    TranscriptionStartedV1,
)
from services.transcriber.tests.fakes import (
    DeadLetters,
    FakeEngine,
    FakeSource,
    Recorder,
    busy_sleep,
    upload,
)
from transcriber.admission import Admission
from transcriber.engine import EngineRequest
from transcriber.errors import JobCancelled, JobFailure
from transcriber.service import JobPolicy, Transcriber


def make(
    engine: FakeEngine | None = None,
    source: FakeSource | None = None,
    publish: Recorder | None = None,
    **policy: Any,
) -> tuple[Transcriber, FakeEngine, FakeSource, Recorder]:
    engine = engine or FakeEngine()
    source = source or FakeSource()
    publish = publish or Recorder()
    service = Transcriber(
        engine=engine,
        source=source,
        publish=publish,
        admission=Admission(("acme",)),
        dead_letter=DeadLetters(),
        worker="worker-1",
        producer="scribe-transcriber/test",
        policy=JobPolicy(**policy),
    )
    return service, engine, source, publish


async def test_started_then_progress_then_completed_with_the_transcript() -> None:
    service, _, source, events = make(FakeEngine(segments=4, duration=20.0))
    job = upload(word_timestamps=True, language="en")

    outcome = await service.transcribe(job, attempt=2)

    assert isinstance(events.events[0], TranscriptionStartedV1)
    assert events.events[0].attempt == 2
    assert events.events[0].worker == "worker-1"
    assert events.events[0].model == "fake-tiny"
    assert isinstance(events.events[-1], TranscriptCompletedV1)
    assert outcome is events.events[-1]
    assert outcome.text == "word0 word1 word2 word3"
    assert [s.id for s in outcome.segments] == [0, 1, 2, 3]
    assert all(s.words for s in outcome.segments)
    assert (outcome.language, outcome.model, outcome.attempt) == ("en", "fake-tiny", 2)
    assert outcome.duration_seconds == 20.0
    progress = events.of(TranscriptionProgressV1)
    assert progress, "progress is reported as segments finish"
    assert all(isinstance(p, TranscriptionProgressV1) and p.progress < 1 for p in progress)
    for event in events.events:
        assert event.job_id == job.job_id
        assert event.correlation_id == job.correlation_id
        assert event.tenant_id == "acme"
        assert event.producer == "scribe-transcriber/test"
    assert source.released == 1, "the fetched audio is released after the job"


async def test_words_only_when_asked_or_configured() -> None:
    service, engine, _, _ = make()
    outcome = await service.transcribe(upload(), attempt=1)
    assert isinstance(outcome, TranscriptCompletedV1)
    assert all(s.words is None for s in outcome.segments)

    service, engine, _, _ = make(word_timestamps=True)
    outcome = await service.transcribe(upload(), attempt=1)
    assert isinstance(outcome, TranscriptCompletedV1)
    assert all(s.words for s in outcome.segments)
    assert engine.requests[0].word_timestamps is True


async def test_progress_is_throttled_to_every_five_percent() -> None:
    # 200 segments of 0.5 % each, all finishing "at once": only the fraction gate opens.
    service, _, _, events = make(
        FakeEngine(segments=200, duration=100.0), progress_min_interval_seconds=3600
    )
    await service.transcribe(upload(), attempt=1)
    fractions = [e.progress for e in events.of(TranscriptionProgressV1)]  # type: ignore[attr-defined]
    assert 15 <= len(fractions) <= 20
    assert fractions == sorted(fractions)
    assert all(b - a >= 0.05 - 1e-9 for a, b in itertools.pairwise(fractions))


@pytest.mark.parametrize(
    "code",
    [
        ErrorCode.UNSUPPORTED_MEDIA,
        ErrorCode.CORRUPT_AUDIO,
        ErrorCode.AUDIO_TOO_LONG,
        ErrorCode.MODEL_ERROR,
    ],
)
async def test_a_permanent_engine_failure_is_published_and_the_handler_returns(
    code: ErrorCode,
) -> None:
    service, _, _, events = make(FakeEngine(error=JobFailure(code, "explained")))
    outcome = await service.transcribe(upload(), attempt=3)  # returning = ack
    assert isinstance(outcome, TranscriptionFailedV1)
    assert (outcome.code, outcome.message, outcome.attempts) == (code, "explained", 3)
    assert [type(e) for e in events.events] == [TranscriptionStartedV1, TranscriptionFailedV1]


async def test_a_missing_source_fails_the_job_without_running_the_model() -> None:
    service, engine, _, _events = make(
        source=FakeSource(JobFailure(ErrorCode.SOURCE_NOT_FOUND, "no file"))
    )
    outcome = await service.transcribe(upload(), attempt=1)
    assert isinstance(outcome, TranscriptionFailedV1)
    assert outcome.code == ErrorCode.SOURCE_NOT_FOUND
    assert engine.requests == []


async def test_when_the_outcome_cannot_be_confirmed_the_handler_raises_for_redelivery() -> None:
    service, _, _, events = make(publish=Recorder(fail=(TranscriptCompletedV1,)))
    with pytest.raises(ConnectionError):
        await service.transcribe(upload(), attempt=1)
    assert not events.of(TranscriptCompletedV1)


async def test_lost_started_or_progress_events_do_not_fail_the_job() -> None:
    service, _, _, events = make(
        publish=Recorder(fail=(TranscriptionStartedV1, TranscriptionProgressV1))
    )
    outcome = await service.transcribe(upload(), attempt=1)
    assert isinstance(outcome, TranscriptCompletedV1)
    assert events.events == [outcome]


async def test_an_unexpected_error_is_redelivered_until_the_last_allowed_delivery() -> None:
    service, _, _, events = make(FakeEngine(error=KeyError("bug")), delivery_limit=5)
    with pytest.raises(KeyError):
        await service.transcribe(upload(), attempt=5)
    assert not events.of(TranscriptionFailedV1)

    outcome = await service.transcribe(upload(), attempt=6)
    assert isinstance(outcome, TranscriptionFailedV1)
    assert outcome.code == ErrorCode.INTERNAL_ERROR
    assert "KeyError" in outcome.message


async def test_inference_runs_off_the_event_loop() -> None:
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    service, engine, _, _ = make(FakeEngine(work=busy_sleep(0.3)))
    task = asyncio.create_task(ticker())
    try:
        await service.transcribe(upload(), attempt=1)
    finally:
        task.cancel()
    assert ticks > 5, "the loop kept running (heartbeats, shutdown) while the model worked"
    assert engine.thread_names[0].startswith("inference-")


async def test_cancel_in_flight_hands_the_job_back_without_an_outcome() -> None:
    gate = threading.Event()
    service, _, _, events = make(FakeEngine(block=gate))
    job = asyncio.create_task(service.transcribe(upload(), attempt=1))
    for _ in range(200):
        if service.busy and events.events:
            break
        await asyncio.sleep(0.01)
    busy_before = service.busy
    service.cancel_in_flight()
    with pytest.raises(JobCancelled):
        await asyncio.wait_for(job, 10)
    assert (busy_before, service.busy) == (True, False)
    assert [type(e) for e in events.events] == [TranscriptionStartedV1]


async def test_every_option_a_job_asks_for_reaches_the_engine() -> None:
    service, engine, _, _ = make()
    job = upload(
        language="de",
        task="translate",
        initial_prompt="Zyntherix, Siobhan Quaglieri",
        hotwords="Zyntherix",
        temperature=0.2,
        beam_size=3,
        vad_filter=True,
        model="base",
    )

    await service.transcribe(job, attempt=1)

    [request] = engine.requests
    assert (request.language, request.task, request.model) == ("de", "translate", "base")
    assert request.initial_prompt == "Zyntherix, Siobhan Quaglieri"
    assert request.hotwords == "Zyntherix"
    assert (request.temperature, request.beam_size, request.vad_filter) == (0.2, 3, True)


class PoolEngine(FakeEngine):
    """Serves `tiny.en` only, and says so before any work (like FasterWhisperEngine.check)."""

    def check(self, request: EngineRequest) -> str:
        if request.model not in (None, "tiny.en"):
            raise JobFailure(ErrorCode.MODEL_UNAVAILABLE, f"{request.model!r} is not served")
        if request.task == "translate":
            raise JobFailure(ErrorCode.UNSUPPORTED_OPTION, "tiny.en cannot translate")
        return "tiny.en"


@pytest.mark.parametrize(
    ("options", "code"),
    [
        ({"model": "large-v3"}, ErrorCode.MODEL_UNAVAILABLE),
        ({"task": "translate"}, ErrorCode.UNSUPPORTED_OPTION),
    ],
)
async def test_a_job_its_worker_cannot_honour_fails_before_any_work(
    options: dict[str, str], code: ErrorCode
) -> None:
    engine = PoolEngine()
    service, _, source, events = make(engine)

    outcome = await service.transcribe(upload(**options), attempt=1)

    assert isinstance(outcome, TranscriptionFailedV1)
    assert (outcome.code, outcome.retryable) == (code, False)
    assert engine.requests == []  # no inference
    assert source.fetched == []  # not even fetched
    assert [type(e) for e in events.events] == [TranscriptionFailedV1]  # no `started`


async def test_the_model_that_served_the_job_is_the_one_events_name() -> None:
    service, _, _, events = make(PoolEngine())

    outcome = await service.transcribe(upload(), attempt=1)

    assert isinstance(events.events[0], TranscriptionStartedV1)
    assert events.events[0].model == "tiny.en"
    assert isinstance(outcome, TranscriptCompletedV1)
    assert outcome.model == "tiny.en"
