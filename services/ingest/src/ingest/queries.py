"""The read side's port: every query of the read API, over the read-only PostgreSQL role.

The pool opens no connection up front, so ingest starts (and keeps taking uploads) while
PostgreSQL is away; a read then fails with `database_unavailable` until it is back.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg

from ingest.settings import IngestSettings


@asynccontextmanager
async def open_reader_pool(settings: IngestSettings) -> AsyncIterator[asyncpg.Pool]:
    """The read-only pool, open for the block's duration."""
    pool = await asyncpg.create_pool(
        settings.database_url,
        min_size=0,  # connect on first use: a missing database must not stop ingest starting
        max_size=settings.reader_pool_size,
        timeout=settings.database_timeout_seconds,
        command_timeout=settings.database_timeout_seconds,
        max_inactive_connection_lifetime=60.0,
    )
    try:
        yield pool
    finally:
        try:
            await asyncio.wait_for(pool.close(), timeout=10)
        except TimeoutError:
            pool.terminate()
