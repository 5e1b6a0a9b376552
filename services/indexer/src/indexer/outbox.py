"""The transactional outbox: what the indexer decides, it publishes from durable state.

Only the indexer writes PostgreSQL, and some events are its decisions: the assembled
`transcript.completed.v1` of a long job, and that job's progress with an ETA. Each is
inserted into `event_outbox` by `enqueue`, in the transaction that made the decision, so
the decision and the duty to announce it commit together or not at all. `OutboxRelay`
publishes unsent rows in `id` order, each confirmed by the broker, then marks them sent
(and drops their payload).

- **Waking**: `enqueue` calls `pg_notify('scribe_event_outbox')`, which PostgreSQL delivers
  when the transaction commits; the relay LISTENs on its own connection, so a completion
  goes out within milliseconds of its commit with no busy polling. It also polls every
  `POLL_SECONDS`, for rows that no notification announces: those left unsent by a crash
  or a restart, and any committed while its listening connection was being re-opened.
- **One relay at a time**: a drain holds a transaction-scoped advisory lock, so replicas
  take turns (a replica that wakes while another drains waits, then finds what is left).
  Rows of one job are inserted under that job's lock, so their `id` order is their commit
  order and a job's events go out in the order they were decided (its progress is
  monotonic, and never follows its completion).
- **At least once**: a crash after the broker confirmed a row but before its mark
  committed publishes it again on restart with the same event id. Every consumer
  deduplicates by `message_id` (the indexer by its tracking records, where the decision
  already recorded the event: its own copy coming back is a no-op).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Final

import asyncpg
import structlog
from asyncpg.pool import PoolConnectionProxy

from contracts.envelope import Event
from contracts.routing import decode_event

log = structlog.get_logger(__name__)

CHANNEL: Final = "scribe_event_outbox"
"""The NOTIFY channel a commit with new outbox rows signals."""
POLL_SECONDS: Final = 2.0
"""How often the relay looks without being notified (rows of a crash, a lost listener)."""
_RELAY_LOCK: Final = 0x5C0BE_0009
"""Transaction advisory-lock key: one drain at a time across indexer replicas."""
_BATCH: Final = 100

Publish = Callable[[Event], Awaitable[None]]


async def enqueue(conn: PoolConnectionProxy[asyncpg.Record], event: Event) -> bool:
    """Add `event` to the outbox in the caller's transaction; False if it was there already."""
    added: bool | None = await conn.fetchval(
        "INSERT INTO event_outbox (event_id, tenant_id, job_id, event_type, payload) "
        "VALUES ($1, $2, $3, $4, $5) ON CONFLICT (event_id) DO NOTHING RETURNING true",
        event.event_id,
        event.tenant_id,
        event.job_id,
        event.message_type,
        event.model_dump_json(),
    )
    if added:
        await conn.execute("SELECT pg_notify($1, '')", CHANNEL)
    return bool(added)


class OutboxRelay:
    """Publishes the outbox's unsent rows, oldest first, and marks each sent once confirmed."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        publish: Publish,
        *,
        listen_dsn: str | None = None,
        poll_seconds: float = POLL_SECONDS,
    ) -> None:
        self._pool = pool
        self._publish = publish
        self._listen_dsn = listen_dsn
        self._poll_seconds = poll_seconds
        self._wake = asyncio.Event()
        self._listener: asyncpg.Connection | None = None

    async def drain(self) -> int:
        """Publish every unsent row; how many this call published."""
        sent = 0
        while True:
            published, failure = await self._drain_batch()
            sent += published
            if failure is not None:
                raise failure
            if published == 0:
                return sent

    async def _drain_batch(self) -> tuple[int, Exception | None]:
        done: list[int] = []
        failure: Exception | None = None
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _RELAY_LOCK)
            rows = await conn.fetch(
                "SELECT id, event_type, payload FROM event_outbox WHERE sent_at IS NULL "
                "ORDER BY id LIMIT $1",
                _BATCH,
            )
            for row in rows:
                try:
                    event = decode_event(row["payload"].encode(), row["event_type"])
                    await self._publish(event)
                except Exception as exc:
                    # What was confirmed is marked (committed below); the rest waits.
                    failure = exc
                    break
                done.append(row["id"])
            if done:
                await conn.execute(
                    "UPDATE event_outbox SET sent_at = now(), payload = NULL "
                    "WHERE id = ANY($1::bigint[])",
                    done,
                )
        if done:
            log.info("outbox_events_published", events=len(done))
        return len(done), failure

    async def run(self, stop: asyncio.Event) -> None:
        """Drain on every notification and every `poll_seconds`, until `stop`."""
        try:
            while not stop.is_set():
                self._wake.clear()
                try:
                    await self._listen()
                    await self.drain()
                except Exception as exc:
                    # The database or the broker is away: the rows wait, nothing is lost.
                    log.warning("outbox_relay_failed", error=repr(exc))
                    await self._unlisten()
                await _first_of(self._wake, stop, within=self._poll_seconds)
        finally:
            await self._unlisten()

    async def _listen(self) -> None:
        if self._listen_dsn is None or self._listener is not None:
            return
        conn = await asyncpg.connect(self._listen_dsn, timeout=10)
        await conn.add_listener(CHANNEL, self._notified)
        conn.add_termination_listener(self._lost)
        self._listener = conn

    def _notified(self, *_: object) -> None:
        self._wake.set()

    def _lost(self, *_: object) -> None:
        self._listener = None
        self._wake.set()  # look now, and listen again

    async def _unlisten(self) -> None:
        conn, self._listener = self._listener, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.close(timeout=2)


async def _first_of(*events: asyncio.Event, within: float) -> None:
    waiters = [asyncio.ensure_future(e.wait()) for e in events]
    try:
        await asyncio.wait(waiters, timeout=within, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
