"""The control plane alone: publish → transcriber (instant engine) → indexer, jobs/s and latency.

Starts the real stack (`scribe-indexer migrate` + `run`, `scribe-ingest`) with
`bench.instant` in place of `scribe-transcriber`: the production worker with a speech engine
that answers at once, so what is left is the broker, the events, the confirms, the acks and
the indexer's transactions. Then publishes `audio.uploaded.v1` (persistent, confirmed, the
way ingest and external producers do) at a fixed offered load, and as fast as the stack
takes them (saturation).

Latency of a job = the indexer's transaction that recorded its `transcript.completed`
(`processed_events.processed_at`, PostgreSQL's clock, this same host) minus the moment its
`audio.uploaded` publish began; for the last phase, the same load goes through the HTTP API
(a 1 s WAV uploaded with the development key) and latency starts at ingest's `202`.
`processed_at` is the transaction's start, so the commit (a millisecond or two) is not
included; polling the read API instead would put the poll interval and the polls' own CPU
into the figures.

CPU-ms per job: user + system CPU from /proc over the phase, divided by the jobs, for
ingest, transcriber, indexer, RabbitMQ (the whole `beam.smp` node), PostgreSQL (the
backends of the benchmark's database plus the WAL writer, checkpointer and background
writer) and, reported apart, the load generator itself. The broker node and PostgreSQL's
background processes are shared with anything else running on the machine.

    uv run python -m bench broker [--quick]
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import time
import uuid
import wave
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Final

import asyncpg
import httpx

from bench.common import (
    API_HEADERS,
    Result,
    cpu_seconds,
    median,
    percentile,
    pids_named,
    throwaway_database,
    throwaway_vhost,
)
from contracts.audio import AudioUploadedV1, TranscriptionOptions
from scribe_runtime.messaging import make_broker, publish_event
from tests.support.stack import Stack, running_stack

TENANT: Final = "default"
PG_BACKGROUND: Final = ("walwriter", "checkpointer", "background writer")


def _silence(path: Path) -> None:
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(16000)
        out.writeframes(b"\0\0" * 16000)


class CpuMeter:
    """CPU seconds per component between `start()` and `stop()`, from /proc."""

    def __init__(self, stack: Stack, monitor: asyncpg.Connection, database: str) -> None:
        self.stack = stack
        self.monitor = monitor
        self.database = database
        self._before: dict[tuple[str, int], float] = {}

    async def _pids(self) -> dict[tuple[str, int], float]:
        pids: list[tuple[str, int]] = [
            (name.split("-")[0], p.pid) for name, p in self.stack.processes.items()
        ]
        pids += [("rabbitmq", pid) for pid in pids_named("beam.smp")]
        rows = await self.monitor.fetch(
            "SELECT pid FROM pg_stat_activity "
            "WHERE (datname = $1 AND pid <> pg_backend_pid()) OR backend_type = ANY($2)",
            self.database,
            list(PG_BACKGROUND),
        )
        pids += [("postgres", r["pid"]) for r in rows]
        pids.append(("load generator", os.getpid()))
        return {key: cpu_seconds(key[1]) for key in pids}

    async def start(self) -> None:
        self._before = await self._pids()

    async def stop(self) -> dict[str, float]:
        after = await self._pids()
        spent: dict[str, float] = {}
        for key, seconds in after.items():
            spent[key[0]] = spent.get(key[0], 0.0) + seconds - self._before.get(key, 0.0)
        return spent


async def _wait_indexed(monitor: asyncpg.Connection, jobs: list[uuid.UUID], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        done = await monitor.fetchval(
            "SELECT count(*) FROM jobs WHERE status = 'completed' AND job_id = ANY($1)", jobs
        )
        if done >= len(jobs):
            return
        await asyncio.sleep(0.2)
    raise SystemExit(f"only {done} of {len(jobs)} jobs indexed after {seconds:.0f} s")


async def _phase(
    stack: Stack,
    monitor: asyncpg.Connection,
    database: str,
    submit: Callable[[AudioUploadedV1], Awaitable[tuple[uuid.UUID, float]]],
    audio_uri: str,
    jobs: int,
    rate: float | None,
    in_flight: int = 64,
) -> dict[str, Any]:
    """Offer `jobs` at `rate` per second (None: all at once, `in_flight` at a time).

    `submit` returns the job's id and the moment its latency starts: when its publish
    began (AMQP), or when ingest answered 202 (HTTP).
    """
    events = [
        AudioUploadedV1(
            job_id=uuid.uuid4(),
            tenant_id=TENANT,
            correlation_id=uuid.uuid4(),
            producer="bench",
            audio_uri=audio_uri,  # type: ignore[arg-type]
            size_bytes=32044,
            options=TranscriptionOptions(language="en"),
        )
        for _ in range(jobs)
    ]
    sent: dict[uuid.UUID, float] = {}
    meter = CpuMeter(stack, monitor, database)
    await meter.start()
    window = time.perf_counter()
    gate = asyncio.Semaphore(in_flight)

    async def one(event: AudioUploadedV1) -> None:
        async with gate:
            job_id, started = await submit(event)
            sent[job_id] = started

    tasks = []
    for i, event in enumerate(events):
        if rate is not None:
            delay = window + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(event)))
    await asyncio.gather(*tasks)
    ids = list(sent)
    await _wait_indexed(monitor, ids, seconds=120 + jobs / 10)
    elapsed = time.perf_counter() - window
    cpu = await meter.stop()
    rows = await monitor.fetch(
        "SELECT job_id, extract(epoch FROM processed_at)::float8 AS at FROM processed_events "
        "WHERE event_type LIKE 'transcript.completed%' AND job_id = ANY($1)",
        ids,
    )
    indexed = {r["job_id"]: r["at"] for r in rows}
    latencies = [(indexed[j] - sent[j]) * 1000 for j in ids]
    span = max(indexed.values()) - min(sent.values())
    service = {k: v for k, v in cpu.items() if k != "load generator"}
    return {
        "jobs": jobs,
        "offered_jobs_per_s": rate,
        "jobs_per_s": jobs / span,
        "p50_ms": median(latencies),
        "p99_ms": percentile(latencies, 99),
        "max_ms": max(latencies),
        "cpu_ms_per_job": 1000 * sum(service.values()) / jobs,
        "cpu_ms_per_job_by_process": {k: round(1000 * v / jobs, 2) for k, v in cpu.items()},
        "wall_s": elapsed,
        "latencies_ms": [round(x, 2) for x in latencies],
    }


async def _measure(
    stack: Stack, database_url: str, rates: list[float], seconds: float, saturation: int
) -> list[dict[str, Any]]:
    # Under the tenant's own directory: the only place its file:// URIs may point.
    media = stack.media_root / TENANT / "bench-silence.wav"
    media.parent.mkdir(parents=True, exist_ok=True)
    _silence(media)
    monitor = await asyncpg.connect(database_url)
    database = database_url.rsplit("/", 1)[1]
    broker = make_broker(stack.amqp_url, service="bench")
    try:
        async with broker:
            await broker.start()

            async def publish(event: AudioUploadedV1) -> tuple[uuid.UUID, float]:
                started = time.time()
                await publish_event(broker, event)
                return event.job_id, started

            wav = media.read_bytes()
            http = httpx.AsyncClient(base_url=stack.api, headers=API_HEADERS, timeout=60)

            async def upload(_event: AudioUploadedV1) -> tuple[uuid.UUID, float]:
                response = await http.post(
                    "/v1/transcriptions",
                    files={"file": ("silence.wav", wav, "application/octet-stream")},
                    data={"language": "en"},
                )
                if response.status_code != 202:
                    raise SystemExit(f"upload refused: {response.status_code} {response.text}")
                return uuid.UUID(response.json()["id"]), time.time()

            uri = media.resolve().as_uri()
            # Warm-up: connections, prepared statements, the first-use imports.
            await _phase(stack, monitor, database, publish, uri, 50, 50.0)
            await _phase(stack, monitor, database, upload, uri, 20, 20.0, in_flight=8)
            phases = []
            for rate in rates:
                phases.append(
                    await _phase(
                        stack, monitor, database, publish, uri, round(rate * seconds), rate
                    )
                )
            phases.append(await _phase(stack, monitor, database, publish, uri, saturation, None))
            # The same load through the HTTP API: latency from the 202 to indexed.
            http_phase = await _phase(
                stack, monitor, database, upload, uri, round(50.0 * seconds), 50.0, in_flight=8
            )
            http_phase["path"] = "http"
            phases.append(http_phase)
            await http.aclose()
            return phases
    finally:
        await monitor.close()


def run(quick: bool = False) -> Result:
    rates = [20.0, 50.0]
    seconds = 4.0 if quick else 10.0
    saturation = 200 if quick else 1000
    with (
        throwaway_vhost() as amqp_url,
        throwaway_database() as database_url,
        tempfile.TemporaryDirectory(prefix="scribe-bench-") as tmp,
        running_stack(
            amqp_url,
            database_url,
            Path(tmp),
            transcriber_argv=[sys.executable, "-m", "bench.instant"],
            env={"SCRIBE_LOG_LEVEL": "WARNING"},
        ) as stack,
    ):
        phases = asyncio.run(_measure(stack, database_url, rates, seconds, saturation))
    result = Result(
        name="broker",
        title="control plane with an instant engine: publish (or HTTP 202) → indexed",
        columns=["offered", "jobs", "jobs/s", "p50 ms", "p99 ms", "CPU-ms/job", "of which"],
        settings={
            "offered_rates": rates,
            "seconds_per_rate": seconds,
            "saturation_jobs": saturation,
            "transcribers": 1,
            "engine": "bench.instant.InstantEngine",
        },
    )
    for phase in phases:
        label = "saturation" if phase["offered_jobs_per_s"] is None else (
            f"{phase['offered_jobs_per_s']:.0f}/s"
        )  # fmt: skip
        if phase.get("path") == "http":
            label = f"HTTP {label}"
        by = phase["cpu_ms_per_job_by_process"]
        result.rows.append(
            [
                label,
                phase["jobs"],
                round(phase["jobs_per_s"], 1),
                round(phase["p50_ms"], 1),
                round(phase["p99_ms"], 1),
                round(phase["cpu_ms_per_job"], 1),
                " ".join(f"{k}={v}" for k, v in sorted(by.items())),
            ]
        )
    result.figures = {"phases": phases}
    result.notes = [
        "targets (DESIGN.md): <= 10 CPU-ms/job, >= 200 jobs/s, p99 < 25 ms at 50 jobs/s",
        "CPU-ms/job excludes the load generator; rabbitmq and postgres background "
        "processes are shared with anything else running",
    ]
    return result
