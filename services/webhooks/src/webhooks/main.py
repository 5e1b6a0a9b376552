"""Composition root of `scribe-webhooks`: fan job events out, deliver them, report attempts.

A consumer of the event bus like any downstream service: its own queues, its own
process, so a slow or dead endpoint never slows the pipeline. The shell (health,
signals, graceful stop) is `scribe_runtime.worker.Worker`.
"""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Sequence
from typing import Final

import asyncpg
import httpx
from faststream.rabbit import RabbitBroker

from contracts.envelope import Event
from contracts.transcription import (
    TranscriptCompletedV1,
    TranscriptionFailedV1,
    TranscriptionProgressV1,
)
from contracts.webhooks import WebhookDeliveryAttemptedV1, WebhookDeliveryRequestedV1
from scribe_runtime import aio
from scribe_runtime.consumer import subscribe_events
from scribe_runtime.logging import configure_logging
from scribe_runtime.messaging import make_broker
from scribe_runtime.publishing import EventPublisher
from scribe_runtime.settings import SharedSettings
from scribe_runtime.topology import WEBHOOK_DELIVERY_QUEUE, WEBHOOK_FANOUT_QUEUE, declare_topology
from scribe_runtime.worker import Worker, producer_name
from webhooks.dispatcher import Dispatcher
from webhooks.endpoints import CachedEndpoints, EndpointDirectory, PostgresEndpoints
from webhooks.settings import WebhooksSettings

SERVICE: Final = "scribe-webhooks"
PUBLISHES: Final[tuple[type[Event], ...]] = (WebhookDeliveryRequestedV1, WebhookDeliveryAttemptedV1)
CONSUMES: Final[tuple[type[Event], ...]] = (
    TranscriptionProgressV1,
    TranscriptCompletedV1,
    TranscriptionFailedV1,
)


def build_broker(
    amqp_url: str,
    endpoints: EndpointDirectory,
    http: httpx.AsyncClient,
    shared: SharedSettings,
    settings: WebhooksSettings,
) -> RabbitBroker:
    """The broker with both subscribers and the publisher wired to the dispatcher."""
    broker = make_broker(amqp_url, service=SERVICE, prefetch=settings.prefetch)
    publisher = EventPublisher(broker, PUBLISHES)
    dispatcher = Dispatcher(
        endpoints,
        publisher.publish,
        http,
        producer=producer_name(SERVICE),
        retry_delays=WEBHOOK_DELIVERY_QUEUE.retry_delays,
        allowed_hosts=shared.webhooks_allowed_hosts,
        timeout_seconds=settings.request_timeout_seconds,
        max_in_flight_per_tenant=settings.max_attempts_in_flight_per_tenant,
    )
    subscribe_events(broker, WEBHOOK_FANOUT_QUEUE, CONSUMES, dispatcher.on_job_event)
    subscribe_events(
        broker,
        WEBHOOK_DELIVERY_QUEUE,
        (WebhookDeliveryRequestedV1,),
        dispatcher.on_delivery_requested,
    )
    return broker


def http_client(settings: WebhooksSettings) -> httpx.AsyncClient:
    """No redirects (a 3xx could point past the SSRF guard), no proxies from the env."""
    return httpx.AsyncClient(
        timeout=settings.request_timeout_seconds, follow_redirects=False, trust_env=False
    )


async def keep_session(conn: asyncpg.Connection) -> None:
    """The pool's reset on release: none beyond asyncpg's rollback of an open transaction.

    asyncpg's default (`RESET ALL; UNLISTEN *; pg_advisory_unlock_all(); CLOSE ALL`) is a
    round trip per job event; the dispatcher leaves nothing in the session: its one
    setting, the tenant, is set with `set_config(..., true)` and ends with its transaction.
    """


async def run(shared: SharedSettings, settings: WebhooksSettings) -> None:
    """Consume until SIGINT/SIGTERM."""
    await declare_topology(
        shared.amqp_url, initial_group_size=shared.amqp_quorum_initial_group_size
    )
    pool = await asyncpg.create_pool(
        settings.database_url,
        min_size=0,
        max_size=settings.pool_size,
        timeout=10,
        reset=keep_session,
    )
    endpoints: EndpointDirectory = PostgresEndpoints(pool)
    try:
        async with contextlib.AsyncExitStack() as stack:
            http = await stack.enter_async_context(http_client(settings))
            if settings.endpoint_cache_tenants:
                endpoints = await stack.enter_async_context(
                    CachedEndpoints(
                        pool, settings.database_url, max_tenants=settings.endpoint_cache_tenants
                    )
                )

            async def database_answers() -> bool:
                return bool(await pool.fetchval("SELECT true", timeout=2.0))

            await Worker(
                SERVICE,
                build_broker(shared.amqp_url, endpoints, http, shared, settings),
                health_host=settings.health_host,
                health_port=settings.health_port,
                checks={"database": database_answers},
            ).run(
                ready={
                    "queues": [WEBHOOK_FANOUT_QUEUE.name, WEBHOOK_DELIVERY_QUEUE.name],
                    "allowed_hosts": sorted(shared.webhooks_allowed_hosts),
                }
            )
    finally:
        await pool.close()


def main(argv: Sequence[str] | None = None) -> None:
    """`scribe-webhooks [run]`."""
    parser = argparse.ArgumentParser(
        prog="scribe-webhooks",
        description="Deliver Scribe's job events to registered HTTP endpoints, signed.",
    )
    parser.add_argument("command", nargs="?", choices=("run",), default="run")
    parser.parse_args(argv)
    shared = SharedSettings()
    settings = WebhooksSettings()
    configure_logging(SERVICE, shared.log_level, shared.log_format)
    aio.run(run(shared, settings))


if __name__ == "__main__":
    main()
