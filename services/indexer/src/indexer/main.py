"""Composition root of `scribe-indexer`: `run` (default) consumes events; `migrate` exits.

The process shell (health endpoint, signals, start/stop, lifecycle log lines) is
`scribe_runtime.worker.Worker`; this module wires the PostgreSQL adapters to it.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import structlog
from faststream.rabbit import RabbitBroker

from contracts.chunks import TranscriptionChunkedV1, TranscriptionChunkTranscribedV1
from contracts.envelope import Event
from contracts.lifecycle import TranscriptionDeleteRequestedV1
from contracts.routing import EVENT_CLASSES
from contracts.transcription import TranscriptCompletedV1, TranscriptionProgressV1
from contracts.webhooks import WEBHOOK_EVENT_CLASSES
from indexer.dead_letters import PUBLISHES, DeadLetterWatcher
from indexer.handlers import PUBLISHES as ANNOUNCES
from indexer.handlers import JobEventIndexer, RetryPolicy
from indexer.media import LocalMediaEraser, StoreMediaEraser
from indexer.migrate import prepare_database
from indexer.outbox import OutboxRelay
from indexer.retention import Publish, RetentionSweep
from indexer.settings import IndexerSettings
from indexer.store import PostgresProjectionStore, PostgresTenants
from indexer.webhooks import PostgresWebhookStore
from scribe_runtime import aio
from scribe_runtime.amqp import Delivery
from scribe_runtime.consumer import subscribe_deliveries, subscribe_events
from scribe_runtime.logging import configure_logging
from scribe_runtime.messaging import dead_letter, make_broker
from scribe_runtime.publishing import EventPublisher
from scribe_runtime.settings import SharedSettings
from scribe_runtime.topology import (
    DEAD_LETTER_WATCH_QUEUE,
    INDEXER_QUEUE,
    INDEXER_WEBHOOK_QUEUE,
    TRANSCRIBER_QUEUE,
    declare_topology,
)
from scribe_runtime.worker import Worker, producer_name

SERVICE = "scribe-indexer"
log = structlog.get_logger(__name__)

CONSUMES: tuple[type[Event], ...] = (
    *EVENT_CLASSES,
    TranscriptionChunkedV1,
    TranscriptionChunkTranscribedV1,
)
"""The job events, and a long job's plan and chunk results."""
DECIDES: tuple[type[Event], ...] = (TranscriptCompletedV1, TranscriptionProgressV1)
"""What the indexer publishes from its outbox: a long job's completion and progress."""


@dataclass(frozen=True, slots=True)
class Wired:
    """The indexer's broker, the publisher of its announcements, and its outbox relay."""

    broker: RabbitBroker
    publish: Publish
    relay: OutboxRelay


async def migrate(shared: SharedSettings, settings: IndexerSettings) -> None:
    """Create the database if missing, apply migrations, ensure the reader role and tenants."""
    applied = await prepare_database(
        shared.database_url,
        reader_role=settings.reader_role,
        reader_password=(
            settings.reader_password.get_secret_value() if settings.reader_password else None
        ),
        tenants=settings.seeded_tenants(shared),
    )
    log.info(
        "database_ready",
        migrations_applied=[f"{m.version:04d}_{m.name}" for m in applied],
        tenants=list(settings.seeded_tenants(shared)),
        reader_role=settings.reader_role,
    )


def build_broker(
    amqp_url: str,
    pool: asyncpg.Pool,
    tenants: PostgresTenants,
    settings: IndexerSettings,
    *,
    media_root: Path | None = None,
) -> RabbitBroker:
    """The broker with the indexer's subscribers wired to the PostgreSQL adapters."""
    return wire(amqp_url, pool, tenants, settings, media_root=media_root).broker


def build_indexer(
    amqp_url: str,
    pool: asyncpg.Pool,
    tenants: PostgresTenants,
    settings: IndexerSettings,
    *,
    media_root: Path | None = None,
) -> tuple[RabbitBroker, Publish]:
    """`build_broker`, and the publisher of the indexer's own events (for retention)."""
    wired = wire(amqp_url, pool, tenants, settings, media_root=media_root)
    return wired.broker, wired.publish


def wire(
    amqp_url: str,
    pool: asyncpg.Pool,
    tenants: PostgresTenants,
    settings: IndexerSettings,
    *,
    media_root: Path | None = None,
    listen_dsn: str | None = None,
) -> Wired:
    """Everything of the indexer on one broker; the relay is run by the caller (`run`).

    `media_root` is where deleted jobs' media is erased (default: the shared setting's);
    `listen_dsn` the database the relay LISTENs on for new outbox rows (None: it polls).
    """
    broker = make_broker(amqp_url, service=SERVICE, prefetch=settings.prefetch)
    producer = producer_name(SERVICE)
    shared = SharedSettings()
    events = EventPublisher(broker, (*ANNOUNCES, TranscriptionDeleteRequestedV1))

    async def dead_letter_here(delivery: Delivery, *, code: str, reason: str) -> None:
        await dead_letter(broker, delivery, queue=INDEXER_QUEUE.name, code=code, reason=reason)

    indexer = JobEventIndexer(
        PostgresProjectionStore(
            pool, producer=producer, linger_seconds=settings.window_linger_ms / 1000
        ),
        tenants,
        dead_letter_here,
        RetryPolicy(attempts=settings.retry_attempts),
        publish=events.publish,
        media=StoreMediaEraser(
            LocalMediaEraser(media_root or shared.media_root), shared.media().s3
        ),
    )
    subscribe_events(broker, INDEXER_QUEUE, CONSUMES, indexer.on_job_event)
    relay = OutboxRelay(pool, EventPublisher(broker, DECIDES).publish, listen_dsn=listen_dsn)

    async def dead_letter_webhook(delivery: Delivery, *, code: str, reason: str) -> None:
        await dead_letter(
            broker, delivery, queue=INDEXER_WEBHOOK_QUEUE.name, code=code, reason=reason
        )

    webhooks = JobEventIndexer(
        PostgresWebhookStore(pool),
        tenants,
        dead_letter_webhook,
        RetryPolicy(attempts=settings.retry_attempts),
    )
    subscribe_events(broker, INDEXER_WEBHOOK_QUEUE, WEBHOOK_EVENT_CLASSES, webhooks.on_job_event)
    watcher = DeadLetterWatcher(EventPublisher(broker, PUBLISHES).publish, producer)
    subscribe_deliveries(
        broker,
        DEAD_LETTER_WATCH_QUEUE,
        watcher.on_dead_letter,
        description=f"Quorum queue `{DEAD_LETTER_WATCH_QUEUE.name}`, bound to `scribe.dlx` by "
        f"`{TRANSCRIBER_QUEUE.name}` and every pool's queues (`transcriber.pool.<model>.*`): "
        "a copy of each "
        "upload or chunk work item dead-lettered there, published again as "
        "`transcription.failed.v1` with code `dead_lettered`.",
    )
    return Wired(broker, events.publish, relay)


