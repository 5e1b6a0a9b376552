"""The composition root: every object ingest runs on, built once, in one place.

`open_container` builds the real thing for the app's lifespan (keys, topology, broker,
media store, idempotency store, reader pool, upload service); `wire` is the part that
only assembles objects, so unit tests build the same container over fakes. Routes never
see this module: they receive its parts through `ingest.deps`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Collection
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Final, Protocol

import asyncpg
import structlog

from contracts.envelope import Event
from ingest.auth import ApiKeyring
from ingest.broker import BrokerPublisher
from ingest.bucket_events import BucketEvents
from ingest.cursors import CursorCodec
from ingest.failures import TOO_MANY_WAITING
from ingest.idempotency import FilesystemIdempotencyStore, IdempotencyStore
from ingest.job_requests import JobKeys, JobLifecycle, subscribe_deletions
from ingest.limits import WAIT_RETRY_AFTER_SECONDS, UploadSlots
from ingest.media import FilesystemMediaStore, MediaStore
from ingest.object_media import S3MediaStore
from ingest.presigned import PresignedUploads
from ingest.queries import JobReader, open_reader_pool
from ingest.settings import IngestSettings
from ingest.uploads import (
    Prober,
    S3Scope,
    UploadedPublisher,
    UploadService,
    UrlGuard,
    probe_in_thread,
)
from ingest.webhook_registry import WebhookRegistry
from scribe_runtime.cancellations import CancelMarks, FilesystemCancelMarks
from scribe_runtime.messaging import make_broker
from scribe_runtime.netguard import ResolvedUrl, allowed_private_endpoints, resolve_public_url
from scribe_runtime.objectstore import MediaUrl, open_s3_client
from scribe_runtime.settings import DEFAULT_MAX_DURATION_SECONDS, SharedSettings
from scribe_runtime.topology import declare_topology

log = structlog.get_logger(__name__)

STALE_UPLOAD_SECONDS: Final = 24 * 3600.0
"""A temp upload untouched this long belongs to a process that died mid-upload."""


class Publisher(UploadedPublisher, Protocol):
    """The broker as ingest sees it: publish with confirms, and say whether it is up."""

    async def publish(self, event: Event) -> None:
        """Publish any of ingest's events and await the confirm (`PublishFailedError`)."""
        ...

    async def is_connected(self) -> bool:
        """True while the broker's connection is up (`/readyz`)."""
        ...

    async def publish_declared(self, event: Event) -> None:
        """Publish a declared event (webhook commands); `PublishFailedError` otherwise."""
        ...


@dataclass(frozen=True, slots=True)
class ReadServices:
    """What the read API needs: settings, who may call, and the read-side port."""

    settings: IngestSettings
    keyring: ApiKeyring
    queries: JobReader
    cursors: CursorCodec


@dataclass(frozen=True, slots=True)
class IngestContainer(ReadServices):
    """Everything the whole ingest app needs: the read side, plus submissions."""

    slots: UploadSlots
    waits: UploadSlots
    """Per-tenant slots for requests waiting on a job (the OpenAI-compatible routes)."""
    media: MediaStore
    publisher: Publisher
    uploads: UploadService
    lifecycle: JobLifecycle
    webhooks: WebhookRegistry
    presigned: PresignedUploads | None = None
    """Presigned uploads (object storage only)."""


def load_keyring(
    settings: IngestSettings, served_tenants: Collection[str] | None = None
) -> ApiKeyring:
    """The configured API keys; says loudly when only the development key works.

    With `served_tenants` (`SCRIBE_TENANTS`), a key of any other tenant stops start-up
    (`ApiKeyConfigError`): its jobs would be accepted here and refused by every worker.
    """
    keyring = ApiKeyring.load(settings.api_keys, settings.api_keys_file)
    if served_tenants is not None:
        keyring.check_served(served_tenants)
    keyring.warn_if_insecure()
    return keyring


def cursor_codec(settings: IngestSettings) -> CursorCodec:
    """Cursors signed with the configured secret (or, unset, one this process made)."""
    secret = settings.cursor_secret
    return CursorCodec(secret.get_secret_value().encode() if secret is not None else None)


