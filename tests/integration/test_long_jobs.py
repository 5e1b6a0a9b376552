"""A long job's indexer side: chunks kept durably, one completion from the outbox.

Synthetic chunk events (`services/indexer/tests/job_events.py`: a plan of 60 s chunks and
one result per chunk) go through a real RabbitMQ vhost into the real indexer (its
consumer and its outbox relay) and a real PostgreSQL database; ingest's read API (its
whole app, SELECT-only role) answers what a user would see, and a downstream queue (the
`tap`) hears what a downstream consumer would. No transcriber runs.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import aio_pika
import asyncpg
import httpx
import pytest

from contracts import AudioUploadedV1, routing
from contracts.chunks import TranscriptionChunkedV1, TranscriptionChunkRequestedV1
from contracts.envelope import Event
from contracts.errors import ErrorCode
from contracts.speakers import SpeakerTurn
from contracts.transcription import (
    TranscriptCompletedV1,
    TranscriptionFailedV1,
    TranscriptionProgressV1,
)
from indexer.chunks import completion_event_id
from indexer.main import wire
from indexer.migrate import prepare_database
from indexer.outbox import OutboxRelay, enqueue
from indexer.retention import RetentionSweep
from indexer.settings import IndexerSettings
from indexer.store import PostgresProjectionStore, PostgresTenants
from ingest.app import create_app
from ingest.auth import hash_api_key
from ingest.settings import IngestSettings
from scribe_runtime.messaging import make_broker, publish_event
from scribe_runtime.publishing import EventPublisher
from scribe_runtime.settings import SharedSettings
from scribe_runtime.topology import pool_queue
from services.indexer.tests import job_events as ev
from tests.support.servers import READER, SeaweedServer, as_role
from tests.support.waiting import eventually_async
from tests.support.workers import EventTap

pytestmark = pytest.mark.integration

KEY = "key-of-default"


@dataclass
class LongStack:
    """Ingest's read API, a restartable indexer, a publisher of synthetic events, the tap."""

    amqp_url: str
    database_url: str
    media_root: Path
    pool: asyncpg.Pool
    api: httpx.AsyncClient
    tap: EventTap
    publisher: Any
    _indexer: tuple[Any, asyncio.Task[None], asyncio.Event] | None = field(default=None)

    async def start_indexer(self) -> None:
        tenants = PostgresTenants(self.pool)
        await tenants.refresh()
        wired = wire(
            self.amqp_url,
            self.pool,
            tenants,
            IndexerSettings(),
            media_root=self.media_root,
            listen_dsn=self.database_url,
        )
        await wired.broker.start()
        stop = asyncio.Event()
        relay = asyncio.create_task(wired.relay.run(stop))
        self._indexer = (wired.broker, relay, stop)

    async def stop_indexer(self) -> None:
        assert self._indexer is not None
        broker, relay, stop = self._indexer
        stop.set()
        await relay
        await broker.stop()
        self._indexer = None

    async def send(self, *events: Event) -> None:
        for event in events:
            await publish_event(self.publisher, event)

    async def job(self, job: UUID) -> dict[str, Any]:
        response = await self.api.get(f"/v1/transcriptions/{job}")
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    async def until(self, job: UUID, status: str, *, chunks_done: int | None = None) -> None:
        async def reached() -> bool:
            response = await self.api.get(f"/v1/transcriptions/{job}")
            if response.status_code != 200 or response.json()["status"] != status:
                return False
            if chunks_done is None:
                return True
            done = await self.pool.fetchval(
                "SELECT count(*) FROM job_chunks WHERE job_id = $1 AND result_event_id IS NOT NULL",
                job,
            )
            return bool(done == chunks_done)

        await eventually_async(reached, within=20, interval=0.05, what=f"{job} is {status}")

    def completions(self, job: UUID) -> list[TranscriptCompletedV1]:
        return self.tap.of(TranscriptCompletedV1, job)

    def progress(self, job: UUID) -> list[TranscriptionProgressV1]:
        return self.tap.of(TranscriptionProgressV1, job)


