"""Shared by the security tests: one API key per tenant, and an in-process ingest
(over ASGI, or served by uvicorn on a real socket)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Final

import httpx
import uvicorn
from fastapi import FastAPI

from ingest.app import create_app
from ingest.auth import hash_api_key
from ingest.settings import IngestSettings
from scribe_runtime.settings import SharedSettings
from tests.support.ports import free_port
from tests.support.waiting import eventually_async

TENANTS: Final = ("acme", "globex")
KEYS: Final = {tenant: f"scribe_test-key-of-{tenant}-0123456789abcdef" for tenant in TENANTS}


def auth(tenant: str) -> dict[str, str]:
    """The Authorization header of `tenant`'s key."""
    return {"Authorization": f"Bearer {KEYS[tenant]}"}


def keyring() -> dict[str, str]:
    """`SCRIBE_INGEST_API_KEYS` for the test tenants."""
    return {hash_api_key(key): tenant for tenant, key in KEYS.items()}


def files_under(root: Path) -> list[Path]:
    """Every regular file (or link) below `root`."""
    return sorted(p for p in root.rglob("*") if p.is_file() or p.is_symlink())


@asynccontextmanager
async def running_app(
    amqp_url: str, reader_url: str, media_root: Path, **settings: Any
) -> AsyncIterator[FastAPI]:
    """`create_app` with its lifespan entered: the real broker, the reader role's database."""
    shared: dict[str, Any] = {}
    if "max_duration_seconds" in settings:  # one limit for every service: a shared setting
        shared["max_duration_seconds"] = settings.pop("max_duration_seconds")
    app = create_app(
        SharedSettings(amqp_url=amqp_url, media_root=media_root, tenants=TENANTS, **shared),
        IngestSettings(
            database_url=reader_url,
            api_keys=keyring(),
            publish_timeout_seconds=5.0,
            **settings,
        ),
    )
    async with app.router.lifespan_context(app):
        yield app


def client(app: FastAPI, tenant: str | None = None) -> httpx.AsyncClient:
    """An ASGI client, authenticated as `tenant` when given."""
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://ingest",
        headers=auth(tenant) if tenant else {},
        timeout=30,
    )


@asynccontextmanager
async def serving(app: FastAPI, **config: Any) -> AsyncIterator[int]:
    """Serve a started app (its lifespan already entered) with uvicorn on a free port."""
    port = free_port()
    server = uvicorn.Server(
        # As `scribe-ingest serve` runs it: no access log, our logging set-up.
        uvicorn.Config(app, port=port, lifespan="off", log_config=None, access_log=False, **config)
    )
    task = asyncio.create_task(server.serve())

    async def started() -> bool:
        return server.started

    await eventually_async(started, within=10, interval=0.05, what="uvicorn to start")
    try:
        yield port
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, timeout=10)
