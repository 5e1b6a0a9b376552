"""The FastAPI app: routes and error handlers over a container from `ingest.container`.

`create_app` is what `scribe-ingest` serves: its lifespan opens the real container.
`build_app` takes a container (or a way to open one), so tests build the very same app
over fakes. `create_read_app` serves the read API alone, without broker or media store.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

from fastapi import APIRouter, FastAPI

from ingest import (
    health,
    lifecycle,
    metrics,
    openai_compat,
    reads,
    submissions,
    upload_targets,
    webhooks,
)
from ingest.container import IngestContainer, ReadServices, open_container, open_read_services
from ingest.deps import attach
from ingest.docs import offline_docs_app
from ingest.errors import install_error_handlers
from ingest.settings import IngestSettings
from scribe_runtime.settings import SharedSettings

Opener = Callable[[], AbstractAsyncContextManager[ReadServices]]
"""Opens a container for the app's lifetime (and closes it after)."""


def create_app(
    shared: SharedSettings | None = None, settings: IngestSettings | None = None
) -> FastAPI:
    """The ingest app. Nothing connects until its lifespan starts."""
    shared = shared or SharedSettings()
    settings = settings or IngestSettings()
    return build_app(lambda: open_container(shared, settings))


def create_read_app(settings: IngestSettings | None = None) -> FastAPI:
    """The read endpoints alone over the read-only pool (`bench.search` serves this)."""
    settings = settings or IngestSettings()
    return build_read_app(lambda: open_read_services(settings))


def build_app(
    container: IngestContainer | Callable[[], AbstractAsyncContextManager[IngestContainer]],
) -> FastAPI:
    """Every route over `container`: a ready one (tests), or one the lifespan opens."""
    return _app(
        container,
        (
            submissions.router,
            upload_targets.router,
            lifecycle.router,
            openai_compat.router,
            health.router,
            reads.router,
            webhooks.router,
            metrics.router,
        ),
    )


def build_read_app(services: ReadServices | Opener) -> FastAPI:
    """The read routes (and `/metrics`) over `services`."""
    return _app(services, (reads.router, metrics.router))


def _app(services: ReadServices | Opener, routers: Iterable[APIRouter]) -> FastAPI:
    # /docs and /redoc from local assets: they work with no internet.
    app = offline_docs_app(
        title="Scribe ingest",
        version="0.1.0",
        summary="Submit audio for transcription; read jobs, transcripts and search.",
        lifespan=None if isinstance(services, ReadServices) else _lifespan(services),
    )
    if isinstance(services, ReadServices):
        attach(app, services)
    install_error_handlers(app)
    for router in routers:
        app.include_router(router)
    return app


def _lifespan(opener: Opener) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with opener() as services:
            attach(app, services)
            yield

    return lifespan
