"""The fault tests' toolkit: start the stack on the fault servers, submit jobs, count outcomes.

Counting is Jepsen-style: the jobs the system *accepted* (202, or published by the test)
are compared with what a downstream subscriber heard (`faults.outcomes`, bound to
`transcript.completed.v1` and `transcription.failed.v1`) and with the `jobs` table.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from contracts import routing
from scribe_runtime import failover
from scribe_runtime.topology import declare_topology, replicated
from tests.support import probes
from tests.support.stack import Stack, running_stack
from tests.support.waiting import eventually

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
    transcriber_argv: list[str] | None = None,
    env: dict[str, str] | None = None,
    initial_group_size: int | None = None,
) -> Iterator[Stack]:
    """The stack with the downstream queue declared, `transcribers` workers `transcriber-<n>`.

    `amqp_url` may list a cluster's nodes; `initial_group_size` replicates every quorum
    queue (the stack's, through its setting, and the downstream one) on that many nodes.
    """
    asyncio.run(Outcomes.declare(amqp_url, initial_group_size))
    if initial_group_size is not None:
        env = {"SCRIBE_AMQP_QUORUM_INITIAL_GROUP_SIZE": str(initial_group_size)} | (env or {})
    with running_stack(
        amqp_url,
        database_url,
        workdir,
        transcribers=[f"transcriber-{n}" for n in range(1, transcribers + 1)],
        transcriber_argv=transcriber_argv,
        env={
            "SCRIBE_INGEST_PUBLISH_TIMEOUT_SECONDS": "5",
            # Two workers share two cores: one inference thread each.
            "SCRIBE_TRANSCRIBER_CPU_THREADS": "1" if transcribers > 1 else "2",
            "SCRIBE_TRANSCRIBER_GRACEFUL_SHUTDOWN_SECONDS": "5",
        }
        | (env or {}),
        ready_timeout=180,
    ) as stack:
        yield stack


def jobs_in_flight(stack: Stack, name: str) -> float:
    """The worker's `scribe_transcriber_jobs_in_flight` gauge (0 when it does not answer)."""
    try:
        text = probes.get(f"http://127.0.0.1:{stack.health[name]}/metrics", timeout=2).text
    except httpx.HTTPError:
        return 0.0
    found = re.search(r"^scribe_transcriber_jobs_in_flight\S*\s+(\S+)$", text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def submit(stack: Stack, path: Path, timeout: float = 30.0) -> tuple[int, uuid.UUID | None]:
    """POST the file; (HTTP status, job id when accepted)."""
    try:
        with path.open("rb") as handle:
            response = probes.post(
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
    """The `jobs` table once every accepted job is completed or failed, or at the timeout.

    No failure of its own at the timeout: the tally then names the jobs that were lost.
    """
    latest: dict[uuid.UUID, asyncpg.Record] = {}

    def all_terminal() -> bool:
        nonlocal latest
        latest = jobs(database_url)
        return all(j in latest and latest[j]["status"] in TERMINAL for j in accepted)

    with contextlib.suppress(AssertionError):
        eventually(all_terminal, within=timeout, interval=1.0, what="every accepted job ended")
    return latest


class Outcomes:
    """A downstream subscriber's durable queue of terminal job events."""

    @staticmethod
    async def declare(amqp_url: str, initial_group_size: int | None = None) -> None:
        await declare_topology(amqp_url, initial_group_size=initial_group_size)
        connection = await failover.connect(amqp_url)
        async with connection:
            channel = await connection.channel()
            queue = await channel.declare_queue(
                OUTCOMES_QUEUE,
                durable=True,
                arguments=replicated({"x-queue-type": "quorum"}, initial_group_size),
            )
            for key in (routing.TRANSCRIPT_COMPLETED_V1, routing.TRANSCRIPTION_FAILED_V1):
                await queue.bind(routing.EXCHANGE, routing_key=key)

    @staticmethod
    async def _drain(amqp_url: str) -> list[tuple[uuid.UUID, str, str]]:
        heard: list[tuple[uuid.UUID, str, str]] = []
        connection = await failover.connect(amqp_url)
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
    connection = await failover.connect(amqp_url)
    async with connection:
        channel = await connection.channel()
        declared = await channel.declare_queue(queue, passive=True)
        return int(declared.declaration_result.message_count or 0)
