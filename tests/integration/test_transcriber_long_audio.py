"""A long job across real `scribe-transcriber` processes on a real RabbitMQ (tiny.en).

Festival speech read three times (~70 s) with a 20 s threshold and 30 s chunks: the worker
that gets the upload splits it; both workers take its chunks; each chunk is transcribed
once; a redelivered chunk gives the same result under the same id; a cancel stops the
chunks not yet done.
"""

from __future__ import annotations

import asyncio
import itertools
import re
from pathlib import Path
from uuid import UUID

import pytest

from contracts.chunks import (
    TranscriptionChunkedV1,
    TranscriptionChunkRequestedV1,
    TranscriptionChunkTranscribedV1,
    assemble_segments,
)
from contracts.transcription import TranscriptCompletedV1, TranscriptionStartedV1
from scribe_runtime.cancellations import FilesystemCancelMarks
from scribe_runtime.topology import pool_queue
from tests.support.waiting import eventually_async
from tests.support.workers import (
    UPLOAD_TENANT,
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

CHUNKED = {
    "SCRIBE_TRANSCRIBER_CHUNK_THRESHOLD_SECONDS": "20",
    "SCRIBE_TRANSCRIBER_CHUNK_SECONDS": "30",
    "SCRIBE_TRANSCRIBER_CHUNK_SEARCH_SECONDS": "8",
}


def spawn(workers: list[WorkerProcess], amqp_url: str, media: Path, log_dir: Path) -> WorkerProcess:
    worker = WorkerProcess(f"worker-{len(workers) + 1}", amqp_url, media, log_dir, **CHUNKED)
    workers.append(worker)
    return worker


def results(tap: EventTap, job_id: UUID) -> list[TranscriptionChunkTranscribedV1]:
    return tap.of(TranscriptionChunkTranscribedV1, job_id)


async def test_two_workers_share_one_long_jobs_chunks(
    amqp_url: str, media: Path, tmp_path: Path, tap: EventTap, workers: list[WorkerProcess]
) -> None:
    for _ in range(2):
        spawn(workers, amqp_url, media, tmp_path)
    await wait_for_consumers(amqp_url, 2, queue=pool_queue("tiny.en", "chunk").name)
    job = upload(put(media, long_speech(), "long.wav"), word_timestamps=True)
    await publish(amqp_url, job)

    plan = await tap.wait_for(TranscriptionChunkedV1, job.job_id, seconds=120)
    count = len(plan.chunks)
    assert count >= 3
    assert plan.language == "en"
    assert len(tap.of(TranscriptionStartedV1, job.job_id)) == 1
    assert not tap.of(TranscriptCompletedV1, job.job_id), "a long job is not completed here"
    await tap.wait_until(lambda: len(results(tap, job.job_id)) >= count, seconds=300)
    done = results(tap, job.job_id)
    assert sorted(r.chunk_index for r in done) == list(range(count)), "each chunk once"
    assert {r.worker for r in done} == {"worker-1", "worker-2"}, "both took some"
    assert (await queue_counts(amqp_url, pool_queue("tiny.en", "chunk").name))[0] == 0

    segments = assemble_segments(done)
    text = " ".join(s.text for s in segments)
    # The weather script is read three times: "Boston" three times, never doubled by a cut.
    assert len(re.findall(r"\bBoston\b", text)) == 3, text
    for before, after in itertools.pairwise(segments):
        assert before.start <= after.start
    assert segments[-1].end <= plan.duration_seconds + 0.5
    assert segments[-1].start > 50, "absolute times, not chunk-local ones"

    # Redelivered to a worker that never saw it: an equal result under the same event id.
    for worker in workers:
        worker.stop()
    spawn(workers, amqp_url, media, tmp_path)
    await wait_for_consumers(amqp_url, 1, queue=pool_queue("tiny.en", "chunk").name)
    item = next(e for e in tap.of(TranscriptionChunkRequestedV1, job.job_id) if e.chunk.index == 1)
    first = next(r for r in done if r.chunk_index == 1)
    await publish(amqp_url, item)
    await tap.wait_until(lambda: len(results(tap, job.job_id)) > count, seconds=120)
    again = results(tap, job.job_id)[-1]
    assert again.worker == "worker-3"
    assert again.event_id == first.event_id
    assert again.segments == first.segments


async def test_a_cancel_stops_the_chunks_not_yet_done(
    amqp_url: str, media: Path, tmp_path: Path, tap: EventTap, workers: list[WorkerProcess]
) -> None:
    worker = spawn(workers, amqp_url, media, tmp_path)
    await wait_for_consumers(amqp_url, 1, queue=pool_queue("tiny.en", "chunk").name)
    job = upload(put(media, long_speech(), "long.wav"))
    await publish(amqp_url, job)
    plan = await tap.wait_for(TranscriptionChunkedV1, job.job_id, seconds=120)
    await tap.wait_until(lambda: len(results(tap, job.job_id)) >= 1, seconds=120)
    await FilesystemCancelMarks(media).mark(UPLOAD_TENANT, job.job_id)

    async def drained() -> bool:
        ready = (await queue_counts(amqp_url, pool_queue("tiny.en", "chunk").name))[0]
        return ready == 0 and (
            "cancelled_chunk_skipped" in worker.logs() or "chunk_cancelled" in worker.logs()
        )

    await eventually_async(drained, within=120, what="the cancelled job's chunks drained")
    await asyncio.sleep(3)  # a chunk stopped mid-way publishes nothing afterwards either
    assert len(results(tap, job.job_id)) < len(plan.chunks)
