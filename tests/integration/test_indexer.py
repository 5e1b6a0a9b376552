"""The indexer against a real PostgreSQL (and RabbitMQ for the consumer)."""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import AsyncIterator
from typing import Any
from uuid import uuid4

import aio_pika
import asyncpg
import pytest

from contracts import AudioUploadedV1, routing
from contracts.envelope import Event
from indexer.main import build_broker
from indexer.migrate import prepare_database, shipped_migrations
from indexer.settings import IndexerSettings
from indexer.store import ConflictingJobError, PostgresProjectionStore, PostgresTenants
from scribe_runtime import amqp
from scribe_runtime.messaging import make_broker, publish_event
from scribe_runtime.topology import INDEXER_QUEUE, declare_topology
from services.indexer.tests import job_events as ev
from tests.support.servers import READER, as_role
from tests.support.waiting import eventually_async

pytestmark = pytest.mark.integration

TABLES = {
    "jobs": "tenant_id, job_id",
    "transcripts": "tenant_id, job_id",
    "segments": "tenant_id, job_id, segment_id",
    "processed_events": "event_id",
}


async def prepare(url: str) -> None:
    await prepare_database(
        url, reader_role=READER, reader_password=None, tenants=("default", "acme")
    )


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    await prepare(database_url)
    async with asyncpg.create_pool(database_url, min_size=1, max_size=4) as pool:
        yield pool


async def dump(conn: asyncpg.Pool) -> dict[str, list[Any]]:
    """Every row of every projection table (minus the wall-clock processed_at)."""
    result = {}
    for table, order in TABLES.items():
        rows = await conn.fetch(
            f"SELECT to_jsonb(t) - 'processed_at' AS row FROM {table} t ORDER BY {order}"
        )
        result[table] = [json.loads(r["row"]) for r in rows]
    return result


async def apply_all(store: PostgresProjectionStore, events: list[Event]) -> None:
    for event in events:
        await store.apply(event)


async def test_migrations_are_serialised_idempotent_and_create_the_database(
    postgres_server: Any,
) -> None:
    name = f"scribe_test_{uuid4().hex[:12]}"
    url = postgres_server.database_url(name)
    try:
        # Several replicas starting at once on a database that does not exist yet.
        await asyncio.gather(*(prepare(url) for _ in range(4)))
        await prepare(url)
        conn = await asyncpg.connect(url)
        try:
            versions = await conn.fetch("SELECT version, name FROM schema_migrations")
            tenants = {r["tenant_id"] for r in await conn.fetch("SELECT tenant_id FROM tenants")}
        finally:
            await conn.close()
        assert [(r["version"], r["name"]) for r in versions] == [
            (m.version, m.name) for m in shipped_migrations()
        ]
        assert tenants == {"default", "acme"}
    finally:
        admin = await asyncpg.connect(postgres_server.admin_url)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


@pytest.mark.parametrize("make", [ev.completed_job, ev.failed_job], ids=["completed", "failed"])
async def test_in_order_duplicated_and_shuffled_sequences_end_in_the_same_rows(
    pool: asyncpg.Pool, make: Any
) -> None:
    store = PostgresProjectionStore(pool)
    events: list[Event] = make()
    rng = random.Random(7)
    sequences = {
        "in order": events,
        "every event twice": [e for e in events for _ in range(2)],
        "reversed": events[::-1],
        **{f"shuffled {i}": rng.sample(events, len(events)) for i in range(3)},
        "shuffled with duplicates": rng.sample(events * 2, len(events) * 2),
    }
    dumps = {}
    for name, sequence in sequences.items():
        await pool.execute(
            "TRUNCATE jobs, transcripts, segments, job_chunks, job_speaker_turns, event_outbox, "
            "processed_events"
        )
        await apply_all(store, sequence)
        dumps[name] = await dump(pool)
    expected = dumps["in order"]
    assert len(expected["jobs"]) == 1
    assert len(expected["processed_events"]) == len(events)
    for name, rows in dumps.items():
        assert rows == expected, f"{name} differs from in-order"
    job = expected["jobs"][0]
    if make is ev.completed_job:
        assert job["status"] == "completed"
        assert len(expected["segments"]) == len(ev.SEGMENT_TEXTS)
        assert job["original_filename"] == "standup.wav"
    else:
        assert job["status"] == "failed"
        assert job["error_code"] == "corrupt_audio"
        assert expected["segments"] == []


async def test_concurrent_events_of_one_job_lose_no_update(pool: asyncpg.Pool) -> None:
    store = PostgresProjectionStore(pool)
    events = ev.completed_job()
    await asyncio.gather(*(store.apply(e) for e in events))
    concurrent = await dump(pool)
    await pool.execute(
        "TRUNCATE jobs, transcripts, segments, job_chunks, job_speaker_turns, event_outbox, "
        "processed_events"
    )
    await apply_all(store, events)
    assert concurrent == await dump(pool)


