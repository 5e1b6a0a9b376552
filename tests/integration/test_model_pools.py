"""Model pools on a real RabbitMQ: a job is transcribed only by a worker of its model.

Two `scribe-transcriber` processes, one serving tiny.en (the default), one serving base;
external producers publish plain `audio.uploaded.v1` and the routers inside the workers send
each job to its model's pool. Asserted from what downstream hears: `transcription.started`
names the model and the worker that took the job.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from contracts.errors import ErrorCode
from contracts.transcription import (
    TranscriptCompletedV1,
    TranscriptionFailedV1,
    TranscriptionStartedV1,
)
from scribe_runtime.topology import TRANSCRIBER_QUEUE, pool_queue
from tests.speech import SCRIPTS, synthesize
from tests.support.workers import (
    EventTap,
    WorkerProcess,
    publish,
    put,
    queue_counts,
    upload,
    wait_for_consumers,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]


async def test_base_jobs_reach_only_the_base_worker_and_the_rest_the_default_pool(
    amqp_url: str, media: Path, tmp_path: Path, tap: EventTap, workers: list[WorkerProcess]
) -> None:
    workers.append(WorkerProcess("tiny-worker", amqp_url, media, tmp_path))
    workers.append(
        WorkerProcess("base-worker", amqp_url, media, tmp_path, SCRIBE_TRANSCRIBER_MODEL="base")
    )
    await wait_for_consumers(amqp_url, 1)
    await wait_for_consumers(amqp_url, 1, queue=pool_queue("base").name)
    texts = list(SCRIPTS.values())
    speech = [put(media, synthesize(texts[i % len(texts)]), f"job-{i}.wav") for i in range(6)]
    base_jobs = [upload(path, model="base") for path in speech[:3]]
    default_jobs = [upload(speech[3]), upload(speech[4]), upload(speech[5], model="tiny.en")]
    await publish(amqp_url, *base_jobs, *default_jobs)

    await tap.wait_until(lambda: len(tap.of(TranscriptCompletedV1)) >= 6, seconds=240)
    for job in base_jobs:
        (started,) = tap.of(TranscriptionStartedV1, job.job_id)
        assert (started.model, started.worker) == ("base", "base-worker")
        (completed,) = tap.of(TranscriptCompletedV1, job.job_id)
        assert completed.model == "base"
        assert completed.text
    for job in default_jobs:
        (started,) = tap.of(TranscriptionStartedV1, job.job_id)
        assert (started.model, started.worker) == ("tiny.en", "tiny-worker")
        assert tap.of(TranscriptCompletedV1, job.job_id)[0].model == "tiny.en"
    for queue in (TRANSCRIBER_QUEUE.name, pool_queue("tiny.en").name, pool_queue("base").name):
        assert (await queue_counts(amqp_url, queue))[0] == 0, queue


async def test_a_model_no_pool_serves_fails_the_job_without_transcribing(
    amqp_url: str, media: Path, tmp_path: Path, tap: EventTap, workers: list[WorkerProcess]
) -> None:
    workers.append(WorkerProcess("tiny-worker", amqp_url, media, tmp_path))
    await wait_for_consumers(amqp_url, 1)
    path = put(media, synthesize(SCRIPTS["weather"]), "weather.wav")
    unserved = upload(path, model="large-v3")
    unnameable = upload(path, model="no such/model")
    served = upload(path)
    await publish(amqp_url, unserved, unnameable, served)

    await tap.wait_for(TranscriptCompletedV1, served.job_id)
    for job in (unserved, unnameable):
        failed = await tap.wait_for(TranscriptionFailedV1, job.job_id)
        assert failed.code == ErrorCode.MODEL_UNAVAILABLE
        assert not failed.retryable
        assert tap.of(TranscriptionStartedV1, job.job_id) == []
        assert tap.of(TranscriptCompletedV1, job.job_id) == []
    await asyncio.sleep(0.5)  # nothing else arrives for them
    assert len(tap.of(TranscriptionFailedV1, unserved.job_id)) == 1
    assert (await queue_counts(amqp_url, TRANSCRIBER_QUEUE.dead_letter_queue))[0] == 0
