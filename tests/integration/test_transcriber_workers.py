"""`scribe-transcriber` processes on a real RabbitMQ: sharing work, crashes, shutdown.

A job is never lost: a worker killed mid-transcription leaves its message unacked, RabbitMQ
hands it to another worker, and exactly one `transcript.completed.v1` reaches downstream.
"""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import pytest

from contracts.transcription import (
    TranscriptCompletedV1,
    TranscriptionProgressV1,
    TranscriptionStartedV1,
)
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


def spawn(
    workers: list[WorkerProcess], amqp_url: str, media: Path, log_dir: Path, **env: str
) -> WorkerProcess:
    worker = WorkerProcess(f"worker-{len(workers) + 1}", amqp_url, media, log_dir, **env)
    workers.append(worker)
    return worker


async def test_two_worker_processes_share_six_jobs(
    amqp_url: str, media: Path, tmp_path: Path, tap: EventTap, workers: list[WorkerProcess]
) -> None:
    for _ in range(2):
        spawn(workers, amqp_url, media, tmp_path)
    await wait_for_consumers(amqp_url, 2)
    texts = list(SCRIPTS.values())
    jobs = [upload(put(media, synthesize(texts[i % len(texts)]), f"job-{i}.wav")) for i in range(6)]
    await publish(amqp_url, *jobs)

    await tap.wait_until(lambda: len(tap.of(TranscriptCompletedV1)) >= 6, seconds=180)
    for job in jobs:
        assert len(tap.of(TranscriptCompletedV1, job.job_id)) == 1
        assert tap.of(TranscriptCompletedV1, job.job_id)[0].text
    by_worker = [str(s.worker) for s in tap.of(TranscriptionStartedV1)]
    assert sorted(set(by_worker)) == ["worker-1", "worker-2"], by_worker
    assert (await queue_counts(amqp_url))[0] == 0


async def test_a_worker_killed_mid_job_loses_nothing(
    amqp_url: str, media: Path, tmp_path: Path, tap: EventTap, workers: list[WorkerProcess]
) -> None:
    for _ in range(2):
        spawn(workers, amqp_url, media, tmp_path)
    await wait_for_consumers(amqp_url, 2)
    job = upload(put(media, long_speech(), "long.wav"))
    await publish(amqp_url, job)

    # Mid-job: it has started and reported progress, and is far from done (~70 s of audio).
    first = await tap.wait_for(TranscriptionStartedV1, job.job_id, seconds=60)
    await tap.wait_for(TranscriptionProgressV1, job.job_id, seconds=120)
    assert not tap.of(TranscriptCompletedV1, job.job_id)
    victim = next(w for w in workers if w.name == first.worker)
    victim.signal(signal.SIGKILL)
    assert await asyncio.to_thread(victim.wait, 30) == -signal.SIGKILL

    done = await tap.wait_for(TranscriptCompletedV1, job.job_id, seconds=240)
    survivor = next(w for w in workers if w is not victim)
    assert done.attempt == 2
    started = tap.of(TranscriptionStartedV1, job.job_id)
    assert [(s.worker, s.attempt) for s in started] == [(victim.name, 1), (survivor.name, 2)]
    assert "Boston" in done.text
    assert done.duration_seconds > 60
    # Exactly one completion downstream, and nothing left to redeliver.
    await asyncio.sleep(3)
    assert len(tap.of(TranscriptCompletedV1, job.job_id)) == 1
    assert (await queue_counts(amqp_url))[0] == 0


async def test_sigterm_lets_the_job_in_hand_finish(
    amqp_url: str, media: Path, tmp_path: Path, tap: EventTap, workers: list[WorkerProcess]
) -> None:
    worker = spawn(workers, amqp_url, media, tmp_path)
    await wait_for_consumers(amqp_url, 1)
    job = upload(put(media, long_speech(), "long.wav"))
    await publish(amqp_url, job)
    await tap.wait_for(TranscriptionProgressV1, job.job_id, seconds=120)

    worker.signal(signal.SIGTERM)
    assert await asyncio.to_thread(worker.wait, 240) == 0, worker.logs()

    await tap.wait_until(lambda: bool(tap.of(TranscriptCompletedV1, job.job_id)), seconds=10)
    completed = tap.of(TranscriptCompletedV1, job.job_id)
    assert len(completed) == 1
    assert completed[0].attempt == 1
    assert (await queue_counts(amqp_url)) == (0, 0), "acked before exiting"
    assert "transcriber_stopped" in worker.logs()


async def test_sigterm_past_the_grace_period_hands_the_job_back(
    amqp_url: str, media: Path, tmp_path: Path, tap: EventTap, workers: list[WorkerProcess]
) -> None:
    impatient = spawn(
        workers, amqp_url, media, tmp_path, SCRIBE_TRANSCRIBER_GRACEFUL_SHUTDOWN_SECONDS="1"
    )
    await wait_for_consumers(amqp_url, 1)
    job = upload(put(media, long_speech(), "long.wav"))
    await publish(amqp_url, job)
    await tap.wait_for(TranscriptionProgressV1, job.job_id, seconds=120)

    impatient.signal(signal.SIGTERM)
    assert await asyncio.to_thread(impatient.wait, 60) == 0, impatient.logs()
    assert not tap.of(TranscriptCompletedV1, job.job_id)
    assert "transcriber_job_handed_back" in impatient.logs()
    assert (await queue_counts(amqp_url))[0] == 1, "the job is back in the queue"

    spawn(workers, amqp_url, media, tmp_path)
    done = await tap.wait_for(TranscriptCompletedV1, job.job_id, seconds=240)
    assert done.attempt == 2
    assert [s.worker for s in tap.of(TranscriptionStartedV1, job.job_id)] == [
        "worker-1",
        "worker-2",
    ]
