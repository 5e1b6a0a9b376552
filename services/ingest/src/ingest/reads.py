"""Read endpoints (job status, transcripts, exports, search) over the read-only role.

Owned by the read-API work (indexer issue); the app includes `router` and enters
`database` in its lifespan.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import APIRouter, FastAPI

from ingest.settings import IngestSettings

router = APIRouter()


@asynccontextmanager
async def database(app: FastAPI, settings: IngestSettings) -> AsyncIterator[None]:
    """Open the read-only pool for the app's lifetime (`app.state.reader_pool`)."""
    app.state.reader_pool = None
    _ = settings
    yield
