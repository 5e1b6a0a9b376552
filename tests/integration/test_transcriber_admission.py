"""What a transcriber refuses or skips before any work, with the real broker and database.

The transcriber and the indexer run in this process (the transcriber with an engine that
counts what it transcribes and writes the file's name as the transcript, so a replaced
transcript shows); a downstream tap hears every transcription event.

- an upload of a tenant Scribe does not serve: no transcription, no event, dead-lettered
  as `unknown_tenant` (and the dead-letter watcher does not turn it into a failure);
- a second upload of a completed job with other audio or options: no transcription, no
  second completion, dead-lettered as `conflicting_job`, the job untouched; also when it
  reaches a worker that never saw the job;
- a redelivery of a job whose outcome the worker confirmed: acked without work.
"""

from __future__ import annotations

import asyncio
import shutil
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import UUID

import aio_pika
import asyncpg
import pytest

from contracts import routing
from contracts.audio import AudioUploadedV1, TranscriptionOptions
from contracts.envelope import Event
from contracts.transcription import (
    Segment,
    TranscriptCompletedV1,
    TranscriptionFailedV1,
    TranscriptionStartedV1,
)
from indexer.main import build_broker
from indexer.migrate import prepare_database
from indexer.settings import IndexerSettings
from indexer.store import PostgresTenants
from scribe_runtime import amqp
from scribe_runtime.messaging import make_broker, publish_event
from scribe_runtime.settings import SharedSettings
from scribe_runtime.topology import (
    INDEXER_QUEUE,
    TRANSCRIBER_QUEUE,
    declare_topology,
    pool_queue,
)
from tests.speech import SCRIPTS, synthesize
from tests.support.servers import READER
from tests.support.waiting import eventually_async
from tests.support.workers import EventTap, upload, wait_for_consumers
from transcriber.engine import EngineRequest, EngineResult, OnSegment
from transcriber.main import serve
from transcriber.settings import TranscriberSettings

pytestmark = pytest.mark.integration

TENANTS = ("acme", "globex")


class NamingEngine:
    """Transcribes at once; the transcript is the file's name. Counts every transcription."""

    def __init__(self) -> None:
        self.paths: list[Path] = []
        self._lock = threading.Lock()

    @property
    def model_name(self) -> str:
        return "naming"

    def transcribe(
        self,
        path: Path,
        request: EngineRequest,
        *,
        on_segment: OnSegment,
        cancelled: threading.Event,
    ) -> EngineResult:
        with self._lock:
            self.paths.append(path)
        segment = Segment(id=0, start=0.0, end=1.0, text=path.name)
        on_segment(segment, 1.0, 1.0)
        return EngineResult(
            language="en", language_probability=1.0, duration_seconds=1.0, segments=[segment]
        )


@dataclass
class Pipeline:
    amqp_url: str
    media: Path
    pool: asyncpg.Pool
    tap: EventTap
    engine: NamingEngine
    shared: SharedSettings
    transcriber: tuple[asyncio.Event, asyncio.Task[bool]] | None = None

    def put(self, tenant: str, name: str) -> Path:
        target = self.media / tenant / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(synthesize(SCRIPTS["numbers"]), target)
        return target

    async def start_transcriber(self) -> None:
        """A transcriber process's worth of state: a fresh one each time."""
        stop = asyncio.Event()
        settings = TranscriberSettings(health_port=None, cpu_threads=1)
        task = asyncio.create_task(serve(self.shared, settings, stop, engine=self.engine))
        self.transcriber = (stop, task)
        await wait_for_consumers(self.amqp_url, 1)

    async def stop_transcriber(self) -> None:
        assert self.transcriber is not None
        stop, task = self.transcriber
        stop.set()
        await asyncio.wait_for(task, 60)
        self.transcriber = None

    async def publish(self, *events: Event) -> None:
        broker = make_broker(self.amqp_url, service="test")
        async with broker:
            await broker.start()
            for event in events:
                await publish_event(broker, event)

    async def job(self, tenant: str, job_id: UUID) -> dict[str, Any] | None:
        row = await self.pool.fetchrow(
            "SELECT j.status, j.audio_uri, j.sha256, j.completed_event_id, j.attempts, "
            "j.error_code, t.text FROM jobs j LEFT JOIN transcripts t USING (tenant_id, job_id) "
            "WHERE j.tenant_id = $1 AND j.job_id = $2",
            tenant,
            job_id,
        )
        return dict(row) if row is not None else None

    async def completed(self, event: AudioUploadedV1) -> dict[str, Any]:
        """The job once the indexer has it completed (the transcriber's outcome confirmed)."""
        await self.tap.wait_for(TranscriptCompletedV1, event.job_id, seconds=60)

        async def indexed() -> bool:
            row = await self.job(event.tenant_id, event.job_id)
            return row is not None and row["status"] == "completed"

        await eventually_async(indexed, within=60, what=f"job {event.job_id} indexed")
        row = await self.job(event.tenant_id, event.job_id)
        assert row is not None
        return row


