"""Cancel by request: a marked job never starts; a running one stops and the worker moves on.

The cancel marks are the real filesystem adapter under a temporary media root.
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

from contracts.transcription import (
    TranscriptCompletedV1,
    TranscriptionFailedV1,
    TranscriptionStartedV1,
)
from scribe_runtime.amqp import Delivery
from scribe_runtime.cancellations import FilesystemCancelMarks
from services.transcriber.tests.fakes import DeadLetters, FakeEngine, FakeSource, Recorder, upload
from transcriber.admission import Admission
from transcriber.service import JobPolicy, Transcriber


def make(engine: FakeEngine, marks: FilesystemCancelMarks) -> tuple[Transcriber, Recorder]:
    events = Recorder()
    service = Transcriber(
        engine=engine,
        source=FakeSource(),
        publish=events,
        worker="worker-1",
        producer="scribe-transcriber/test",
        policy=JobPolicy(cancel_poll_seconds=0.01),
        marks=marks,
        admission=Admission(("acme",)),
        dead_letter=DeadLetters(),
    )
    return service, events


async def test_a_job_cancelled_while_queued_never_starts(tmp_path: Path) -> None:
    marks = FilesystemCancelMarks(tmp_path)
    engine = FakeEngine()
    # A worker started after the cancel was requested: the mark is all it has to go by.
    service, events = make(engine, marks)
    job = upload()
    await marks.mark(job.tenant_id, job.job_id)

    await service.on_audio_uploaded(job, Delivery(body=b"{}"))  # returns: acked

    assert engine.requests == [], "the engine was never called"
    assert events.of(TranscriptionStartedV1) == []
    assert events.events == [], "no outcome either: the indexer announces the cancel"


async def test_a_running_job_stops_at_the_next_segment_and_the_worker_takes_the_next(
    tmp_path: Path,
) -> None:
    marks = FilesystemCancelMarks(tmp_path)
    slow = threading.Event()  # unset: each segment waits until the job is cancelled
    service, events = make(FakeEngine(segments=3, block=slow), marks)
    running = upload()

    task = asyncio.create_task(service.on_audio_uploaded(running, Delivery(body=b"{}")))
    for _ in range(500):
        if events.of(TranscriptionStartedV1):
            break
        await asyncio.sleep(0.01)
    assert events.of(TranscriptionStartedV1), "the job started"
    await marks.mark(running.tenant_id, running.job_id)
    await asyncio.wait_for(task, timeout=10)  # returned, i.e. acked, without an outcome

    assert events.of(TranscriptCompletedV1) == []
    assert events.of(TranscriptionFailedV1) == []
    assert not service.busy

    slow.set()  # the next job's segments come at once
    nxt = upload()
    await service.on_audio_uploaded(nxt, Delivery(body=b"{}"))
    completed = events.of(TranscriptCompletedV1)
    assert [e.job_id for e in completed] == [nxt.job_id]