@pytest.fixture
async def stack(
    database_url: str, amqp_url: str, tap: EventTap, tmp_path: Path
) -> AsyncIterator[LongStack]:
    await prepare_database(
        database_url, reader_role=READER, reader_password=None, tenants=("default",)
    )
    media_root = tmp_path / "media"
    media_root.mkdir()
    app = create_app(
        SharedSettings(amqp_url=amqp_url, database_url=database_url, media_root=media_root),
        IngestSettings(
            database_url=as_role(database_url, READER),
            api_keys={hash_api_key(KEY): "default"},
        ),
    )
    publisher = make_broker(amqp_url, service="test")
    async with (
        asyncpg.create_pool(database_url, min_size=1, max_size=4) as pool,
        app.router.lifespan_context(app),
        publisher,
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="http://ingest",
            headers={"Authorization": f"Bearer {KEY}"},
        ) as api,
    ):
        await publisher.start()
        long_stack = LongStack(amqp_url, database_url, media_root, pool, api, tap, publisher)
        await long_stack.start_indexer()
        try:
            yield long_stack
        finally:
            if long_stack._indexer is not None:
                await long_stack.stop_indexer()


_SRT_TIME = re.compile(r"(\d\d):(\d\d):(\d\d)[,.](\d\d\d) --> (\d\d):(\d\d):(\d\d)[,.](\d\d\d)")


def cue_times(captions: str) -> list[tuple[float, float]]:
    def seconds(h: str, m: str, s: str, ms: str) -> float:
        return int(h) * 3600 + int(m) * 60 + int(s) + int(ms) / 1000

    return [
        (seconds(*match.groups()[:4]), seconds(*match.groups()[4:]))
        for match in _SRT_TIME.finditer(captions)
    ]


async def test_a_three_chunk_job_completes_once_with_renumbered_absolute_segments(
    stack: LongStack,
) -> None:
    job = uuid4()
    events = ev.long_job(job)
    await stack.send(*events)
    await stack.until(job, "completed")
    await stack.tap.wait_until(lambda: len(stack.completions(job)) >= 1, seconds=20)

    body = await stack.job(job)
    transcript = body["transcript"]
    segments = transcript["segments"]
    assert [s["id"] for s in segments] == list(range(6))
    starts = [s["start"] for s in segments]
    assert starts == sorted(starts)
    assert starts[-1] >= 2 * ev.CHUNK_SECONDS, "the last chunk's times are absolute"
    assert all(w["start"] >= s["start"] for s in segments for w in s["words"])
    expected_text = " ".join(t for i in range(3) for t in ev.chunk_texts(i, 3))
    assert transcript["text"] == expected_text
    assert transcript["duration_seconds"] == 3 * ev.CHUNK_SECONDS
    assert body["language"] == "en"
    assert body["progress"] == 1.0
    assert body.get("eta_seconds") is None  # none once completed

    # What the bus carries is what the API shows: one completion, its id the job's.
    (completed,) = stack.completions(job)
    assert completed.event_id == completion_event_id("default", job)
    assert completed.text == expected_text
    assert [s.id for s in completed.segments] == list(range(6))
    assert completed.processing_seconds == pytest.approx(18.0)
    assert completed.producer.startswith("scribe-indexer")

    for export in ("srt", "vtt"):
        response = await stack.api.get(f"/v1/transcriptions/{job}/transcript.{export}")
        assert response.status_code == 200
        cues = cue_times(response.text)
        assert len(cues) >= 6
        assert all(start < end for start, end in cues)
        assert all(a[1] <= b[0] for a, b in itertools.pairwise(cues)), export

    hits = (await stack.api.get("/v1/search", params={"q": ev.LAST_CHUNK_WORD})).json()["hits"]
    assert [(h["job_id"], h["segment_id"]) for h in hits] == [(str(job), 5)]
    assert hits[0]["start"] >= 2 * ev.CHUNK_SECONDS

    # The indexer heard its own completion come back, and did nothing with it.
    assert (
        await stack.pool.fetchval(
            "SELECT count(*) FROM processed_events WHERE event_id = $1", completed.event_id
        )
        == 1
    )
    assert await stack.pool.fetchval("SELECT count(*) FROM segments WHERE job_id = $1", job) == 6