async def dead_letter_codes(amqp_url: str, queue: str) -> dict[str, str]:
    """message_id → dead-letter code of every letter in `queue` (read, not consumed)."""
    found: dict[str, str] = {}
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel()
        dlq = await channel.get_queue(queue, ensure=False)
        while (message := await dlq.get(fail=False)) is not None:
            code = (message.headers or {}).get(amqp.HEADER_DEAD_LETTER_CODE)
            found[str(message.message_id)] = str(code)
        # Left unacknowledged: they go back to the queue as the channel closes.
    return found


async def wait_for_letters(amqp_url: str, queue: str, want: set[str]) -> dict[str, str]:
    letters: dict[str, str] = {}

    async def arrived() -> bool:
        letters.update(await dead_letter_codes(amqp_url, queue))
        return want <= letters.keys()

    await eventually_async(arrived, within=30, what=f"{sorted(want)} in {queue}")
    return letters


async def watcher_sentinel(amqp_url: str) -> AudioUploadedV1:
    """A dead letter the watcher must turn into a failure, behind everything sent before.

    Once its `transcription.failed` is heard, the watcher has handled every earlier letter.
    """
    sentinel = upload(Path("/nowhere/sentinel.wav"))
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        exchange = await channel.get_exchange(routing.DEAD_LETTER_EXCHANGE)
        await exchange.publish(
            aio_pika.Message(
                sentinel.model_dump_json().encode(),
                message_id=str(sentinel.event_id),
                type=sentinel.message_type,
                headers={
                    amqp.HEADER_DEAD_LETTER_CODE: "sentinel",
                    amqp.HEADER_DEAD_LETTER_REASON: "x",
                },
            ),
            routing_key=TRANSCRIBER_QUEUE.name,
        )
    return sentinel


def reupload(first: AudioUploadedV1, **changes: Any) -> AudioUploadedV1:
    """Another upload of `first`'s job: a new event id, optionally other audio or options."""
    data = first.model_dump(exclude={"event_id", "occurred_at"}) | changes
    return AudioUploadedV1.model_validate(data)


@pytest.fixture
async def pipeline(amqp_url: str, database_url: str, tmp_path: Path) -> AsyncIterator[Pipeline]:
    await prepare_database(database_url, reader_role=READER, reader_password=None, tenants=TENANTS)
    await declare_topology(amqp_url)
    media = tmp_path / "media"
    media.mkdir()
    tap = EventTap(amqp_url)
    await tap.start()
    shared = SharedSettings(amqp_url=amqp_url, media_root=media, tenants=TENANTS)
    async with asyncpg.create_pool(database_url, min_size=1, max_size=4) as pool:
        tenants = PostgresTenants(pool)
        await tenants.refresh()
        indexer = build_broker(amqp_url, pool, tenants, IndexerSettings(tenants=TENANTS))
        async with indexer:
            await indexer.start()
            pipeline = Pipeline(amqp_url, media, pool, tap, NamingEngine(), shared)
            await pipeline.start_transcriber()
            try:
                yield pipeline
            finally:
                if pipeline.transcriber is not None:
                    await pipeline.stop_transcriber()
                await tap.close()


async def test_an_unknown_tenants_upload_gets_no_transcription_and_no_event(
    pipeline: Pipeline,
) -> None:
    # mallory's file is where a tenant's file would be: only the tenant is wrong.
    stranger = upload(pipeline.put("mallory", "hello.wav"))
    stranger = reupload(stranger, tenant_id="mallory")
    known = upload(pipeline.put("acme", "known.wav"))
    await pipeline.publish(stranger, known)
    await pipeline.completed(known)  # one job at a time: the stranger came first
    transcriber_letters = await wait_for_letters(
        pipeline.amqp_url, TRANSCRIBER_QUEUE.dead_letter_queue, {str(stranger.event_id)}
    )
    indexer_letters = await wait_for_letters(
        pipeline.amqp_url, INDEXER_QUEUE.dead_letter_queue, {str(stranger.event_id)}
    )
    sentinel = await watcher_sentinel(pipeline.amqp_url)
    await pipeline.tap.wait_for(TranscriptionFailedV1, sentinel.job_id, seconds=60)

    print(f"\ntranscriptions={len(pipeline.engine.paths)} (1 known, 0 unknown-tenant)")
    assert [p.name for p in pipeline.engine.paths] == ["known.wav"]
    assert [e for e in pipeline.tap.events if e.job_id == stranger.job_id] == []
    assert transcriber_letters[str(stranger.event_id)] == "unknown_tenant"
    assert indexer_letters[str(stranger.event_id)] == "unknown_tenant"
    assert (
        await pipeline.pool.fetchval("SELECT count(*) FROM jobs WHERE job_id = $1", stranger.job_id)
        == 0
    )


