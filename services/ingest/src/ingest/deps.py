"""What a route may ask for, as `Annotated` dependencies over the app's container.

The container (`ingest.container`) is attached to the app once, by `attach`, and read back
only by `services_of`; every route parameter below is a part of it, so a route's
signature says everything it depends on, and a test swaps a part by building the
container over fakes (or with `app.dependency_overrides`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated

import structlog
from fastapi import Depends, FastAPI, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from ingest.auth import ApiKeyring
from ingest.container import IngestContainer, Publisher, ReadServices
from ingest.cursors import CursorCodec
from ingest.failures import UnauthenticatedError
from ingest.job_requests import JobLifecycle
from ingest.limits import UploadSlots
from ingest.media import MediaStore
from ingest.queries import JobReader
from ingest.settings import IngestSettings
from ingest.uploads import UploadService
from ingest.webhook_registry import WebhookRegistry

bearer = HTTPBearer(
    auto_error=False,
    scheme_name="ApiKey",
    description="An API key: `Authorization: Bearer <key>`. Each key belongs to one tenant.",
)


def attach(app: FastAPI, services: ReadServices) -> None:
    """Make `services` the app's container (the only write to `app.state`)."""
    app.state.services = services


def services_of(app: FastAPI) -> ReadServices:
    """The app's container (the only read of `app.state`)."""
    services = getattr(app.state, "services", None)
    if not isinstance(services, ReadServices):
        raise RuntimeError("the app has no container: make it with ingest.app.build_app")
    return services


def container_of(app: FastAPI) -> IngestContainer:
    """The whole app's container; the read-only app has no upload side."""
    services = services_of(app)
    if not isinstance(services, IngestContainer):
        raise RuntimeError("this app serves reads only; it has no upload side")
    return services


# Every provider is `async def` though none awaits: FastAPI runs a plain `def` dependency in
# a worker thread, a thread hop per dependency per request (four on a search).
async def get_services(request: Request) -> ReadServices:
    """The container's read side."""
    return services_of(request.app)


async def get_container(request: Request) -> IngestContainer:
    """The whole container."""
    return container_of(request.app)


async def get_settings(services: Annotated[ReadServices, Depends(get_services)]) -> IngestSettings:
    """Ingest's settings."""
    return services.settings


async def get_keyring(services: Annotated[ReadServices, Depends(get_services)]) -> ApiKeyring:
    """The API keys and their tenants."""
    return services.keyring


async def get_queries(services: Annotated[ReadServices, Depends(get_services)]) -> JobReader:
    """The read-side port: jobs, transcripts, search."""
    return services.queries


async def get_cursors(services: Annotated[ReadServices, Depends(get_services)]) -> CursorCodec:
    """Signs and checks paging cursors."""
    return services.cursors


async def get_uploads(
    container: Annotated[IngestContainer, Depends(get_container)],
) -> UploadService:
    """The submission use case."""
    return container.uploads


async def get_slots(container: Annotated[IngestContainer, Depends(get_container)]) -> UploadSlots:
    """The per-tenant upload slots of this replica."""
    return container.slots


async def get_publisher(container: Annotated[IngestContainer, Depends(get_container)]) -> Publisher:
    """The broker publisher (for readiness)."""
    return container.publisher


async def get_webhooks(
    container: Annotated[IngestContainer, Depends(get_container)],
) -> WebhookRegistry:
    """The webhook use cases."""
    return container.webhooks


async def get_media(container: Annotated[IngestContainer, Depends(get_container)]) -> MediaStore:
    """The media store (for readiness)."""
    return container.media


async def get_lifecycle(
    container: Annotated[IngestContainer, Depends(get_container)],
) -> JobLifecycle:
    """The cancel and delete use case."""
    return container.lifecycle


Settings = Annotated[IngestSettings, Depends(get_settings)]
Keyring = Annotated[ApiKeyring, Depends(get_keyring)]
Queries = Annotated[JobReader, Depends(get_queries)]
Cursors = Annotated[CursorCodec, Depends(get_cursors)]
Uploads = Annotated[UploadService, Depends(get_uploads)]
Slots = Annotated[UploadSlots, Depends(get_slots)]


async def get_waits(container: Annotated[IngestContainer, Depends(get_container)]) -> UploadSlots:
    """The per-tenant slots of requests waiting on a job (OpenAI-compatible routes)."""
    return container.waits


Waits = Annotated[UploadSlots, Depends(get_waits)]
Broker = Annotated[Publisher, Depends(get_publisher)]
Media = Annotated[MediaStore, Depends(get_media)]
Lifecycle = Annotated[JobLifecycle, Depends(get_lifecycle)]
Webhooks = Annotated[WebhookRegistry, Depends(get_webhooks)]


Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]


def _tenant_of(keyring: ApiKeyring, credentials: HTTPAuthorizationCredentials | None) -> str:
    if credentials is None:
        raise UnauthenticatedError("send an API key: Authorization: Bearer <key>")
    tenant = keyring.tenant_for(credentials.credentials)
    if tenant is None:
        raise UnauthenticatedError("the API key is not valid")
    structlog.contextvars.bind_contextvars(tenant_id=tenant)
    return tenant


async def authenticated_tenant(keyring: Keyring, credentials: Credentials) -> str:
    """The tenant of the request's API key; `unauthenticated` without a valid one."""
    return _tenant_of(keyring, credentials)


Tenant = Annotated[str, Depends(authenticated_tenant)]
"""Every `/v1` endpoint takes this: `unauthenticated` (401) without a valid API key."""


@dataclass(frozen=True, slots=True)
class TenantReader:
    """The caller's tenant (authenticated) with the read side's port and cursor codec."""

    tenant: str
    queries: JobReader
    cursors: CursorCodec


async def tenant_reader(request: Request, credentials: Credentials) -> TenantReader:
    """`Tenant`, `Queries` and `Cursors` in one dependency, for the hot read routes.

    The same authentication as `authenticated_tenant` (the key hashed and looked up on
    every request), resolved without the nested chain (tenant → keyring → container,
    queries → container, cursors → container), each link of which FastAPI resolves on
    every request: a search makes about a fifth fewer Python calls (bench/README.md,
    session 6).
    """
    services = services_of(request.app)
    return TenantReader(
        _tenant_of(services.keyring, credentials), services.queries, services.cursors
    )


TenantReads = Annotated[TenantReader, Depends(tenant_reader)]
"""`unauthenticated` (401) without a valid API key, like `Tenant`."""


async def upload_slot(tenant: Tenant, slots: Slots) -> AsyncIterator[None]:
    """Hold one of the tenant's slots while the submission is handled."""
    with slots.hold(tenant):
        yield


UploadSlot = Annotated[None, Depends(upload_slot)]
"""Taken by `POST /v1/transcriptions`: `too_many_uploads` (429) when the tenant has none free."""