async def test_a_diarized_long_job_keeps_each_speakers_label_across_chunks(
    stack: LongStack,
) -> None:
    """The plan's turns (the whole file, found once) label every chunk's segments alike."""
    job = uuid4()
    chunk = ev.CHUNK_SECONDS
    # SPEAKER_00 opens chunk 0 and chunk 1; SPEAKER_01 answers in each and ends the call.
    turns = [
        SpeakerTurn(start=0.0, end=28.0, speaker="SPEAKER_00"),
        SpeakerTurn(start=28.0, end=chunk, speaker="SPEAKER_01"),
        SpeakerTurn(start=chunk, end=chunk + 27.0, speaker="SPEAKER_00"),
        SpeakerTurn(start=chunk + 27.0, end=3 * chunk, speaker="SPEAKER_01"),
    ]
    upload, started, plan, *results = ev.long_job(job)
    assert isinstance(plan, TranscriptionChunkedV1)
    # The plan last: the results wait for it, then its turns label the whole transcript.
    await stack.send(upload, started, *results, plan.model_copy(update={"speaker_turns": turns}))
    await stack.until(job, "completed")

    segments = (await stack.job(job))["transcript"]["segments"]
    expected = ["SPEAKER_00", "SPEAKER_01"] * 2 + ["SPEAKER_01"] * 2
    assert [s["speaker"] for s in segments] == expected
    for segment in segments:
        assert {w["speaker"] for w in segment["words"]} == {segment["speaker"]}
    await stack.tap.wait_until(lambda: len(stack.completions(job)) >= 1, seconds=20)
    (completed,) = stack.completions(job)
    assert [s.speaker for s in completed.segments] == expected

    hits = (
        await stack.api.get("/v1/search", params={"q": "part", "speaker": "SPEAKER_00"})
    ).json()["hits"]
    assert [h["segment_id"] for h in hits] == [0, 2], "chunk 0's and chunk 1's opening"
    vtt = (await stack.api.get(f"/v1/transcriptions/{job}/transcript.vtt")).text
    assert "<v SPEAKER_00>this is part 1 of the meeting" in vtt

    # A job planned without diarization keeps no turns and labels nothing.
    plain = uuid4()
    await stack.send(*ev.long_job(plain))
    await stack.until(plain, "completed")
    body = await stack.job(plain)
    assert all("speaker" not in s for s in body["transcript"]["segments"])
    assert (
        await stack.pool.fetchval(
            "SELECT count(*) FROM job_speaker_turns WHERE job_id = ANY($1::uuid[])", [job, plain]
        )
        == 1
    )


async def test_chunks_out_of_order_twice_and_before_their_plan_complete_once_alike(
    stack: LongStack,
) -> None:
    in_order, shuffled = uuid4(), uuid4()
    await stack.send(*ev.long_job(in_order))
    upload, start, plan, *results = ev.long_job(shuffled)
    # A result before the plan (and before the upload), one delivered twice, the rest late.
    await stack.send(results[2], upload, results[0], results[2], start, plan, results[1])
    await stack.send(results[1])
    for job in (in_order, shuffled):
        await stack.until(job, "completed")
    await stack.tap.wait_until(
        lambda: all(stack.completions(j) for j in (in_order, shuffled)), seconds=20
    )
    await asyncio.sleep(0.5)  # a second completion, if there were one, would be out by now

    bodies = [await stack.job(j) for j in (in_order, shuffled)]
    assert bodies[0]["transcript"] == bodies[1]["transcript"]
    for job in (in_order, shuffled):
        assert {e.event_id for e in stack.completions(job)} == {completion_event_id("default", job)}
        assert len(stack.completions(job)) == 1
    assert (
        await stack.pool.fetchval(
            "SELECT count(*) FROM event_outbox WHERE job_id = $1 AND event_type = $2",
            shuffled,
            "transcript.completed.v1",
        )
        == 1
    )


