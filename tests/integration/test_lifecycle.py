"""Cancel, delete and retention end to end: ingest's API, the real broker, the real indexer.

Ingest (`create_app`, its whole container) and the indexer (`build_indexer`) run against
a RabbitMQ vhost and a PostgreSQL database of their own; a spy queue bound to the
announcements counts what downstream consumers would hear. The transcriber's side of
cancelling (never starting a marked job, stopping a running one) is
`services/transcriber/tests/test_cancel.py` and `test_transcriber_cancel.py`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import aio_pika
import asyncpg
import httpx
import pytest

from contracts import routing
from contracts.envelope import Event
from indexer.handlers import JobEventIndexer
from indexer.main import build_indexer, retention
from indexer.migrate import prepare_database
from indexer.retention import RetentionSweep
from indexer.settings import IndexerSettings
from indexer.store import PostgresProjectionStore, PostgresTenants
from ingest.app import create_app
from ingest.auth import hash_api_key
from ingest.idempotency import FilesystemIdempotencyStore, KeyRecord, job_id_for
from ingest.settings import IngestSettings
from scribe_runtime.amqp import Delivery
from scribe_runtime.cancellations import FilesystemCancelMarks
from scribe_runtime.messaging import make_broker, publish_event
from scribe_runtime.settings import SharedSettings
from scribe_runtime.topology import declare_topology
from services.indexer.tests import job_events as ev
from tests.support.servers import READER, as_role
from tests.support.waiting import eventually_async

pytestmark = pytest.mark.integration

KEYS = {"default": "key-of-default", "acme": "key-of-acme"}
TABLES = ("jobs", "transcripts", "segments", "processed_events", "job_tombstones")
ANNOUNCED = (routing.TRANSCRIPTION_CANCELLED_V1, routing.TRANSCRIPTION_DELETED_V1)


@dataclass
class Stack:
    api: dict[str, httpx.AsyncClient]
    pool: asyncpg.Pool
    publisher: Any
    media_root: Path
    heard: list[aio_pika.abc.AbstractIncomingMessage]

    async def send(self, *events: Event) -> None:
        for event in events:
            await publish_event(self.publisher, event)

    def announced(self, key: str, job: UUID) -> list[str]:
        return [
            m.message_id or ""
            for m in self.heard
            if m.routing_key == key and str(job).encode() in m.body
        ]

    async def status(self, job: UUID, tenant: str = "default") -> int | str:
        response = await self.api[tenant].get(f"/v1/transcriptions/{job}")
        return response.json()["status"] if response.status_code == 200 else response.status_code

    async def until_status(self, job: UUID, expect: int | str) -> None:
        async def reached() -> bool:
            return await self.status(job) == expect

        await eventually_async(reached, within=20, interval=0.1, what=f"{job} is {expect}")

    async def settled(self) -> None:
        """Every event sent so far is applied: a sentinel job sent after them is indexed."""
        sentinel = uuid4()
        await self.send(ev.uploaded(sentinel))
        await self.until_status(sentinel, "queued")

    async def rows_of(self, job: UUID) -> dict[str, int]:
        return {
            t: await self.pool.fetchval(f"SELECT count(*) FROM {t} WHERE job_id = $1", job)
            for t in TABLES
        }


@pytest.fixture
async def stack(database_url: str, amqp_url: str, tmp_path: Path) -> AsyncIterator[Stack]:
    await prepare_database(
        database_url, reader_role=READER, reader_password=None, tenants=("default", "acme")
    )
    await declare_topology(amqp_url)
    media_root = tmp_path / "media"
    media_root.mkdir()
    settings = IngestSettings(
        database_url=as_role(database_url, READER),
        api_keys={hash_api_key(key): tenant for tenant, key in KEYS.items()},
    )
    shared = SharedSettings(
        amqp_url=amqp_url, database_url=database_url, media_root=media_root, tenants=tuple(KEYS)
    )
    app = create_app(shared, settings)
    connection = await aio_pika.connect_robust(amqp_url)
    heard: list[aio_pika.abc.AbstractIncomingMessage] = []
    async with (
        connection,
        asyncpg.create_pool(database_url, min_size=1, max_size=4) as pool,
    ):
        channel = await connection.channel()
        spy = await channel.declare_queue(exclusive=True)
        exchange = await channel.get_exchange(routing.EXCHANGE)
        for key in ANNOUNCED:
            await spy.bind(exchange, routing_key=key)

        async def hear(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            heard.append(message)
            await message.ack()

        await spy.consume(hear)
        tenants = PostgresTenants(pool)
        await tenants.refresh()
        indexer, _ = build_indexer(
            amqp_url, pool, tenants, IndexerSettings(), media_root=media_root
        )
        publisher = make_broker(amqp_url, service="test")
        async with app.router.lifespan_context(app), indexer, publisher:
            await indexer.start()
            await publisher.start()
            transport = httpx.ASGITransport(app=app)
            clients = {
                tenant: httpx.AsyncClient(
                    transport=transport,
                    base_url="http://ingest",
                    headers={"Authorization": f"Bearer {key}"},
                )
                for tenant, key in KEYS.items()
            }
            try:
                yield Stack(clients, pool, publisher, media_root, heard)
            finally:
                for client in clients.values():
                    await client.aclose()


async def test_a_cancelled_job_stays_cancelled_and_is_announced_once(stack: Stack) -> None:
    job = uuid4()
    await stack.send(ev.uploaded(job))
    await stack.until_status(job, "queued")

    response = await stack.api["default"].post(f"/v1/transcriptions/{job}/cancel")
    assert response.status_code == 202, response.text
    assert response.json()["status"] == "queued"
    assert FilesystemCancelMarks(stack.media_root).is_marked_now("default", job), (
        "the workers' mark is on disk before the 202"
    )
    await stack.until_status(job, "cancelled")

    # A worker that had already started reports late; none of it revives the job.
    await stack.send(ev.started(job), ev.progress(job, 0.5), ev.completed(job))
    await stack.settled()
    body = (await stack.api["default"].get(f"/v1/transcriptions/{job}")).json()
    assert body["status"] == "cancelled"
    assert body["cancelled_at"]
    assert "transcript" not in body
    again = await stack.api["default"].post(f"/v1/transcriptions/{job}/cancel")
    assert (again.status_code, again.json()["status"]) == (202, "cancelled")
    await stack.settled()
    assert len(stack.announced(routing.TRANSCRIPTION_CANCELLED_V1, job)) == 1


async def test_a_finished_job_cannot_be_cancelled(stack: Stack) -> None:
    job = uuid4()
    await stack.send(*ev.completed_job(job))
    await stack.until_status(job, "completed")
    response = await stack.api["default"].post(f"/v1/transcriptions/{job}/cancel")
    assert response.status_code == 409
    assert response.json()["code"] == "job_finished"
    await stack.settled()
    assert await stack.status(job) == "completed"
    assert stack.announced(routing.TRANSCRIPTION_CANCELLED_V1, job) == []


async def _completed_job_with_files(stack: Stack) -> tuple[UUID, list[Path]]:
    """A keyed, completed job whose audio, key record and cancel mark are on disk."""
    job = job_id_for("default", "upload-1")
    audio = stack.media_root / "default" / "ab" / ("ab" * 32)
    audio.parent.mkdir(parents=True)
    audio.write_bytes(b"RIFF....WAVE")
    keys = FilesystemIdempotencyStore(stack.media_root)
    await keys.claim("default", "upload-1", KeyRecord(job, "fingerprint", confirmed=True))
    record = stack.media_root / "default" / ".idempotency"
    files = [audio, *[p for p in record.rglob("*") if p.is_file()]]
    assert len(files) == 3, "the audio, the key's record and its index by job"
    events = ev.completed_job(job)
    events[0] = type(events[0]).model_validate(
        events[0].model_dump() | {"audio_uri": audio.as_uri()}
    )
    await stack.send(*events)
    await stack.until_status(job, "completed")
    await stack.settled()  # its progress events too, which may land after the completion
    return job, files


async def test_deleting_another_tenants_job_is_not_found_and_removes_nothing(
    stack: Stack,
) -> None:
    job, files = await _completed_job_with_files(stack)
    before = await stack.rows_of(job)

    response = await stack.api["acme"].delete(f"/v1/transcriptions/{job}")
    assert response.status_code == 404
    assert response.json()["code"] == "not_found"
    await stack.settled()
    assert all(f.exists() for f in files)
    assert await stack.rows_of(job) == before
    assert await stack.status(job) == "completed"


async def test_delete_erases_every_file_row_and_hit_and_a_replay_does_not_revive_it(
    stack: Stack,
) -> None:
    job, files = await _completed_job_with_files(stack)
    search = await stack.api["default"].get("/v1/search", params={"q": "pickled peppers"})
    assert [h["job_id"] for h in search.json()["hits"]] == [str(job)]

    response = await stack.api["default"].delete(f"/v1/transcriptions/{job}")
    assert response.status_code == 202, response.text
    await stack.until_status(job, 404)

    async def files_gone() -> bool:
        return not any(f.exists() for f in files)

    await eventually_async(files_gone, within=20, interval=0.1, what="the job's files erased")
    assert not FilesystemCancelMarks(stack.media_root).is_marked_now("default", job)
    leftovers = [p for p in stack.media_root.rglob("*") if p.is_file() and str(job) in str(p)]
    assert leftovers == []
    assert await stack.rows_of(job) == {
        "jobs": 0,
        "transcripts": 0,
        "segments": 0,
        "processed_events": 0,
        "job_tombstones": 1,
    }
    search = await stack.api["default"].get("/v1/search", params={"q": "pickled peppers"})
    assert search.json()["hits"] == []
    for fmt in ("json", "txt"):
        export = await stack.api["default"].get(f"/v1/transcriptions/{job}/transcript.{fmt}")
        assert export.status_code == 404

    # The original upload replayed, a late completion, and a second delete: nothing returns.
    await stack.send(ev.uploaded(job), ev.completed(job))
    again = await stack.api["default"].delete(f"/v1/transcriptions/{job}")
    assert again.status_code == 404
    await stack.settled()
    assert await stack.status(job) == 404
    assert await stack.rows_of(job) == {
        "jobs": 0,
        "transcripts": 0,
        "segments": 0,
        "processed_events": 0,
        "job_tombstones": 1,
    }
    assert len(stack.announced(routing.TRANSCRIPTION_DELETED_V1, job)) == 1


async def test_retention_deletes_only_what_is_older_than_its_tenants_window(
    database_url: str,
) -> None:
    await prepare_database(
        database_url, reader_role=READER, reader_password=None, tenants=("default", "acme")
    )
    old, recent, running, other = uuid4(), uuid4(), uuid4(), uuid4()
    events: list[Event] = [
        *ev.completed_job(old),  # finished at T0 + 10 s
        *ev.failed_job(recent),
        ev.uploaded(running),
        *ev.completed_job(other, tenant="acme"),
    ]
    recent_failure = ev.failed(recent).model_copy(
        update={"occurred_at": ev.T0 + timedelta(days=2), "event_id": uuid4()}
    )
    async with asyncpg.create_pool(database_url, min_size=1, max_size=4) as pool:
        store = PostgresProjectionStore(pool)
        for event in [*events, recent_failure]:
            await store.apply(event)
        requested: list[Event] = []

        async def publish(event: Event) -> None:
            requested.append(event)

        # 31 days after T0: `old` (default, 30 days) is due; `recent` finished 29 days
        # ago; `running` never finished; acme keeps a year.
        sweep = RetentionSweep(
            pool,
            {"default": 30, "acme": 365},
            publish=publish,
            clock=lambda: ev.T0 + timedelta(days=31),
        )
        assert [(j.tenant_id, j.job_id) for j in await sweep.due()] == [("default", old)]
        assert await sweep.sweep() == 1
        assert await sweep.sweep() == 1, "a repeated sweep asks again, with the same id"
        assert requested[0].event_id == requested[1].event_id
        # Applied by the same path as a user's delete.
        indexer = JobEventIndexer(store, PostgresTenants(pool), _no_dead_letters, publish=publish)
        for request in requested[:2]:
            await indexer.on_job_event(request, Delivery(body=b"{}"))
        remaining = {r["job_id"] for r in await pool.fetch("SELECT job_id FROM jobs")}
        assert remaining == {recent, running, other}
        tombstones = await pool.fetch("SELECT job_id, reason FROM job_tombstones")
        assert [(r["job_id"], r["reason"]) for r in tombstones] == [(old, "retention")]
        deleted = [e for e in requested if e.message_type == routing.TRANSCRIPTION_DELETED_V1]
        assert len({e.event_id for e in deleted}) == 1


async def _no_dead_letters(delivery: Delivery, *, code: str, reason: str) -> None:
    raise AssertionError(f"dead-lettered: {code}: {reason}")


async def test_the_retention_dry_run_lists_what_would_go_and_deletes_nothing(
    database_url: str, amqp_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    await prepare_database(
        database_url, reader_role=READER, reader_password=None, tenants=("default", "acme")
    )
    old, kept = uuid4(), uuid4()
    async with asyncpg.create_pool(database_url, min_size=1, max_size=2) as pool:
        store = PostgresProjectionStore(pool)
        for event in [*ev.completed_job(old), *ev.completed_job(kept, tenant="acme")]:
            await store.apply(event)
        # T0 is days ago: a one-day window has passed for `default`, not acme's year.
        settings = IndexerSettings.model_validate({"retain_days": "default=1,acme=365"})
        shared = SharedSettings(amqp_url=amqp_url, database_url=database_url)
        capsys.readouterr()  # the migrations' log lines
        await retention(settings, shared, dry_run=True)
        lines = [line for line in capsys.readouterr().out.splitlines() if "\t" in line]
        assert [line.split("\t")[:3] for line in lines] == [["default", str(old), "completed"]]
        assert await pool.fetchval("SELECT count(*) FROM jobs") == 2
        assert await pool.fetchval("SELECT count(*) FROM job_tombstones") == 0