async def test_a_window_of_many_jobs_commits_once_and_ends_in_the_rows_one_by_one_gives(
    pool: asyncpg.Pool,
) -> None:
    """Events in hand together are written in one transaction, duplicates included, with
    the same rows as applying them one at a time."""
    store = PostgresProjectionStore(pool)
    jobs = [uuid4() for _ in range(5)]
    events: list[Event] = [e for job in jobs for e in ev.completed_job(job)]
    # Every event twice, in one window, plus an event of the first job already recorded.
    await store.apply(events[0])
    window = random.Random(3).sample(events * 2, len(events) * 2)
    results = await asyncio.gather(*(store.apply(e) for e in window))
    windowed = await dump(pool)
    commits = await pool.fetchval(
        "SELECT count(DISTINCT processed_at) FROM processed_events WHERE event_id <> $1",
        events[0].event_id,
    )
    await pool.execute(
        "TRUNCATE jobs, transcripts, segments, job_chunks, job_speaker_turns, event_outbox, "
        "processed_events"
    )
    await apply_all(store, events)
    assert windowed == await dump(pool)
    assert commits == 1, "the window's events were not committed together"
    assert sum(not r.duplicate for r in results) == len(events) - 1
    assert sum(r.segments_written for r in results) == len(jobs) * len(ev.SEGMENT_TEXTS)


async def test_of_two_completions_in_one_window_the_winner_s_transcript_is_kept(
    pool: asyncpg.Pool,
) -> None:
    store = PostgresProjectionStore(pool)
    job = uuid4()
    # The later completion arrives first: the earlier one, second, must not displace it.
    events: list[Event] = [
        ev.uploaded(job),
        ev.completed(job, at=12.0, attempt=2),
        ev.completed(job, at=9.0, attempt=1),
    ]
    await asyncio.gather(*(store.apply(e) for e in events))
    windowed = await dump(pool)
    await pool.execute(
        "TRUNCATE jobs, transcripts, segments, job_chunks, job_speaker_turns, event_outbox, "
        "processed_events"
    )
    await apply_all(store, events)
    assert windowed == await dump(pool)
    assert [t["event_id"] for t in windowed["transcripts"]] == [str(events[1].event_id)]
    assert len(windowed["segments"]) == len(ev.SEGMENT_TEXTS)


async def test_a_failure_for_good_spends_the_chunk_audio_in_a_window_as_alone(
    pool: asyncpg.Pool,
) -> None:
    """A job failed for good tells the caller to erase its chunk audio, whether its failure
    was written alone or in a window with other events (it was lost in a window once)."""
    store = PostgresProjectionStore(pool)
    alone, windowed, other = uuid4(), uuid4(), uuid4()
    for job in (alone, windowed, other):
        await store.apply(ev.uploaded(job))
    by_itself = await store.apply(ev.failed(alone))
    window = [ev.failed(windowed), ev.started(other)]
    together = await asyncio.gather(*(store.apply(e) for e in window))
    commits = await pool.fetchval(
        "SELECT count(DISTINCT processed_at) FROM processed_events WHERE event_id = ANY($1)",
        [e.event_id for e in window],
    )
    assert commits == 1, "the two events were not written in one window"
    assert by_itself.chunk_audio_spent
    assert [r.chunk_audio_spent for r in together] == [True, False]


async def test_a_conflicting_upload_in_a_window_is_refused_alone(pool: asyncpg.Pool) -> None:
    store = PostgresProjectionStore(pool)
    job, other = uuid4(), uuid4()
    await store.apply(ev.uploaded(job))
    impostor = AudioUploadedV1.model_validate(
        ev.uploaded(job).model_dump() | {"event_id": uuid4(), "audio_uri": "file:///media/x.wav"}
    )
    results = await asyncio.gather(
        store.apply(ev.started(job)),
        store.apply(impostor),
        *(store.apply(e) for e in ev.completed_job(other)),
        return_exceptions=True,
    )
    assert isinstance(results[1], ConflictingJobError)
    assert not any(isinstance(r, BaseException) for i, r in enumerate(results) if i != 1)
    statuses = {
        r["job_id"]: r["status"] for r in await pool.fetch("SELECT job_id, status FROM jobs")
    }
    assert statuses == {job: "processing", other: "completed"}
    recorded = await pool.fetchval(
        "SELECT count(*) FROM processed_events WHERE event_id = $1", impostor.event_id
    )
    assert recorded == 0


async def test_events_of_a_deleted_job_in_a_window_leave_nothing(pool: asyncpg.Pool) -> None:
    store = PostgresProjectionStore(pool)
    gone, kept = uuid4(), uuid4()
    await store.apply(ev.uploaded(gone))
    await store.apply(ev.delete_requested(gone))
    await asyncio.gather(*(store.apply(e) for e in ev.completed_job(gone) + ev.completed_job(kept)))
    rows = await pool.fetch("SELECT DISTINCT job_id FROM processed_events")
    assert {r["job_id"] for r in rows} == {kept}
    assert [r["job_id"] for r in await pool.fetch("SELECT job_id FROM jobs")] == [kept]
    assert await pool.fetchval("SELECT count(*) FROM job_tombstones WHERE job_id = $1", gone) == 1


