"""A diarized long job through a real `scribe-transcriber` and the real indexer (tiny.en).

Two LibriSpeech readers from `../shared/audio` (skipped when absent) take turns, ten
utterances, ~89 s, with a 20 s chunk threshold and 30 s chunks: the planner diarizes the
whole file once, the indexer labels the assembled transcript with its turns. What a user
sees: every word labelled, each reader keeping one label on both sides of every chunk
boundary, the two readers told apart; by channel on the same conversation as stereo.
"""

from __future__ import annotations

import asyncio
import wave
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from uuid import UUID

import asyncpg
import numpy as np
import pytest

from contracts.chunks import TranscriptionChunkedV1
from contracts.transcription import TranscriptCompletedV1, Word
from indexer.main import wire
from indexer.migrate import prepare_database
from indexer.settings import IndexerSettings
from indexer.store import PostgresTenants
from scribe_runtime.topology import pool_queue
from tests.support.servers import READER
from tests.support.workers import (
    UPLOAD_TENANT,
    EventTap,
    WorkerProcess,
    publish,
    put,
    upload,
    wait_for_consumers,
)
from transcriber.audio import SAMPLE_RATE, iter_blocks

pytestmark = [pytest.mark.integration, pytest.mark.slow]

AUDIO = Path(__file__).resolve().parents[2] / ".." / "shared" / "audio"
READERS = ("1688-142285", "1998-15444")
GAP = 0.5
CHUNKED = {
    "SCRIBE_TRANSCRIBER_CHUNK_THRESHOLD_SECONDS": "20",
    "SCRIBE_TRANSCRIBER_CHUNK_SECONDS": "30",
    "SCRIBE_TRANSCRIBER_CHUNK_SEARCH_SECONDS": "8",
}

Span = tuple[float, float, int]  # start, end, reader


def conversation(target: Path, *, stereo: bool) -> list[Span]:
    """The readers' utterances 0-4 in turn (A0 B0 A1 B1 ...), 0.5 s apart, as a WAV.

    Mono: both in one channel. Stereo: reader n on channel n, silence on the other.
    """
    clips = []
    for i in range(5):
        for reader, name in enumerate(READERS):
            path = AUDIO / f"ls_test-other_{name}-000{i}.flac"
            if not path.exists():
                pytest.skip(f"{path} is absent (../shared/audio)")
            clips.append((reader, np.concatenate(list(iter_blocks(path)), axis=1)[0]))
    gap = int(GAP * SAMPLE_RATE)
    total = sum(c.size + gap for _, c in clips)
    channels = np.zeros((2 if stereo else 1, total), dtype=np.float32)
    spans: list[Span] = []
    at = 0
    for reader, clip in clips:
        channels[reader if stereo else 0, at : at + clip.size] = clip
        spans.append((at / SAMPLE_RATE, (at + clip.size) / SAMPLE_RATE, reader))
        at += clip.size + gap
    pcm = (np.clip(channels.T, -1.0, 1.0) * 32767).astype("<i2")
    with wave.open(str(target), "wb") as out:
        out.setnchannels(channels.shape[0])
        out.setsampwidth(2)
        out.setframerate(SAMPLE_RATE)
        out.writeframes(pcm.tobytes())
    return spans


def reader_of(word: Word, spans: list[Span]) -> int | None:
    middle = (word.start + word.end) / 2
    return next((r for s, e, r in spans if s - GAP / 2 <= middle < e + GAP / 2), None)


@pytest.fixture
async def indexer(database_url: str, amqp_url: str, media: Path) -> AsyncIterator[asyncpg.Pool]:
    """The real indexer (consumer and outbox relay) on the test's vhost and database."""
    await prepare_database(
        database_url, reader_role=READER, reader_password=None, tenants=(UPLOAD_TENANT,)
    )
    async with asyncpg.create_pool(database_url, min_size=1, max_size=4) as pool:
        tenants = PostgresTenants(pool)
        await tenants.refresh()
        wired = wire(
            amqp_url,
            pool,
            tenants,
            IndexerSettings(),
            media_root=media,
            listen_dsn=database_url,
        )
        await wired.broker.start()
        stop = asyncio.Event()
        relay = asyncio.create_task(wired.relay.run(stop))
        try:
            yield pool
        finally:
            stop.set()
            await relay
            await wired.broker.stop()


async def completed_by_indexer(tap: EventTap, job_id: UUID) -> TranscriptCompletedV1:
    await tap.wait_until(
        lambda: any(
            e.producer.startswith("scribe-indexer") for e in tap.of(TranscriptCompletedV1, job_id)
        ),
        seconds=600,
    )
    return next(
        e for e in tap.of(TranscriptCompletedV1, job_id) if e.producer.startswith("scribe-indexer")
    )


async def test_a_long_job_keeps_each_speakers_label_across_its_chunks(
    amqp_url: str,
    media: Path,
    tmp_path: Path,
    tap: EventTap,
    workers: list[WorkerProcess],
    indexer: asyncpg.Pool,
) -> None:
    mono, stereo = tmp_path / "mono.wav", tmp_path / "stereo.wav"
    spans = conversation(mono, stereo=False)
    assert conversation(stereo, stereo=True) == spans
    workers.append(WorkerProcess("worker-1", amqp_url, media, tmp_path, **CHUNKED))
    await wait_for_consumers(amqp_url, 1, queue=pool_queue("tiny.en", "chunk").name)
    by_voice = upload(put(media, mono, "mono.wav"), word_timestamps=True, diarize=True)
    by_channel = upload(put(media, stereo, "stereo.wav"), word_timestamps=True, diarize="channels")
    await publish(amqp_url, by_voice, by_channel)

    for job, exact in ((by_voice, False), (by_channel, True)):
        done = await completed_by_indexer(tap, job.job_id)
        (plan,) = {p.event_id: p for p in tap.of(TranscriptionChunkedV1, job.job_id)}.values()
        assert isinstance(plan, TranscriptionChunkedV1)
        assert len(plan.chunks) >= 3
        assert plan.speaker_turns
        words = [(w, reader_of(w, spans)) for s in done.segments for w in s.words or []]
        assert len(words) > 150
        assert all(w.speaker is not None for w, _ in words), "every word labelled"
        # Each reader's label: the one most of their words got, the same in every chunk.
        labels = {
            reader: Counter(w.speaker for w, r in words if r == reader).most_common(1)[0][0]
            for reader in (0, 1)
        }
        assert labels[0] != labels[1], "two readers told apart"
        if exact:
            assert labels == {0: "SPEAKER_00", 1: "SPEAKER_01"}, "channel n is SPEAKER_0n"
        for chunk in plan.chunks:
            for reader in (0, 1):
                owned = [
                    w
                    for w, r in words
                    if r == reader and chunk.core_start <= w.start < chunk.core_end
                ]
                if owned:
                    right = sum(w.speaker == labels[reader] for w in owned) / len(owned)
                    assert right >= (0.95 if exact else 0.8), (chunk.index, reader, right)
        agreeing = sum(w.speaker == labels[r] for w, r in words if r is not None)
        assert agreeing / len(words) >= (0.97 if exact else 0.9)
        stored = await indexer.fetch(
            "SELECT DISTINCT speaker FROM segments WHERE job_id = $1", job.job_id
        )
        assert {r["speaker"] for r in stored} == {labels[0], labels[1]}