async def test_progress_is_monotonic_with_an_eta_shown_by_the_read_api(stack: LongStack) -> None:
    job = uuid4()
    upload, start, plan, *_ = ev.long_job(job, count=4)
    await stack.send(upload, start, plan)
    # Two workers at 0.1 s of work per second of audio: 6 s a chunk, 62 s of audio each.
    workers = ["worker-a", "worker-b", "worker-a", "worker-b"]
    seen: list[tuple[float, float | None]] = []

    def progressed(count: int) -> bool:
        return len(stack.progress(job)) >= count

    for index in range(3):
        result = ev.chunk_result(job, index, count=4, worker=workers[index])
        await stack.send(result)
        await stack.until(job, "processing", chunks_done=index + 1)
        await stack.tap.wait_until(partial(progressed, index + 1), seconds=20)
        body = await stack.job(job)
        seen.append((body["progress"], body.get("eta_seconds")))
    assert [p for p, _ in seen] == [0.25, 0.5, 0.75]
    rtf = 6.0 / 62.0
    # One worker known after the first chunk (at 10 s), two after the second (at 11 s).
    # Each other worker's chunk in hand is credited the time since its last result (1 s),
    # and the last chunk, in one worker's hand, is not shared by two.
    assert seen[0][1] == pytest.approx(180 * rtf, abs=0.01)
    assert seen[1][1] == pytest.approx((120 * rtf - 1.0) / 2, abs=0.01)
    assert seen[2][1] == pytest.approx(60 * rtf - 1.0, abs=0.01)

    await stack.send(ev.chunk_result(job, 3, count=4, worker="worker-b"))
    await stack.until(job, "completed")
    await stack.tap.wait_until(lambda: bool(stack.completions(job)), seconds=20)
    published = [(e.progress, e.eta_seconds) for e in stack.progress(job)]
    assert [p for p, _ in published] == [0.25, 0.5, 0.75]
    assert [eta for _, eta in published] == [eta for _, eta in seen]
    # The completion is the last thing downstream hears of the job.
    kinds = [type(e).__name__ for e in stack.tap.events if e.job_id == job]
    assert kinds[-1] == "TranscriptCompletedV1"


async def test_a_restarted_indexer_resumes_from_the_chunks_it_kept(stack: LongStack) -> None:
    job = uuid4()
    upload, start, plan, *results = ev.long_job(job)
    await stack.send(upload, start, plan, results[0], results[1])
    await stack.until(job, "processing", chunks_done=2)
    await stack.stop_indexer()
    await stack.send(results[2])  # arrives while no indexer runs: waits in its queue
    await asyncio.sleep(0.3)
    assert (await stack.job(job))["status"] == "processing"
    await stack.start_indexer()
    await stack.until(job, "completed")
    await stack.tap.wait_until(lambda: bool(stack.completions(job)), seconds=20)
    assert len((await stack.job(job))["transcript"]["segments"]) == 6