async def test_the_reader_role_can_select_but_not_write(
    pool: asyncpg.Pool, database_url: str
) -> None:
    store = PostgresProjectionStore(pool)
    job = uuid4()
    await apply_all(store, ev.completed_job(job))
    reader = await asyncpg.connect(as_role(database_url, READER))
    try:
        # Row-level security: the reader sees a tenant's rows only once it names the tenant.
        assert await reader.fetchval("SELECT status FROM jobs WHERE job_id = $1", job) is None
        async with reader.transaction():
            await reader.execute("SELECT set_config('scribe.tenant_id', 'default', true)")
            assert await reader.fetchval("SELECT status FROM jobs WHERE job_id = $1", job) == (
                "completed"
            )
        writes = [
            "INSERT INTO tenants (tenant_id) VALUES ('intruder')",
            "UPDATE jobs SET status = 'failed'",
            "DELETE FROM segments",
            "DELETE FROM processed_events",
            "TRUNCATE jobs CASCADE",
            "CREATE TABLE reader_was_here (id int)",
        ]
        for statement in writes:
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await reader.execute(statement)
    finally:
        await reader.close()
    assert await pool.fetchval("SELECT status FROM jobs WHERE job_id = $1", job) == "completed"
    assert await pool.fetchval("SELECT count(*) FROM segments") == len(ev.SEGMENT_TEXTS)


async def _dead_letters(amqp_url: str, expected: int) -> list[aio_pika.abc.AbstractIncomingMessage]:
    connection = await aio_pika.connect(amqp_url)
    found: list[aio_pika.abc.AbstractIncomingMessage] = []
    async with connection:
        channel = await connection.channel()
        queue = await channel.get_queue(INDEXER_QUEUE.dead_letter_queue, ensure=False)
        for _ in range(100):
            message = await queue.get(fail=False, no_ack=True)
            if message is not None:
                found.append(message)
                if len(found) == expected:
                    break
            else:
                await asyncio.sleep(0.1)
    return found


async def _wait_for(pool: asyncpg.Pool, sql: str, *args: Any, expect: Any) -> Any:
    async def arrived() -> bool:
        return bool(await pool.fetchval(sql, *args) == expect)

    await eventually_async(arrived, within=15, interval=0.1, what=f"{sql} = {expect!r}")
    return expect


async def test_indexer_consumes_from_the_real_broker_and_dead_letters_what_it_must_not_store(
    pool: asyncpg.Pool, amqp_url: str
) -> None:
    await declare_topology(amqp_url)
    tenants = PostgresTenants(pool)
    await tenants.refresh()
    indexer = build_broker(amqp_url, pool, tenants, IndexerSettings(tenants=("default", "acme")))
    publisher = make_broker(amqp_url, service="test")
    job, stranger = uuid4(), uuid4()
    events = ev.completed_job(job, tenant="acme")
    async with indexer, publisher:
        await indexer.start()
        await publisher.start()
        # Out of order and with a duplicate, the way redeliveries can arrive.
        for event in [events[-1], *events[:-1], events[3]]:
            await publish_event(publisher, event)
        await publish_event(publisher, ev.uploaded(stranger, tenant="mallory"))
        invalid = ev.uploaded(uuid4()).model_dump(mode="json") | {"job_id": "not-a-uuid"}
        await publisher.publish(
            json.dumps(invalid).encode(),
            exchange=routing.EXCHANGE,
            routing_key=routing.AUDIO_UPLOADED_V1,
            message_type=routing.AUDIO_UPLOADED_V1,
            persist=True,
        )
        await _wait_for(
            pool,
            "SELECT count(*) FROM processed_events WHERE job_id = $1",
            job,
            expect=len(events),
        )
        letters = await _dead_letters(amqp_url, expected=2)

    row = await pool.fetchrow("SELECT * FROM jobs WHERE job_id = $1", job)
    assert row is not None
    assert row["status"] == "completed"
    assert row["tenant_id"] == "acme"
    assert row["original_filename"] == "standup.wav"
    assert await pool.fetchval("SELECT count(*) FROM segments WHERE job_id = $1", job) == 3
    codes = {m.headers[amqp.HEADER_DEAD_LETTER_CODE]: m for m in letters}
    assert set(codes) == {"unknown_tenant", "malformed_event"}
    assert "mallory" in str(codes["unknown_tenant"].headers[amqp.HEADER_DEAD_LETTER_REASON])
    assert "job_id" in str(codes["malformed_event"].headers[amqp.HEADER_DEAD_LETTER_REASON])
    assert await pool.fetchval("SELECT count(*) FROM jobs WHERE job_id = $1", stranger) == 0
    assert await pool.fetchval("SELECT count(*) FROM jobs") == 1
    assert await pool.fetchval("SELECT count(*) FROM tenants WHERE tenant_id = 'mallory'") == 0
