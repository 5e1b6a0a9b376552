"""`bench.broker_floor` keeps measuring what it says: every job's events through every queue.

A benchmark is not timed here; this only checks that its pipeline loses nothing, so that
the floor it reports is the floor of the whole contract.
"""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from bench.broker_floor import pipeline

pytestmark = pytest.mark.integration


async def test_the_floor_pipeline_tracks_every_event_of_every_job_once(
    amqp_url: str, database_url: str
) -> None:
    # A lost event would leave its job waiting for ever: fail instead.
    figures = await asyncio.wait_for(pipeline(amqp_url, database_url, 25, [None, 100.0]), 60)

    assert [phase["jobs"] for phase in figures["phases"]] == [25, 25]
    conn = await asyncpg.connect(database_url)
    try:
        tracked = await conn.fetchval("SELECT count(*) FROM processed")
    finally:
        await conn.close()
    # 25 warm-up jobs and two phases of 25, three events each indexed once.
    assert tracked == 3 * 75
    for phase in figures["phases"]:
        assert set(phase["cpu_ms_per_job"]) == {"rabbitmq", "postgres", "clients (Python)"}
        assert 0 < phase["p50_ms"] <= phase["p99_ms"]
