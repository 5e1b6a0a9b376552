"""What the API's reads cost the database server's backends, not only the API.

A search for common words over many segments uses a few MB of the backend's heap. With
glibc's default trim rule a backend handed that memory back after every statement and
faulted it in again on the next one (~2 ms of a ~10 ms search at 1M segments); the reader
pool now sets each backend's rules once, at connect (`ingest.queries.keep_backend_heap`).
The backend's page faults are read from `/proc`, so PostgreSQL must run on this machine.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from bench.search import COMMON_WORDS, TENANT, load, vocabulary
from indexer.migrate import prepare_database
from ingest.queries import JobReader, open_reader_pool
from ingest.settings import IngestSettings
from tests.support.servers import READER, as_role

pytestmark = pytest.mark.integration

SEARCHES = 10


def stat_path(pid: int) -> Path:
    return Path(f"/proc/{pid}/stat")


def minor_faults(pid: int) -> int:
    """Minor page faults of a process so far (`/proc/<pid>/stat`, field 10)."""
    fields = stat_path(pid).read_text().rsplit(")", 1)[1].split()
    return int(fields[7])


async def test_searches_leave_the_backend_its_memory_instead_of_faulting_it_in_each_time(
    database_url: str,
) -> None:
    await prepare_database(
        database_url, reader_role=READER, reader_password=None, tenants=(TENANT,)
    )
    # 50,000 segments with the bench's Zipf vocabulary: its commonest word is in most of
    # them. Without the pool's preparation each search here faulted 120-140 pages in.
    await load(database_url, 50_000, vocabulary())
    settings = IngestSettings(database_url=as_role(database_url, READER), reader_pool_size=1)
    async with open_reader_pool(settings) as pool:
        reader = JobReader.from_settings(pool, settings)
        async with pool.acquire() as conn:
            backend = conn.get_server_pid()
        if not await asyncio.to_thread(stat_path(backend).exists):
            pytest.skip(f"PostgreSQL's backend {backend} is not a process on this machine")
        first = await reader.search(TENANT, COMMON_WORDS[0], limit=20)
        assert len(first.hits) == 20
        before = minor_faults(backend)
        for _ in range(SEARCHES):
            result = await reader.search(TENANT, COMMON_WORDS[0], limit=20)
            assert result.hits == first.hits
        per_search = (minor_faults(backend) - before) / SEARCHES

    assert per_search < 20, f"the backend faulted in {per_search:.0f} pages a search"