async def test_an_outbox_row_left_unsent_by_a_crash_is_published_on_restart_once(
    stack: LongStack,
) -> None:
    await stack.stop_indexer()  # the consumer and relay of the fixture are gone
    job = uuid4()
    store = PostgresProjectionStore(stack.pool, producer="scribe-indexer/test")
    # The indexer committed the completion, then died before its relay published it.
    for event in ev.long_job(job):
        await store.apply(event)
    row = await stack.pool.fetchrow(
        "SELECT event_id, payload, sent_at FROM event_outbox WHERE job_id = $1 "
        "AND event_type = 'transcript.completed.v1'",
        job,
    )
    assert row is not None
    assert row["sent_at"] is None
    # Worse: a relay published it, the broker confirmed, and the process died before the
    # row was marked sent. The restarted relay publishes it again, with the same id.
    broker = make_broker(stack.amqp_url, service="crashed-indexer")
    publish = EventPublisher(broker, (TranscriptCompletedV1,)).publish
    async with broker:
        await broker.start()
        await publish(TranscriptCompletedV1.model_validate_json(row["payload"]))
    await stack.start_indexer()
    await stack.tap.wait_until(lambda: len(stack.completions(job)) >= 2, seconds=20)
    await stack.until(job, "completed")
    assert {e.event_id for e in stack.completions(job)} == {completion_event_id("default", job)}

    async def marked() -> bool:
        return bool(
            await stack.pool.fetchval(
                "SELECT sent_at IS NOT NULL AND payload IS NULL FROM event_outbox "
                "WHERE event_id = $1",
                row["event_id"],
            )
        )

    await eventually_async(marked, within=10, interval=0.05, what="the outbox row is marked")
    assert await stack.pool.fetchval("SELECT count(*) FROM event_outbox WHERE sent_at IS NULL") == 0
    assert await stack.pool.fetchval("SELECT count(*) FROM segments WHERE job_id = $1", job) == 6


async def test_chunks_of_a_cancelled_or_deleted_job_change_nothing(stack: LongStack) -> None:
    cancelled, deleted = uuid4(), uuid4()
    for job in (cancelled, deleted):
        upload, start, plan, *results = ev.long_job(job)
        await stack.send(upload, start, plan, results[0])
        await stack.until(job, "processing", chunks_done=1)
    chunk_media = stack.media_root / "default" / "chunks" / str(deleted)
    chunk_media.mkdir(parents=True)
    (chunk_media / "0000.wav").write_bytes(b"RIFF")
    await stack.send(ev.cancel_requested(cancelled, at=20.0), ev.delete_requested(deleted, at=20.0))
    await stack.until(cancelled, "cancelled")

    async def gone() -> bool:
        response = await stack.api.get(f"/v1/transcriptions/{deleted}")
        return response.status_code == 404

    await eventually_async(gone, within=20, interval=0.05, what="the deleted job is gone")
    assert not chunk_media.exists()
    assert (
        await stack.pool.fetchval("SELECT count(*) FROM job_chunks WHERE job_id = $1", deleted) == 0
    )
    for job in (cancelled, deleted):
        await stack.send(*(ev.chunk_result(job, i, at=30.0 + i) for i in (1, 2)))
    sentinel = uuid4()
    await stack.send(ev.uploaded(sentinel))
    await stack.until(sentinel, "queued")
    assert (await stack.job(cancelled))["status"] == "cancelled"
    assert (await stack.api.get(f"/v1/transcriptions/{deleted}")).status_code == 404
    assert await stack.pool.fetchval("SELECT count(*) FROM jobs WHERE job_id = $1", deleted) == 0
    assert (
        await stack.pool.fetchval(
            "SELECT count(*) FROM job_chunks WHERE job_id = ANY($1::uuid[]) "
            "AND result_event_id IS NOT NULL",
            [cancelled, deleted],
        )
        == 1
    ), "only the cancelled job's first chunk, kept from before the cancel"
    assert not stack.completions(cancelled)
    assert not stack.completions(deleted)


