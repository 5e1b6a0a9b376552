"""Composition root of `scribe-indexer`: `run` (default) consumes events; `migrate` exits.

The process shell (health endpoint, signals, start/stop, lifecycle log lines) is
`scribe_runtime.worker.Worker`; this module wires the PostgreSQL adapters to it.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
from collections.abc import Sequence

import asyncpg
import structlog
from faststream.rabbit import RabbitBroker

from contracts.routing import EVENT_CLASSES
from indexer.dead_letters import PUBLISHES, DeadLetterWatcher
from indexer.handlers import JobEventIndexer, RetryPolicy
from indexer.migrate import prepare_database
from indexer.settings import IndexerSettings
from indexer.store import PostgresProjectionStore, PostgresTenants
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
    TRANSCRIBER_QUEUE,
    declare_topology,
)
from scribe_runtime.worker import Worker, producer_name

SERVICE = "scribe-indexer"
log = structlog.get_logger(__name__)


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
) -> RabbitBroker:
    """The broker with the indexer's subscriber wired to the PostgreSQL adapters."""
    broker = make_broker(amqp_url, service=SERVICE, prefetch=settings.prefetch)

    async def dead_letter_here(delivery: Delivery, *, code: str, reason: str) -> None:
        await dead_letter(broker, delivery, queue=INDEXER_QUEUE.name, code=code, reason=reason)

    indexer = JobEventIndexer(
        PostgresProjectionStore(pool),
        tenants,
        dead_letter_here,
        RetryPolicy(attempts=settings.retry_attempts),
    )
    subscribe_events(broker, INDEXER_QUEUE, EVENT_CLASSES, indexer.on_job_event)
    watcher = DeadLetterWatcher(EventPublisher(broker, PUBLISHES).publish, producer_name(SERVICE))
    subscribe_deliveries(
        broker,
        DEAD_LETTER_WATCH_QUEUE,
        watcher.on_dead_letter,
        description=f"Quorum queue `{DEAD_LETTER_WATCH_QUEUE.name}`, bound to `scribe.dlx` by "
        f"`{TRANSCRIBER_QUEUE.name}`: a copy of each upload dead-lettered there, published "
        "again as `transcription.failed.v1` with code `dead_lettered`.",
    )
    return broker


async def run(
    shared: SharedSettings, settings: IndexerSettings, stop: asyncio.Event | None = None
) -> None:
    """Prepare the database, then consume job events until SIGINT/SIGTERM (or `stop`)."""
    await migrate(shared, settings)
    pool = await asyncpg.create_pool(
        shared.database_url, min_size=1, max_size=settings.pool_size, timeout=10
    )
    try:
        tenants = PostgresTenants(pool)
        await tenants.refresh()
        await declare_topology(shared.amqp_url)

        async def database_answers() -> bool:
            return bool(await pool.fetchval("SELECT true", timeout=2.0))

        await Worker(
            SERVICE,
            build_broker(shared.amqp_url, pool, tenants, settings),
            health_host=settings.health_host,
            health_port=settings.health_port,
            checks={"database": database_answers},
        ).run(stop, ready={"queue": INDEXER_QUEUE.name, "prefetch": settings.prefetch})
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
        choices=("run", "migrate"),
        default="run",
        help="run: migrate, then consume events (default); migrate: migrate and exit",
    )
    args = parser.parse_args(argv)
    shared = SharedSettings()
    settings = IndexerSettings()
    configure_logging(SERVICE, shared.log_level, shared.log_format)
    command = functools.partial(migrate if args.command == "migrate" else run, shared, settings)
    aio.run(command())


if __name__ == "__main__":
    main()