async def keep_session(conn: asyncpg.Connection) -> None:
    """The pool's reset on release: none beyond asyncpg's rollback of an open transaction.

    asyncpg's default sends `RESET ALL; UNLISTEN *; pg_advisory_unlock_all(); CLOSE ALL`
    on every release: a round trip per event. The indexer keeps no session state: its
    projections take transaction-scoped locks only, and the retention sweep unlocks its one
    session lock itself (`RetentionSweep.sweep`).
    """


async def run(
    shared: SharedSettings, settings: IndexerSettings, stop: asyncio.Event | None = None
) -> None:
    """Prepare the database, then consume job events until SIGINT/SIGTERM (or `stop`)."""
    await migrate(shared, settings)
    pool = await asyncpg.create_pool(
        shared.database_url,
        min_size=1,
        max_size=settings.pool_size,
        timeout=10,
        reset=keep_session,
    )
    try:
        tenants = PostgresTenants(pool)
        await tenants.refresh()
        await declare_topology(
            shared.amqp_url, initial_group_size=shared.amqp_quorum_initial_group_size
        )

        async def database_answers() -> bool:
            return bool(await pool.fetchval("SELECT true", timeout=2.0))

        wired = wire(
            shared.amqp_url,
            pool,
            tenants,
            settings,
            media_root=shared.media_root,
            listen_dsn=shared.database_url,
        )
        broker = wired.broker
        sweep = RetentionSweep(
            pool, settings.retain_days, publish=wired.publish, producer=producer_name(SERVICE)
        )
        sweeping = asyncio.Event()
        background: list[asyncio.Task[None]] = []

        async def start_background() -> None:
            # The relay first publishes what a previous run left unsent.
            background.append(asyncio.create_task(wired.relay.run(sweeping)))
            if settings.retain_days:
                background.append(
                    asyncio.create_task(sweep.run(settings.retention_interval_seconds, sweeping))
                )

        try:
            await Worker(
                SERVICE,
                broker,
                health_host=settings.health_host,
                health_port=settings.health_port,
                checks={"database": database_answers},
            ).run(
                stop,
                ready={
                    "queue": INDEXER_QUEUE.name,
                    "prefetch": settings.prefetch,
                    "retain_days": settings.retain_days,
                },
                started=start_background,
            )
        finally:
            sweeping.set()
            for task in background:
                await task
    finally:
        await pool.close()


async def retention(settings: IndexerSettings, shared: SharedSettings, *, dry_run: bool) -> None:
    """List the jobs past their tenant's retention (`--dry-run`), or request their deletion."""
    pool = await asyncpg.create_pool(shared.database_url, min_size=1, max_size=2, timeout=10)
    try:
        sweep = RetentionSweep(pool, settings.retain_days, producer=producer_name(SERVICE))
        if dry_run:
            for job in await sweep.due():
                print(
                    f"{job.tenant_id}\t{job.job_id}\t{job.status}\t"
                    f"{job.finished_at.isoformat(timespec='seconds')}"
                )
            return
        await declare_topology(
            shared.amqp_url, initial_group_size=shared.amqp_quorum_initial_group_size
        )
        broker, publish = build_indexer(
            shared.amqp_url, pool, PostgresTenants(pool), settings, media_root=shared.media_root
        )
        async with broker:
            await broker.connect()
            swept = await RetentionSweep(
                pool, settings.retain_days, publish=publish, producer=producer_name(SERVICE)
            ).sweep()
        print(f"requested the deletion of {swept} jobs")
    finally:
        await pool.close()


def main(argv: Sequence[str] | None = None) -> None:
    """`scribe-indexer [run|migrate]`."""
    parser = argparse.ArgumentParser(
        prog="scribe-indexer",
        description="Project Scribe's job events into PostgreSQL (the only writer).",
    )
    parser.add_argument(
        "command",
        nargs="?",
        choices=("run", "migrate", "retention"),
        default="run",
        help="run: migrate, then consume events (default); migrate: migrate and exit; "
        "retention: request the deletion of every job past its tenant's retain_days",
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="with retention: list (tenant, job, status, finished at) what would go; delete none",
    )
    args = parser.parse_args(argv)
    shared = SharedSettings()
    settings = IndexerSettings()
    configure_logging(SERVICE, shared.log_level, shared.log_format)
    if args.command == "retention":
        aio.run(retention(settings, shared, dry_run=args.dry_run))
        return
    command = functools.partial(migrate if args.command == "migrate" else run, shared, settings)
    aio.run(command())


if __name__ == "__main__":
    main()