async def test_any_arrival_order_of_a_long_jobs_events_ends_in_the_same_rows(
    database_url: str,
) -> None:
    """The projection alone (no broker): shuffled and duplicated, the same job and outbox."""
    await prepare_database(
        database_url, reader_role=READER, reader_password=None, tenants=("default",)
    )
    job = uuid4()
    events = ev.long_job(job, count=4)
    rng = random.Random(15)
    sequences = {
        "in order": events,
        "reversed": events[::-1],
        "twice each": [e for e in events for _ in range(2)],
        **{f"shuffled {i}": rng.sample(events * 2, len(events) * 2) for i in range(4)},
    }
    async with asyncpg.create_pool(database_url, min_size=1, max_size=2) as pool:
        store = PostgresProjectionStore(pool, producer="scribe-indexer/test")
        dumps = {}
        for name, sequence in sequences.items():
            await pool.execute(
                "TRUNCATE jobs, transcripts, segments, job_chunks, job_speaker_turns, "
                "event_outbox, processed_events"
            )
            for event in sequence:
                await store.apply(event)
            dumps[name] = {
                table: await pool.fetch(f"SELECT to_jsonb(t) AS row FROM {table} t ORDER BY 1")
                for table in ("jobs", "transcripts", "segments")
            } | {
                "completions": await pool.fetch(
                    "SELECT event_id, payload::text FROM event_outbox "
                    "WHERE event_type = 'transcript.completed.v1'"
                )
            }
    expected = dumps["in order"]
    assert len(expected["segments"]) == 8
    assert len(expected["completions"]) == 1
    for name, rows in dumps.items():
        assert rows == expected, f"{name} differs from in order"


async def test_a_dead_lettered_chunk_fails_its_job_once(stack: LongStack) -> None:
    job = uuid4()
    upload, start, _, *results = ev.long_job(job)
    plan = ev.plan(job)
    chunk_audio = write_chunks(stack.media_root, job)
    await stack.send(upload, start, plan, results[0])
    await stack.until(job, "processing", chunks_done=1)
    connection = await aio_pika.connect(stack.amqp_url)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        dlx = await channel.get_exchange(routing.DEAD_LETTER_EXCHANGE)
        for index in (1, 2):  # two chunks crash-loop their workers
            item = TranscriptionChunkRequestedV1(
                job_id=job,
                tenant_id="default",
                producer="scribe-transcriber/test",
                chunk=plan.chunks[index],
                chunk_count=3,
                duration_seconds=plan.duration_seconds,
                model="tiny.en",
                language="en",
                job_fingerprint=plan.job_fingerprint,
            )
            await dlx.publish(
                aio_pika.Message(
                    item.model_dump_json().encode(),
                    message_id=str(item.event_id),
                    type=item.message_type,
                    headers={
                        "x-death": [
                            {
                                "reason": "delivery_limit",
                                "queue": pool_queue("tiny.en", "chunk").name,
                                "count": 1,
                                "time": datetime.now(UTC),
                            }
                        ]
                    },
                ),
                routing_key=pool_queue("tiny.en", "chunk").name,
            )
    await stack.until(job, "failed")
    await stack.tap.wait_until(lambda: len(stack.tap.of(TranscriptionFailedV1, job)) >= 2, 20)
    failures = stack.tap.of(TranscriptionFailedV1, job)
    assert {f.event_id for f in failures} == {failures[0].event_id}
    body = await stack.job(job)
    assert body["error"]["code"] == "dead_lettered"
    assert body.get("eta_seconds") is None
    # A chunk still in flight when its sibling died is kept, and the job stays failed.
    await stack.send(results[1])
    await stack.until(job, "failed", chunks_done=2)
    assert not stack.completions(job)
    # Replaying the dead chunks can still complete it: their audio is kept.
    assert len(list(chunk_audio.iterdir())) == 3


