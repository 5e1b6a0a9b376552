"""The fault tests' toolkit: start the stack on the fault servers, submit jobs, count outcomes.

Counting is Jepsen-style: the jobs the system *accepted* (202, or published by the test)
are compared with what a downstream subscriber heard (`faults.outcomes`, bound to
`transcript.completed.v1` and `transcription.failed.v1`) and with the `jobs` table.
"""

from __future__ import annotations

import asyncio
import os
import re
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aio_pika
import asyncpg
import httpx

from contracts import routing
from scribe_runtime.topology import declare_topology
from tests.e2e.stack import BIN, Stack, as_user, free_port

OUTCOMES_QUEUE = "faults.outcomes"
TERMINAL = {"completed", "failed"}
AUTH = {"Authorization": "Bearer dev-insecure-key"}
"""Ingest's development key (tenant `default`), valid while no API keys are configured."""


@contextmanager
def fault_stack(
    amqp_url: str,
    database_url: str,
    workdir: Path,
    *,
    transcribers: int = 1,
    extra_env: dict[str, str] | None = None,
) -> Iterator[Stack]:
    """Migrate; start the indexer, `transcribers` workers (`transcriber-<n>`) and ingest."""
    media_root = workdir / "media"
    log_dir = workdir / "logs"
    media_root.mkdir(parents=True, exist_ok=True)
    log_dir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    names = [f"transcriber-{n}" for n in range(1, transcribers + 1)]
    health = {"indexer": free_port()} | {name: free_port() for name in names}
    env = {
        **os.environ,
        "SCRIBE_AMQP_URL": amqp_url,
        "SCRIBE_DATABASE_URL": database_url,
        "SCRIBE_MEDIA_ROOT": str(media_root),
        "SCRIBE_LOG_FORMAT": "json",
        "SCRIBE_LOG_LEVEL": "INFO",
        "SCRIBE_INGEST_PORT": str(port),
        "SCRIBE_INGEST_DATABASE_URL": as_user(database_url, "scribe_reader"),
        "SCRIBE_INGEST_PUBLISH_TIMEOUT_SECONDS": "5",
        "SCRIBE_INDEXER_HEALTH_PORT": str(health["indexer"]),
        # Two workers share two cores: one inference thread each.
        "SCRIBE_TRANSCRIBER_CPU_THREADS": "1" if transcribers > 1 else "2",
        "SCRIBE_TRANSCRIBER_GRACEFUL_SHUTDOWN_SECONDS": "5",
        "HF_HUB_OFFLINE": "1",
        **(extra_env or {}),
    }
    stack = Stack(
        api=f"http://127.0.0.1:{port}",
        amqp_url=amqp_url,
        database_url=database_url,
        media_root=media_root,
        log_dir=log_dir,
        env=env,
        health=health,
    )
    asyncio.run(Outcomes.declare(amqp_url))
    import subprocess

    migrate = subprocess.run(
        [str(BIN / "scribe-indexer"), "migrate"], env=env, capture_output=True, timeout=120
    )
    assert migrate.returncode == 0, migrate.stdout.decode() + migrate.stderr.decode()
    try:
        stack.start("indexer", [str(BIN / "scribe-indexer"), "run"])
        for name in names:
            start_transcriber(stack, name)
        stack.start("ingest", [str(BIN / "scribe-ingest")])
        stack.wait_ready(timeout=180)
        yield stack
    finally:
        stack.stop()


def start_transcriber(stack: Stack, name: str) -> None:
    stack.start(
        name,
        [str(BIN / "scribe-transcriber")],
        {
            "SCRIBE_TRANSCRIBER_HEALTH_PORT": str(stack.health[name]),
            "SCRIBE_TRANSCRIBER_WORKER_NAME": name,
        },
    )


