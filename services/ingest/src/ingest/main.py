"""Composition root: settings, broker, media store, routes; and the `scribe-ingest` command."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import structlog
import uvicorn
from fastapi import FastAPI

from ingest import metrics, reads
from ingest.api import router
from ingest.auth import ApiKeyring, check_entry, hash_api_key, new_api_key
from ingest.broker import BrokerPublisher
from ingest.errors import install_error_handlers
from ingest.idempotency import FilesystemIdempotencyStore
from ingest.media import FilesystemMediaStore
from ingest.settings import IngestSettings
from ingest.uploads import UploadService
from scribe_runtime.logging import configure_logging
from scribe_runtime.messaging import make_broker
from scribe_runtime.netguard import resolve_public_url
from scribe_runtime.settings import SharedSettings
from scribe_runtime.topology import declare_topology

log = structlog.get_logger(__name__)

SERVICE = "ingest"
STALE_UPLOAD_SECONDS = 24 * 3600.0
"""A temp upload untouched this long belongs to a process that died mid-upload."""

Lifespan = Callable[[FastAPI], AbstractAsyncContextManager[None]]


def create_app(
    shared: SharedSettings | None = None, settings: IngestSettings | None = None
) -> FastAPI:
    """The ingest app. Nothing connects until its lifespan starts."""
    shared = shared or SharedSettings()
    settings = settings or IngestSettings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Keys first: a bad keys file stops start-up before anything connects.
        app.state.api_keys = ApiKeyring.load(settings.api_keys, settings.api_keys_file)
        app.state.api_keys.warn_if_insecure()
        # Declared before the first publish: an upload accepted before any worker ever ran
        # still lands in the durable transcriber and indexer queues.
        await declare_topology(shared.amqp_url)
        broker = make_broker(shared.amqp_url, service="scribe-ingest")
        media = FilesystemMediaStore(shared.media_root)
        swept = await media.sweep_stale_uploads(STALE_UPLOAD_SECONDS)
        if swept:
            log.warning("stale_uploads_removed", count=swept)
        publisher = BrokerPublisher(broker, timeout_seconds=settings.publish_timeout_seconds)
        app.state.settings = settings
        app.state.shared = shared
        app.state.broker = broker
        app.state.publisher = publisher
        app.state.uploads = UploadService(
            media=media,
            idempotency=FilesystemIdempotencyStore(shared.media_root),
            publisher=publisher,
            url_guard=resolve_public_url,
            max_upload_bytes=settings.max_upload_bytes,
            max_duration_seconds=settings.max_duration_seconds,
        )
        async with broker:
            await broker.start()
            async with reads.database(app, settings):
                log.info(
                    "ingest_started",
                    media_root=str(media.root),
                    max_upload_bytes=settings.max_upload_bytes,
                    max_duration_seconds=settings.max_duration_seconds,
                )
                yield
        log.info("ingest_stopped")

    return build_app(lifespan)


def build_app(lifespan: Lifespan | None) -> FastAPI:
    """Routes and error handlers; `lifespan` fills `app.state` (tests may fill it with fakes)."""
    app = FastAPI(
        title="Scribe ingest",
        version="0.1.0",
        summary="Submit audio for transcription; read jobs, transcripts and search.",
        lifespan=lifespan,
    )
    install_error_handlers(app)
    app.include_router(router)
    app.include_router(reads.router)
    app.include_router(metrics.router)
    return app


def hash_key_command(tenant: str, key_from_stdin: bool) -> None:
    """Print a keys-file line and a `SCRIBE_INGEST_API_KEYS` entry for a (new) key."""
    if key_from_stdin:
        key, shown = sys.stdin.readline().strip(), False
        if not key:
            raise SystemExit("no key on stdin")
    else:
        key, shown = new_api_key(), True
    digest = hash_api_key(key)
    if shown:
        print(f"api key (give it to the client; only its hash is stored): {key}")
    print(f"keys file line: {digest} {tenant}")
    print(f"SCRIBE_INGEST_API_KEYS entry: {json.dumps({digest: tenant})}")


def main(argv: Sequence[str] | None = None) -> None:
    """`scribe-ingest`: serve the API on `SCRIBE_INGEST_HOST:SCRIBE_INGEST_PORT`."""
    parser = argparse.ArgumentParser(
        prog="scribe-ingest",
        description="Scribe's HTTP API: uploads become audio.uploaded.v1 events; reads.",
        epilog="Configured by environment variables (SCRIBE_*, SCRIBE_INGEST_*); see README.",
    )
    commands = parser.add_subparsers(dest="command", metavar="{serve,hash-key}")
    commands.add_parser("serve", help="serve the API (the default)")
    hash_key = commands.add_parser(
        "hash-key",
        help="make an API key entry for a tenant",
        description="Generate a key (or hash one read from stdin with --stdin) and print "
        "the line for SCRIBE_INGEST_API_KEYS_FILE and the SCRIBE_INGEST_API_KEYS entry.",
    )
    hash_key.add_argument("--tenant", required=True, type=_tenant_id, help="the key's tenant")
    hash_key.add_argument("--stdin", action="store_true", help="hash the key given on stdin")
    args = parser.parse_args(argv)
    if args.command == "hash-key":
        hash_key_command(args.tenant, args.stdin)
        return
    shared = SharedSettings()
    settings = IngestSettings()
    configure_logging(SERVICE, shared.log_level, shared.log_format)
    uvicorn.run(
        create_app(shared, settings),
        host=settings.host,
        port=settings.port,
        log_config=None,  # our structlog set-up renders uvicorn's lines too
        access_log=False,
        proxy_headers=False,
    )


def _tenant_id(value: str) -> str:
    try:
        return check_entry("0" * 64, value, "--tenant")[1]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


if __name__ == "__main__":
    main()
