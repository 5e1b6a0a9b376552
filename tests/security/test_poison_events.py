"""Contract-valid-looking poison events, through the real broker and the real indexer.

Each used to pass the contract and then fail in PostgreSQL or in datetime arithmetic: the
indexer crash-looped on it until the delivery limit, and it reached the DLQ under a code
that said nothing of the cause, or (a far-future `occurred_at`) it pinned its job at the
top of every list. Now each is dead-lettered at once with `invalid_event_field`, nothing
of it is stored, and the indexer goes on with the next event.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import aio_pika
import asyncpg
import pytest

from contracts import routing
from contracts.envelope import Event
from indexer.main import build_broker
from indexer.migrate import prepare_database
from indexer.settings import IndexerSettings
from indexer.store import PostgresTenants
from scribe_runtime.topology import declare_topology
from services.indexer.tests import job_events as ev
from tests.security.support import TENANTS
from tests.security.test_hostile_events import dead_letters
from tests.support.servers import READER

pytestmark = pytest.mark.integration


def _body(event: Event, **changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = event.model_dump(mode="json")
    return body | changes


def _poisons(job: UUID, fresh_job: UUID) -> list[tuple[str, dict[str, Any]]]:
    completed = ev.completed(job, tenant="acme")
    segment_nul = _body(completed)
    segment_nul["segments"][1]["text"] = "pickled\x00peppers"
    ahead = (datetime.now(UTC) + timedelta(days=400)).isoformat()
    return [
        ("nul-in-transcript-text", _body(completed, text="The quick\x00brown fox")),
        ("nul-in-segment-text", segment_nul),
        ("nul-in-filename", _body(ev.uploaded(fresh_job, "acme"), original_filename="a\x00.wav")),
        ("started-year-1", _body(ev.started(job, 3, "acme"), occurred_at="0001-01-01T00:00:00Z")),
        ("completed-year-1-east", _body(completed, occurred_at="0001-01-01T00:00:00+14:00")),
        (
            "failed-end-of-calendar",
            _body(ev.failed(job, "acme"), occurred_at="9999-12-31T23:59:59+00:00"),
        ),
        # A new job dated next year would be the newest job of every listing for a year.
        ("uploaded-next-year", _body(ev.uploaded(fresh_job, "acme"), occurred_at=ahead)),
        ("progress-next-year", _body(ev.progress(job, 0.9, "acme"), occurred_at=ahead)),
    ]


async def _publish(exchange: aio_pika.abc.AbstractExchange, name: str, body: object) -> None:
    key = str(body["type"]) + ".v1" if isinstance(body, dict) else routing.AUDIO_UPLOADED_V1
    await exchange.publish(
        aio_pika.Message(
            json.dumps(body).encode(), type=key, message_id=name, content_type="application/json"
        ),
        routing_key=key,
    )


async def test_poison_events_are_dead_lettered_with_a_precise_code(
    amqp_url: str, database_url: str
) -> None:
    await prepare_database(database_url, reader_role=READER, reader_password=None, tenants=TENANTS)
    await declare_topology(amqp_url)
    job, fresh_job = uuid4(), uuid4()
    poisons = _poisons(job, fresh_job)
    async with asyncpg.create_pool(database_url, min_size=1, max_size=4) as pool:
        tenants = PostgresTenants(pool)
        await tenants.refresh()
        indexer = build_broker(amqp_url, pool, tenants, IndexerSettings(tenants=TENANTS))
        connection = await aio_pika.connect(amqp_url)
        async with indexer, connection:
            await indexer.start()
            channel = await connection.channel(publisher_confirms=True)
            exchange = await channel.get_exchange(routing.EXCHANGE)
            for event in ev.completed_job(job, tenant="acme")[:-1]:
                await _publish(exchange, str(event.event_id), event.model_dump(mode="json"))
            for name, body in poisons:
                await _publish(exchange, name, body)
            # After the poisons, the job's real outcome: the indexer must still be consuming.
            final = ev.completed(job, tenant="acme")
            await _publish(exchange, str(final.event_id), final.model_dump(mode="json"))
            letters = await dead_letters(amqp_url, expected=len(poisons))
            for _ in range(100):
                status = await pool.fetchval("SELECT status FROM jobs WHERE job_id = $1", job)
                if status == "completed":
                    break
                await asyncio.sleep(0.1)

        assert letters == {name: "invalid_event_field" for name, _body in poisons}
        row = await pool.fetchrow("SELECT * FROM jobs WHERE job_id = $1", job)
        assert row is not None
        assert row["status"] == "completed"
        assert row["error_code"] is None
        assert row["started_attempt"] == 2  # the year-1 third attempt was not projected
        assert row["updated_at"] <= datetime.now(UTC)  # not pinned in the future
        assert row["first_event_at"] >= datetime(2000, 1, 1, tzinfo=UTC)
        text = await pool.fetchval("SELECT text FROM transcripts WHERE job_id = $1", job)
        assert text == final.text
        assert await pool.fetchval("SELECT count(*) FROM jobs WHERE job_id = $1", fresh_job) == 0
        assert await pool.fetchval("SELECT max(created_at) FROM jobs") <= datetime.now(UTC)
