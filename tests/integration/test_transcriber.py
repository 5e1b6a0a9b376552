"""The transcriber against a real RabbitMQ with the real model, in this process.

Speech fixtures become `transcript.completed.v1` events whose text matches the script
(WER measured with Whisper's English normaliser); bad inputs become
`transcription.failed.v1` with the right code, acked once and never redelivered.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import jiwer
import pytest
from whisper_normalizer.english import EnglishTextNormalizer

from contracts.errors import ErrorCode
from contracts.transcription import (
    TranscriptCompletedV1,
    TranscriptionFailedV1,
    TranscriptionProgressV1,
    TranscriptionStartedV1,
)
from scribe_runtime.messaging import make_broker, publish_event
from scribe_runtime.settings import SharedSettings
from scribe_runtime.topology import TRANSCRIBER_QUEUE, declare_topology
from tests.speech import SCRIPTS, synthesize
from tests.support.workers import (
    UPLOAD_TENANT,
    EventTap,
    queue_counts,
    upload,
    wait_for_consumers,
)
from transcriber.main import serve
from transcriber.settings import TranscriberSettings

pytestmark = [pytest.mark.integration, pytest.mark.slow]

# Measured: tiny.en transcribes these Festival readings word for word (WER 0.0 for each
# script, 2026-11); the bound leaves room for a different CPU's arithmetic, not for a
# broken pipeline (a wrong file, a lost segment or a truncated decode costs far more).
MAX_WER = 0.10
NORMALISE = EnglishTextNormalizer()


class Harness:
    def __init__(
        self,
        amqp_url: str,
        media: Path,
        tap: EventTap,
        stop: asyncio.Event,
        worker: asyncio.Task[bool],
    ) -> None:
        self.amqp_url = amqp_url
        self.media = media
        self.tap = tap
        self._stop = stop
        self._worker = worker

    async def stop_worker(self) -> None:
        """Stop the worker: anything it left unacked would go back to the queue now."""
        self._stop.set()
        await asyncio.wait_for(self._worker, 60)

    def put(self, source: Path, name: str | None = None) -> Path:
        """Store `source` where the jobs' tenant (`acme`) may read it."""
        target = self.media / "acme" / (name or source.name)
        target.parent.mkdir(exist_ok=True)
        shutil.copyfile(source, target)
        return target

    async def publish(self, *events: object) -> None:
        broker = make_broker(self.amqp_url, service="test")
        async with broker:
            await broker.start()
            for event in events:
                await publish_event(broker, event)  # type: ignore[arg-type]


@pytest.fixture
async def harness(amqp_url: str, tmp_path: Path) -> AsyncIterator[Harness]:
    """A worker in this process on the test's vhost, and a tap on its events."""
    media = tmp_path / "media"
    media.mkdir()
    await declare_topology(amqp_url)
    tap = EventTap(amqp_url)
    await tap.start()
    shared = SharedSettings(amqp_url=amqp_url, media_root=media, tenants=(UPLOAD_TENANT,))
    settings = TranscriberSettings(health_port=None, cpu_threads=min(2, os.cpu_count() or 1))
    stop = asyncio.Event()
    worker = asyncio.create_task(serve(shared, settings, stop))
    try:
        await wait_for_consumers(amqp_url, 1)
        harness = Harness(amqp_url, media, tap, stop, worker)
        yield harness
    finally:
        stop.set()
        await asyncio.wait_for(worker, 60)
        await tap.close()


async def test_speech_becomes_a_completed_transcript_matching_the_script(
    harness: Harness,
) -> None:
    jobs = {
        "weather": upload(
            harness.put(synthesize(SCRIPTS["weather"], fmt="wav")), word_timestamps=True
        ),
        "meeting": upload(harness.put(synthesize(SCRIPTS["meeting"], fmt="flac"))),
        "numbers": upload(
            harness.put(synthesize(SCRIPTS["numbers"], fmt="mp3")),
            word_timestamps=True,
            language="en",
        ),
    }
    await harness.publish(*jobs.values())

    wers = {}
    for name, job in jobs.items():
        done = await harness.tap.wait_for(TranscriptCompletedV1, job.job_id)
        assert done.language == "en"
        assert done.language_probability > 0.5
        assert done.model == "tiny.en"
        assert done.attempt == 1
        assert done.segments, "segments with timings"
        assert all(0 <= s.start <= s.end <= done.duration_seconds + 0.5 for s in done.segments)
        if job.options.word_timestamps:
            words = [w for s in done.segments for w in s.words or []]
            assert len(words) >= len(SCRIPTS[name].split()) - 2
            assert all(0 <= w.probability <= 1 and w.start <= w.end for w in words)
        else:
            assert all(s.words is None for s in done.segments)
        wers[name] = jiwer.wer(NORMALISE(SCRIPTS[name]), NORMALISE(done.text))
        started = harness.tap.of(TranscriptionStartedV1, job.job_id)
        assert len(started) == 1
        assert (started[0].attempt, started[0].model) == (1, "tiny.en")
        assert started[0].correlation_id == job.correlation_id
    print(f"WER per script: {wers}")
    assert all(w <= MAX_WER for w in wers.values()), wers
    # The 12 s meeting has two segments: progress is reported before completion.
    progress = harness.tap.of(TranscriptionProgressV1, jobs["meeting"].job_id)
    assert progress
    assert 0 < progress[0].progress < 1


async def test_bad_inputs_fail_with_stable_codes_and_are_not_redelivered(
    harness: Harness, tmp_path: Path
) -> None:
    text = tmp_path / "notes.wav"  # the name says audio, the bytes do not
    text.write_text("Minutes of the meeting: nothing was decided.\n" * 50)
    flac = synthesize(SCRIPTS["meeting"], fmt="flac").read_bytes()
    corrupt = tmp_path / "cut.flac"
    corrupt.write_bytes(flac[: len(flac) // 2])
    jobs = {
        ErrorCode.UNSUPPORTED_MEDIA: upload(harness.put(text)),
        ErrorCode.CORRUPT_AUDIO: upload(harness.put(corrupt)),
        ErrorCode.SOURCE_NOT_FOUND: upload(harness.media / "acme" / "never-uploaded.wav"),
        ErrorCode.SOURCE_FORBIDDEN: upload(text),  # outside the tenant's media directory
    }
    await harness.publish(*jobs.values())

    for code, job in jobs.items():
        failed = await harness.tap.wait_for(TranscriptionFailedV1, job.job_id)
        assert failed.code == code, failed.message
        assert failed.attempts == 1
        assert failed.retryable is False
        assert failed.message
    # Acked, not requeued: nothing more arrives, and nothing is waiting in the queue.
    await asyncio.sleep(3)
    for job in jobs.values():
        assert len(harness.tap.of(TranscriptionFailedV1, job.job_id)) == 1
        assert len(harness.tap.of(TranscriptionStartedV1, job.job_id)) == 1
        assert not harness.tap.of(TranscriptCompletedV1, job.job_id)
    await harness.stop_worker()
    assert (await queue_counts(harness.amqp_url))[0] == 0
    assert (await queue_counts(harness.amqp_url, TRANSCRIBER_QUEUE.dead_letter_queue))[0] == 0