def jobs_in_flight(stack: Stack, name: str) -> float:
    """The worker's `scribe_transcriber_jobs_in_flight` gauge (0 when it does not answer)."""
    try:
        text = httpx.get(f"http://127.0.0.1:{stack.health[name]}/metrics", timeout=2).text
    except httpx.HTTPError:
        return 0.0
    found = re.search(r"^scribe_transcriber_jobs_in_flight\S*\s+(\S+)$", text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def submit(stack: Stack, path: Path, timeout: float = 30.0) -> tuple[int, uuid.UUID | None]:
    """POST the file; (HTTP status, job id when accepted)."""
    try:
        with path.open("rb") as handle:
            response = httpx.post(
                f"{stack.api}/v1/transcriptions",
                files={"file": (path.name, handle, "application/octet-stream")},
                headers=AUTH,
                timeout=timeout,
            )
    except httpx.HTTPError:
        return 0, None
    if response.status_code == 202:
        return 202, uuid.UUID(response.json()["id"])
    return response.status_code, None


async def _jobs(database_url: str) -> dict[uuid.UUID, asyncpg.Record]:
    conn = await asyncpg.connect(database_url, timeout=10)
    try:
        rows = await conn.fetch("SELECT job_id, status, error_code, error_message FROM jobs")
    finally:
        await conn.close()
    return {r["job_id"]: r for r in rows}


def jobs(database_url: str) -> dict[uuid.UUID, asyncpg.Record]:
    """The `jobs` table, by job id (empty while PostgreSQL is away)."""
    try:
        return asyncio.run(_jobs(database_url))
    except (TimeoutError, OSError, asyncpg.PostgresError):
        return {}


def wait_terminal(
    database_url: str, accepted: set[uuid.UUID], timeout: float
) -> dict[uuid.UUID, asyncpg.Record]:
    """Until every accepted job is completed or failed in the table, or the timeout."""
    deadline = time.monotonic() + timeout
    rows: dict[uuid.UUID, asyncpg.Record] = {}
    while time.monotonic() < deadline:
        rows = jobs(database_url)
        if all(j in rows and rows[j]["status"] in TERMINAL for j in accepted):
            break
        time.sleep(1.0)
    return rows


class Outcomes:
    """A downstream subscriber's durable queue of terminal job events."""

    @staticmethod
    async def declare(amqp_url: str) -> None:
        await declare_topology(amqp_url)
        connection = await aio_pika.connect(amqp_url, timeout=10)
        async with connection:
            channel = await connection.channel()
            queue = await channel.declare_queue(
                OUTCOMES_QUEUE, durable=True, arguments={"x-queue-type": "quorum"}
            )
            for key in (routing.TRANSCRIPT_COMPLETED_V1, routing.TRANSCRIPTION_FAILED_V1):
                await queue.bind(routing.EXCHANGE, routing_key=key)

    @staticmethod
    async def _drain(amqp_url: str) -> list[tuple[uuid.UUID, str, str]]:
        heard: list[tuple[uuid.UUID, str, str]] = []
        connection = await aio_pika.connect(amqp_url, timeout=10)
        async with connection:
            channel = await connection.channel()
            queue = await channel.declare_queue(OUTCOMES_QUEUE, passive=True)
            while (message := await queue.get(no_ack=True, fail=False)) is not None:
                job = (message.headers or {}).get("x-scribe-job-id")
                heard.append((uuid.UUID(str(job)), str(message.type), str(message.message_id)))
        return heard

    @classmethod
    def drain(cls, amqp_url: str) -> list[tuple[uuid.UUID, str, str]]:
        """(job id, AMQP type, event id) of every terminal event heard since the last drain."""
        return asyncio.run(cls._drain(amqp_url))


@dataclass
class Tally:
    """Jepsen-style counts of one run."""

    accepted: int
    completed: int
    failed: int
    lost: list[uuid.UUID] = field(default_factory=list)
    duplicated: list[uuid.UUID] = field(default_factory=list)

    def line(self) -> str:
        return (
            f"jobs accepted={self.accepted} completed={self.completed} failed={self.failed} "
            f"lost={len(self.lost)} duplicated={len(self.duplicated)}"
        )


def tally(
    accepted: set[uuid.UUID],
    rows: dict[uuid.UUID, Any],
    heard: list[tuple[uuid.UUID, str, str]],
    *,
    silent: set[uuid.UUID] | frozenset[uuid.UUID] = frozenset(),
) -> Tally:
    """Count outcomes; `silent` jobs are expected in the table only (no downstream event).

    lost: accepted, yet not completed/failed in the table, or never heard downstream.
    duplicated: more than one distinct terminal event heard for the job (a consumer that
    deduplicates by event id would act twice).
    """
    events: dict[uuid.UUID, set[str]] = {}
    for job, _kind, event_id in heard:
        events.setdefault(job, set()).add(event_id)
    statuses = {j: rows[j]["status"] if j in rows else None for j in accepted}
    lost = sorted(
        j for j in accepted if statuses[j] not in TERMINAL or (j not in silent and j not in events)
    )
    return Tally(
        accepted=len(accepted),
        completed=sum(1 for s in statuses.values() if s == "completed"),
        failed=sum(1 for s in statuses.values() if s == "failed"),
        lost=lost,
        duplicated=sorted(j for j in accepted if len(events.get(j, ())) > 1),
    )


async def dead_letter_count(amqp_url: str, queue: str) -> int:
    connection = await aio_pika.connect(amqp_url, timeout=10)
    async with connection:
        channel = await connection.channel()
        declared = await channel.declare_queue(queue, passive=True)
        return int(declared.declaration_result.message_count or 0)