async def test_a_commit_wakes_the_relay_without_waiting_for_its_poll(
    database_url: str,
) -> None:
    """LISTEN/NOTIFY: with a one-minute poll, a committed row still goes out at once."""
    await prepare_database(
        database_url, reader_role=READER, reader_password=None, tenants=("default",)
    )
    published: list[Event] = []
    sent = asyncio.Event()

    async def publish(event: Event) -> None:
        published.append(event)
        sent.set()

    async with asyncpg.create_pool(database_url, min_size=1, max_size=2) as pool:
        relay = OutboxRelay(pool, publish, listen_dsn=database_url, poll_seconds=60)
        stop = asyncio.Event()
        running = asyncio.create_task(relay.run(stop))
        try:
            await asyncio.sleep(0.5)  # the first drain (nothing) and LISTEN are done
            event = ev.progress(uuid4(), 0.5)
            async with pool.acquire() as conn, conn.transaction():
                assert await enqueue(conn, event)
                assert not await enqueue(conn, event)  # the same event id, once
            async with asyncio.timeout(5):
                await sent.wait()
        finally:
            stop.set()
            await running
        assert [e.event_id for e in published] == [event.event_id]
        assert await pool.fetchval("SELECT count(*) FROM event_outbox WHERE sent_at IS NULL") == 0


async def test_two_relays_draining_at_once_publish_each_row_once_in_order(
    database_url: str,
) -> None:
    """Replicas take turns (an advisory lock): no row twice, a job's rows in their order."""
    await prepare_database(
        database_url, reader_role=READER, reader_password=None, tenants=("default",)
    )
    job = uuid4()
    rows = [
        ev.progress(job, (i + 1) / 40).model_copy(update={"event_id": uuid4()}) for i in range(40)
    ]
    published: list[Event] = []

    async def publish(event: Event) -> None:
        await asyncio.sleep(0.002)  # a confirm's round trip: lets the other relay try to cut in
        published.append(event)

    async with asyncpg.create_pool(database_url, min_size=2, max_size=4) as pool:
        async with pool.acquire() as conn, conn.transaction():
            for row in rows:
                await enqueue(conn, row)
        relays = [OutboxRelay(pool, publish), OutboxRelay(pool, publish)]
        counts = await asyncio.gather(*(relay.drain() for relay in relays))
    assert sum(counts) == len(rows)
    assert [e.event_id for e in published] == [e.event_id for e in rows]


def long_job_of(job: UUID, audio_uri: str, count: int = 3) -> list[Event]:
    """`ev.long_job` of an upload stored at `audio_uri` (its fingerprint carried through)."""
    upload, start, plan, *results = ev.long_job(job, count)
    stored = AudioUploadedV1.model_validate({**upload.model_dump(), "audio_uri": audio_uri})
    named = {"job_fingerprint": stored.job_fingerprint()}
    return [
        stored,
        start,
        plan.model_copy(update=named),
        *(r.model_copy(update=named) for r in results),
    ]


def write_chunks(media_root: Path, job: UUID, count: int = 3) -> Path:
    """What the planner leaves in the media store: `<tenant>/chunks/<job>/<index>.wav`."""
    folder = media_root / "default" / "chunks" / str(job)
    folder.mkdir(parents=True, exist_ok=True)
    for index in range(count):
        (folder / f"{index:04d}.wav").write_bytes(b"RIFF")
    return folder


async def gone(path: Path) -> None:
    async def absent() -> bool:
        return not await asyncio.to_thread(path.exists)

    await eventually_async(absent, within=20, interval=0.05, what=f"{path} is erased")