async def test_a_conflicting_reupload_of_a_completed_job_is_refused_and_the_job_untouched(
    pipeline: Pipeline,
) -> None:
    first = upload(pipeline.put("acme", "first.wav"))
    await pipeline.publish(first)
    before = await pipeline.completed(first)
    assert before["text"] == "first.wav"
    other_audio = reupload(first, audio_uri=pipeline.put("acme", "second.wav").as_uri())
    other_options = reupload(first, options=TranscriptionOptions(language="fr"))
    same_again = reupload(first)  # the same job definition, published again
    sentinel = upload(pipeline.put("acme", "sentinel.wav"))
    await pipeline.publish(other_audio, other_options, first, same_again, sentinel)
    await pipeline.completed(sentinel)
    refused = {str(other_audio.event_id), str(other_options.event_id)}
    # The router forwarded them to the default pool, whose worker knows the job.
    transcriber_letters = await wait_for_letters(
        pipeline.amqp_url, pool_queue("tiny.en").dead_letter_queue, refused
    )
    indexer_letters = await wait_for_letters(
        pipeline.amqp_url, INDEXER_QUEUE.dead_letter_queue, refused
    )
    watched = await watcher_sentinel(pipeline.amqp_url)
    await pipeline.tap.wait_for(TranscriptionFailedV1, watched.job_id, seconds=60)

    names = [p.name for p in pipeline.engine.paths]
    print(f"\ntranscriptions={names} letters={transcriber_letters}")
    assert names == ["first.wav", "sentinel.wav"]  # no re-run, no conflicting run
    assert {transcriber_letters[i] for i in refused} == {"conflicting_job"}
    assert {indexer_letters[i] for i in refused} == {"conflicting_job"}
    assert str(first.event_id) not in transcriber_letters  # identical: skipped, not refused
    heard = [e for e in pipeline.tap.events if e.job_id == first.job_id]
    assert len([e for e in heard if isinstance(e, TranscriptCompletedV1)]) == 1
    assert len([e for e in heard if isinstance(e, TranscriptionStartedV1)]) == 1
    assert not [e for e in heard if isinstance(e, TranscriptionFailedV1)]
    assert await pipeline.job("acme", first.job_id) == before


async def test_a_conflicting_reupload_reaching_a_worker_that_never_saw_the_job_changes_nothing(
    pipeline: Pipeline,
) -> None:
    """A restarted worker has no memory: it spends the CPU, but the job and what downstream
    hears stay as they were (the completion's id is the job's; the indexer refuses the rest)."""
    first = upload(pipeline.put("acme", "first.wav"))
    await pipeline.publish(first)
    before = await pipeline.completed(first)
    await pipeline.stop_transcriber()
    await pipeline.start_transcriber()
    conflict = reupload(first, audio_uri=pipeline.put("acme", "second.wav").as_uri())
    sentinel = upload(pipeline.put("acme", "sentinel.wav"))
    await pipeline.publish(conflict, sentinel)
    await pipeline.completed(sentinel)
    letters = await wait_for_letters(
        pipeline.amqp_url, INDEXER_QUEUE.dead_letter_queue, {str(conflict.event_id)}
    )

    completions = pipeline.tap.of(TranscriptCompletedV1, first.job_id)
    print(f"\ntranscriptions={len(pipeline.engine.paths)} completions heard={len(completions)}")
    assert letters[str(conflict.event_id)] == "conflicting_job"
    assert len({e.event_id for e in completions}) == 1  # a consumer deduplicating acts once
    assert await pipeline.job("acme", first.job_id) == before
    # A different tenant may use the same job id: it is another job.
    theirs = reupload(first, tenant_id="globex", audio_uri=pipeline.put("globex", "x.wav").as_uri())
    await pipeline.publish(theirs)
    assert (await pipeline.completed(theirs))["text"] == "x.wav"
    assert await pipeline.job("acme", first.job_id) == before
