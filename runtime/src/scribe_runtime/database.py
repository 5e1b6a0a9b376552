"""PostgreSQL failures that may pass by themselves, in one list for every service.

The indexer retries them (in process, then through the retry stages); ingest's read API
answers them `503 database_unavailable`. Anything else is a bug or a permanent problem and
takes its own path.
"""

from __future__ import annotations

import asyncio
from typing import Final

import asyncpg

TRANSIENT_ERRORS: Final[tuple[type[BaseException], ...]] = (
    OSError,  # connection refused / reset
    asyncio.TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
    asyncpg.TooManyConnectionsError,
    asyncpg.AdminShutdownError,
    asyncpg.SerializationError,
    asyncpg.DeadlockDetectedError,
    # statement_timeout or an operator's pg_cancel_backend: the same query may pass later.
    asyncpg.QueryCanceledError,
)
"""PostgreSQL restarting, failing over, overloaded, or a transaction lost to a conflict."""