async def test_a_completed_long_jobs_chunk_audio_is_erased_and_its_upload_kept(
    stack: LongStack,
) -> None:
    job = uuid4()
    stored = stack.media_root / "default" / "ab" / "abcd.wav"
    stored.parent.mkdir(parents=True)
    stored.write_bytes(b"RIFF the upload")
    chunk_audio = write_chunks(stack.media_root, job)
    upload, start, plan, *results = long_job_of(job, stored.as_uri())
    await stack.send(upload, start, plan, *results[:2])
    await stack.until(job, "processing", chunks_done=2)
    await asyncio.sleep(0.3)  # an erasure on a chunk before the last would be done by now
    assert len(list(chunk_audio.iterdir())) == 3, "a chunk's audio outlives its job's progress"

    await stack.send(results[2])
    await stack.until(job, "completed")
    await gone(chunk_audio)
    assert stored.read_bytes() == b"RIFF the upload", "the upload is the tenant's, kept"

    # A redelivery of the upload split it again after the completion: the same plan, the
    # chunks written again, and erased again.
    write_chunks(stack.media_root, job)
    await stack.send(plan)
    await gone(chunk_audio)
    assert (await stack.job(job))["status"] == "completed"
    assert stored.exists()

    # The upload itself goes when retention says so, with the job.
    async def publish(event: Event) -> None:
        await publish_event(stack.publisher, event)

    later = datetime.now(UTC) + timedelta(days=2)
    sweep = RetentionSweep(stack.pool, {"default": 1}, publish=publish, clock=lambda: later)
    assert await sweep.sweep() == 1
    await gone(stored)

    # The indexer erases the media before the transaction that deletes the job (a crash
    # in between leaves a job to delete again, never a file nobody knows of), so the job
    # may still read for a moment after its file is gone.
    async def deleted() -> bool:
        return (await stack.api.get(f"/v1/transcriptions/{job}")).status_code == 404

    await eventually_async(deleted, within=20, interval=0.05, what="the deleted job is gone")


async def test_a_long_job_failed_for_good_loses_its_chunk_audio_not_its_cause(
    stack: LongStack,
) -> None:
    job = uuid4()
    chunk_audio = write_chunks(stack.media_root, job)
    upload, start, plan, *results = ev.long_job(job)
    await stack.send(upload, start, plan, results[0])
    await stack.until(job, "processing", chunks_done=1)
    cause = ev.failed(job, at=20.0)  # chunk 1 cannot be decoded: the job can never complete
    await stack.send(cause)
    await stack.until(job, "failed")
    await gone(chunk_audio)
    # Chunk 2 was still queued; its worker finds no audio and says so.
    await stack.send(
        cause.model_copy(
            update={
                "event_id": uuid4(),
                "occurred_at": cause.occurred_at + timedelta(seconds=5),
                "code": ErrorCode.SOURCE_NOT_FOUND,
                "message": "no regular file at .../0002.wav",
            }
        )
    )
    await stack.tap.wait_until(lambda: len(stack.tap.of(TranscriptionFailedV1, job)) >= 2, 20)
    sentinel = uuid4()
    await stack.send(ev.uploaded(sentinel))
    await stack.until(sentinel, "queued")
    body = await stack.job(job)
    assert (body["status"], body["error"]["code"]) == ("failed", "corrupt_audio")
    assert body["error"]["retryable"] is False


async def test_a_completed_long_jobs_chunks_are_erased_from_the_object_store(
    stack: LongStack,
    seaweed: SeaweedServer,
    s3_bucket: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name, value in seaweed.env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("SCRIBE_MEDIA_URL", f"s3://{s3_bucket}/media")
    await stack.stop_indexer()
    await stack.start_indexer()  # erasing in the object store now
    job, other = uuid4(), uuid4()
    upload_key = "media/default/ab/abcd"
    chunk_keys = [f"media/default/chunks/{job}/{i:04d}.wav" for i in range(3)]
    kept = [upload_key, f"media/default/chunks/{other}/0000.wav"]
    with seaweed.client() as s3:
        for key in [*kept, *chunk_keys]:
            s3.put_object(Bucket=s3_bucket, Key=key, Body=b"RIFF")

    def keys() -> list[str]:
        with seaweed.client() as s3:
            listed = s3.list_objects_v2(Bucket=s3_bucket).get("Contents", [])
            return sorted(o["Key"] for o in listed)

    await stack.send(*long_job_of(job, f"s3://{s3_bucket}/{upload_key}"))
    await stack.until(job, "completed")

    async def erased() -> bool:
        return await asyncio.to_thread(keys) == sorted(kept)

    await eventually_async(erased, within=20, interval=0.1, what="the chunk objects are erased")
