"""A real `scribe-transcriber` process and cancel marks: what the worker does on its own.

The indexer decides and announces a cancel; the worker only has to never start a job
marked before it arrives (even a worker started after the cancel) and stop a running one
at the next segment, then take the next job. The real model on real speech.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from contracts.transcription import (
    TranscriptCompletedV1,
    TranscriptionFailedV1,
    TranscriptionProgressV1,
    TranscriptionStartedV1,
)
from scribe_runtime.cancellations import FilesystemCancelMarks
from tests.speech import SCRIPTS, synthesize
from tests.support.workers import (
    EventTap,
    WorkerProcess,
    long_speech,
    publish,
    put,
    queue_counts,
    upload,
    wait_for_consumers,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]


async def test_a_worker_never_starts_a_job_cancelled_while_queued_and_stops_a_running_one(
    amqp_url: str, media: Path, tmp_path: Path, tap: EventTap, workers: list[WorkerProcess]
) -> None:
    marks = FilesystemCancelMarks(media)
    speech = synthesize(next(iter(SCRIPTS.values())))
    queued, first = upload(put(media, speech, "queued.wav")), upload(put(media, speech, "a.wav"))
    # Cancelled while no worker runs at all: the worker that gets it starts later.
    await marks.mark(queued.tenant_id, queued.job_id)
    await publish(amqp_url, queued, first)
    workers.append(WorkerProcess("worker-1", amqp_url, media, tmp_path))
    await wait_for_consumers(amqp_url, 1)
    await tap.wait_for(TranscriptCompletedV1, first.job_id, seconds=180)
    assert tap.of(TranscriptionStartedV1, queued.job_id) == [], "never started"
    assert tap.of(TranscriptCompletedV1, queued.job_id) == []
    assert tap.of(TranscriptionFailedV1, queued.job_id) == []

    running = upload(put(media, long_speech(), "long.wav"))
    await publish(amqp_url, running)
    await tap.wait_for(TranscriptionProgressV1, running.job_id, seconds=180)
    await marks.mark(running.tenant_id, running.job_id)
    after = upload(put(media, speech, "b.wav"))
    await publish(amqp_url, after)
    # The worker takes the next job only once the running one has stopped (prefetch 1).
    await tap.wait_for(TranscriptCompletedV1, after.job_id, seconds=180)
    assert tap.of(TranscriptCompletedV1, running.job_id) == []
    assert tap.of(TranscriptionFailedV1, running.job_id) == []
    assert (await queue_counts(amqp_url))[0] == 0, "the cancelled job was acked, not requeued"