def wire(
    settings: IngestSettings,
    *,
    keyring: ApiKeyring,
    reader_pool: asyncpg.Pool,
    media: MediaStore,
    idempotency: IdempotencyStore,
    publisher: Publisher,
    url_guard: UrlGuard,
    prober: Prober = probe_in_thread,
    marks: CancelMarks,
    keys: JobKeys,
    webhook_allowed_hosts: frozenset[str] = frozenset(),
    s3_scope: S3Scope | None = None,
    max_duration_seconds: float = DEFAULT_MAX_DURATION_SECONDS,
) -> IngestContainer:
    """Assemble the container from its adapters (real ones, or a test's fakes)."""
    queries = JobReader.from_settings(reader_pool, settings)
    return IngestContainer(
        settings=settings,
        keyring=keyring,
        queries=queries,
        webhooks=WebhookRegistry(
            publisher.publish_declared,
            queries,
            allowed_hosts=webhook_allowed_hosts,
            max_per_tenant=settings.max_webhooks_per_tenant,
        ),
        cursors=cursor_codec(settings),
        slots=UploadSlots(settings.max_concurrent_uploads_per_tenant),
        waits=UploadSlots(
            settings.openai_max_waiting_per_tenant,
            what="transcriptions waited on",
            code=TOO_MANY_WAITING,
            retry_after_seconds=WAIT_RETRY_AFTER_SECONDS,
        ),
        media=media,
        publisher=publisher,
        uploads=UploadService(
            media=media,
            idempotency=idempotency,
            publisher=publisher,
            url_guard=url_guard,
            prober=prober,
            s3_scope=s3_scope or S3Scope(),
            max_upload_bytes=settings.max_upload_bytes,
            max_duration_seconds=max_duration_seconds,
        ),
        lifecycle=JobLifecycle(queries=queries, marks=marks, publisher=publisher, keys=keys),
        presigned=PresignedUploads(
            media.client,
            media.base,
            expires_seconds=settings.presigned_upload_expires_seconds,
            max_upload_bytes=settings.max_upload_bytes,
            max_duration_seconds=max_duration_seconds,
        )
        if isinstance(media, S3MediaStore)
        else None,
    )


@asynccontextmanager
async def open_container(
    shared: SharedSettings, settings: IngestSettings
) -> AsyncIterator[IngestContainer]:
    """Build and connect everything for the app's lifetime; close it all afterwards."""
    # Keys first: a bad keys file, or a key of a tenant no worker serves, stops start-up
    # before anything connects.
    keyring = load_keyring(settings, shared.tenants)
    # Declared before the first publish: an upload accepted before any worker ever ran
    # still lands in the durable transcriber and indexer queues.
    await declare_topology(
        shared.amqp_url, initial_group_size=shared.amqp_quorum_initial_group_size
    )
    broker = make_broker(shared.amqp_url, service="scribe-ingest")
    publisher = BrokerPublisher(broker, timeout_seconds=settings.publish_timeout_seconds)
    # Keys are small records, not audio: they stay on the local filesystem.
    idempotency = FilesystemIdempotencyStore(shared.media_root)
    async with open_media(shared, settings) as media:
        swept = await media.sweep_stale_uploads(STALE_UPLOAD_SECONDS)
        if swept:
            log.warning("stale_uploads_removed", count=swept)
        # Bucket notifications are consumed only where media is in object storage.
        if shared.media().is_s3 or shared.s3_tenant_prefixes:
            BucketEvents(
                broker, publisher, media=shared.media(), grants=shared.s3_grants()
            ).subscribe()
        async with open_reader_pool(settings) as reader_pool:
            container = wire(
                settings,
                keyring=keyring,
                reader_pool=reader_pool,
                media=media,
                idempotency=idempotency,
                publisher=publisher,
                url_guard=url_guard_for(shared),
                marks=FilesystemCancelMarks(shared.media_root),
                keys=idempotency,
                webhook_allowed_hosts=shared.webhooks_allowed_hosts,
                s3_scope=S3Scope.from_settings(shared),
                max_duration_seconds=shared.max_duration_seconds,
            )
            # Subscribed before the broker starts, as FastStream wants.
            subscribe_deletions(broker, container.lifecycle)
            async with broker:
                await broker.start()
                log.info(
                    "ingest_started",
                    media_url=describe(shared.media()),
                    max_upload_bytes=settings.max_upload_bytes,
                    max_duration_seconds=shared.max_duration_seconds,
                )
                yield container
    log.info("ingest_stopped")


class SweepableStore(MediaStore, Protocol):
    """A media store that can remove what crashed uploads left behind."""

    async def sweep_stale_uploads(self, older_than_seconds: float) -> int:
        """Remove in-flight uploads older than this; returns how many."""
        ...


@asynccontextmanager
async def open_media(
    shared: SharedSettings, settings: IngestSettings
) -> AsyncIterator[SweepableStore]:
    """The media store `SCRIBE_MEDIA_URL` names: the filesystem, or an S3 bucket."""
    media = shared.media()
    if media.s3 is None:
        assert media.root is not None
        yield FilesystemMediaStore(media.root, min_free_bytes=settings.min_free_bytes)
        return
    async with open_s3_client() as client:
        yield S3MediaStore(client, media.s3)


def describe(media: MediaUrl) -> str:
    """The media store, as start-up logs it."""
    return media.s3.uri if media.s3 is not None else f"file://{media.root}"


def url_guard_for(shared: SharedSettings) -> UrlGuard:
    """The SSRF guard, letting through only the configured store and allow-listed endpoints."""
    allowed = allowed_private_endpoints(shared)

    async def guard(url: str) -> ResolvedUrl:
        return await resolve_public_url(url, allowed=allowed)

    return guard


@asynccontextmanager
async def open_read_services(settings: IngestSettings) -> AsyncIterator[ReadServices]:
    """The read side alone, no broker nor media store (what `bench.search` serves)."""
    keyring = load_keyring(settings)
    async with open_reader_pool(settings) as reader_pool:
        yield ReadServices(
            settings=settings,
            keyring=keyring,
            queries=JobReader.from_settings(reader_pool, settings),
            cursors=cursor_codec(settings),
        )
