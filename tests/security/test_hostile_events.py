"""Hostile events on the bus, each with its expected outcome, through the real indexer.

Whatever is published to `scribe.events`, the indexer neither crashes nor stores what it
must not: an event without a valid, known tenant goes to `indexer.job-events.dlq` with a
stable code, and no event can write into another tenant's rows.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any
from uuid import uuid4

import aio_pika
import asyncpg
import pytest

from contracts import routing
from indexer.main import build_broker
from indexer.migrate import prepare_database
from indexer.settings import IndexerSettings
from indexer.store import PostgresTenants
from scribe_runtime import amqp
from scribe_runtime.topology import INDEXER_QUEUE, declare_topology
from services.indexer.tests import job_events as ev
from tests.security.support import TENANTS
from tests.support.servers import READER
from tests.support.waiting import eventually_async

pytestmark = pytest.mark.integration


def uploaded(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = ev.uploaded(uuid4(), tenant="acme").model_dump(mode="json")
    body.update(changes)
    return body


def without(key: str) -> dict[str, Any]:
    body = uploaded()
    del body[key]
    return body


Raw = tuple[bytes, str]  # body, routing key (= AMQP type unless the case overrides it)
UPLOADED = routing.AUDIO_UPLOADED_V1


def js(body: object, key: str = UPLOADED) -> Callable[[], Raw]:
    return lambda: (json.dumps(body).encode(), key)


# (name, message, expected dead-letter code)
CORPUS: list[tuple[str, Callable[[], Raw], str]] = [
    ("unknown-tenant", js(uploaded(tenant_id="mallory")), "unknown_tenant"),
    ("missing-tenant", js(without("tenant_id")), "malformed_event"),
    ("empty-tenant", js(uploaded(tenant_id="")), "malformed_event"),
    ("null-tenant", js(uploaded(tenant_id=None)), "malformed_event"),
    ("sql-in-tenant", js(uploaded(tenant_id="acme'; DROP TABLE jobs;--")), "malformed_event"),
    ("tenant-with-newline", js(uploaded(tenant_id="acme\n")), "malformed_event"),
    ("tenant-too-long", js(uploaded(tenant_id="a" * 65)), "malformed_event"),
    ("tenant-wildcard", js(uploaded(tenant_id="%")), "malformed_event"),
    ("not-json", lambda: (b"\x00\x01 not json", UPLOADED), "malformed_event"),
    ("not-utf8", lambda: (b'{"tenant_id": "\xff\xfe"}', UPLOADED), "malformed_event"),
    ("json-array", js([uploaded()]), "malformed_event"),
    ("nested-too-deep", lambda: (b"[" * 50_000 + b"]" * 50_000, UPLOADED), "malformed_event"),
    ("job-id-not-uuid", js(uploaded(job_id="../../etc")), "malformed_event"),
    ("naive-timestamp", js(uploaded(occurred_at="2026-01-01T00:00:00")), "malformed_event"),
    ("unknown-version", js(uploaded(version=9)), "unsupported_event_version"),
    ("unknown-type", js(uploaded(type="tenant.deleted")), "unknown_event_type"),
    (
        "type-disagrees-with-body",
        js(uploaded(), routing.TRANSCRIPT_COMPLETED_V1),
        "malformed_event",
    ),
]


async def dead_letters(amqp_url: str, expected: int) -> dict[str, str]:
    """message_id → dead-letter code, for `expected` letters (or what came in 20 s)."""
    found: dict[str, str] = {}
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel()
        queue = await channel.get_queue(INDEXER_QUEUE.dead_letter_queue, ensure=False)
        for _ in range(200):
            message = await queue.get(fail=False, no_ack=True)
            if message is None:
                await asyncio.sleep(0.1)
                continue
            code = (message.headers or {}).get(amqp.HEADER_DEAD_LETTER_CODE)
            found[str(message.message_id)] = str(code)
            if len(found) == expected:
                break
    return found


def test_the_corpus_is_big_enough() -> None:
    assert len(CORPUS) >= 10


async def test_hostile_events_are_dead_lettered_and_store_nothing(
    amqp_url: str, database_url: str
) -> None:
    await prepare_database(database_url, reader_role=READER, reader_password=None, tenants=TENANTS)
    await declare_topology(amqp_url)
    acme_job = uuid4()
    async with asyncpg.create_pool(database_url, min_size=1, max_size=4) as pool:
        tenants = PostgresTenants(pool)
        await tenants.refresh()
        indexer = build_broker(amqp_url, pool, tenants, IndexerSettings(tenants=TENANTS))
        connection = await aio_pika.connect(amqp_url)
        async with indexer, connection:
            await indexer.start()
            channel = await connection.channel(publisher_confirms=True)
            exchange = await channel.get_exchange(routing.EXCHANGE)
            for event in ev.completed_job(acme_job, tenant="acme"):
                await exchange.publish(
                    aio_pika.Message(
                        event.model_dump_json().encode(),
                        type=event.message_type,
                        message_id=str(event.event_id),
                        content_type="application/json",
                    ),
                    routing_key=event.message_type,
                )
            for name, make, _code in CORPUS:
                body, key = make()
                await exchange.publish(
                    aio_pika.Message(body, type=key, message_id=name),
                    routing_key=UPLOADED if key == routing.TRANSCRIPT_COMPLETED_V1 else key,
                )
            # globex claims acme's job: a fact about globex's own (new) job, nothing more.
            for event in ev.failed_job(acme_job, tenant="globex"):
                await exchange.publish(
                    aio_pika.Message(
                        event.model_dump_json().encode(),
                        type=event.message_type,
                        message_id=str(event.event_id),
                    ),
                    routing_key=event.message_type,
                )
            letters = await dead_letters(amqp_url, expected=len(CORPUS))

            async def both_projected() -> bool:
                rows = await pool.fetch("SELECT status FROM jobs WHERE job_id = $1", acme_job)
                return sorted(r["status"] for r in rows) == ["completed", "failed"]

            # globex's claim comes after the letters: its row, not a timer, says it is done.
            await eventually_async(both_projected, within=20, what="globex's own job projected")

        expected = {name: code for name, _make, code in CORPUS}
        assert letters == expected
        rows = await pool.fetch("SELECT tenant_id, status FROM jobs WHERE job_id = $1", acme_job)
        assert sorted((r["tenant_id"], r["status"]) for r in rows) == [
            ("acme", "completed"),
            ("globex", "failed"),
        ]
        assert await pool.fetchval("SELECT count(*) FROM jobs") == 2
        assert await pool.fetchval(
            "SELECT array_agg(tenant_id ORDER BY tenant_id) FROM tenants"
        ) == sorted(TENANTS)
        assert await pool.fetchval("SELECT to_regclass('jobs') IS NOT NULL")
