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
import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
import wave
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import asyncpg
import httpx
import psutil
from faststream.rabbit import RabbitBroker

from bench import celery_peer
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
from tests.support.ports import free_port
from tests.support.stack import Stack, running_stack

TENANT: Final = "default"
PG_BACKGROUND: Final = ("walwriter", "checkpointer", "background writer")


def _silence(path: Path) -> None:
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(16000)
        out.writeframes(b"\0\0" * 16000)


PidList = list[tuple[str, int]]


class CpuMeter:
    """CPU seconds per component between `start()` and `stop()`, from /proc.

    `pids` names every process of one side (asked again at `stop()`: a prefork child may
    have been replaced); the same meter measures Scribe and the Celery peer.
    """

    def __init__(self, pids: Callable[[], Awaitable[PidList]]) -> None:
        self._pids = pids
        self._before: dict[tuple[str, int], float] = {}

    async def _sample(self) -> dict[tuple[str, int], float]:
        pids = await self._pids()
        pids.append(("load generator", os.getpid()))
        return {key: cpu_seconds(key[1]) for key in pids}

    async def start(self) -> None:
        self._before = await self._sample()

    async def stop(self) -> dict[str, float]:
        after = await self._sample()
        spent: dict[str, float] = {}
        for key, seconds in after.items():
            spent[key[0]] = spent.get(key[0], 0.0) + seconds - self._before.get(key, 0.0)
        return spent


async def postgres_pids(monitor: asyncpg.Connection, database: str) -> PidList:
    """The backends of `database` (but the monitor's own) and PostgreSQL's writers."""
    rows = await monitor.fetch(
        "SELECT pid FROM pg_stat_activity "
        "WHERE (datname = $1 AND pid <> pg_backend_pid()) OR backend_type = ANY($2)",
        database,
        list(PG_BACKGROUND),
    )
    return [("postgres", r["pid"]) for r in rows]


@dataclass
class Side:
    """One system under test: how to offer it a job and how to see it indexed."""

    name: str
    pids: Callable[[], Awaitable[PidList]]
    submit: Callable[[uuid.UUID], Awaitable[tuple[uuid.UUID, float]]]
    """Offer one job; its id and the moment its latency starts."""
    indexed: Callable[[list[uuid.UUID]], Awaitable[dict[uuid.UUID, float]]]
    """Of these jobs, those indexed, and when (epoch seconds, PostgreSQL's clock)."""


def scribe_side(
    stack: Stack, monitor: asyncpg.Connection, database: str, broker: RabbitBroker, uri: str
) -> Side:
    """Scribe under test: jobs published as `audio.uploaded.v1`, indexed when the indexer
    recorded their `transcript.completed`; CPU of every stack process, RabbitMQ's and the
    database's backends."""

    async def pids() -> PidList:
        found = [(name.split("-")[0], p.pid) for name, p in stack.processes.items()]
        found += [("rabbitmq", pid) for pid in pids_named("beam.smp")]
        return found + await postgres_pids(monitor, database)

    async def publish(job_id: uuid.UUID) -> tuple[uuid.UUID, float]:
        event = _upload_event(job_id, uri)
        started = time.time()
        await publish_event(broker, event)
        return job_id, started

    async def indexed(jobs: list[uuid.UUID]) -> dict[uuid.UUID, float]:
        rows = await monitor.fetch(
            "SELECT job_id, extract(epoch FROM processed_at)::float8 AS at "
            "FROM processed_events "
            "WHERE event_type LIKE 'transcript.completed%' AND job_id = ANY($1)",
            jobs,
        )
        return {r["job_id"]: r["at"] for r in rows}

    return Side("scribe", pids, publish, indexed)


async def _wait_indexed(
    side: Side, jobs: list[uuid.UUID], seconds: float
) -> dict[uuid.UUID, float]:
    deadline = time.monotonic() + seconds
    while True:
        done = await side.indexed(jobs)
        if len(done) >= len(jobs):
            return done
        if time.monotonic() > deadline:
            raise SystemExit(
                f"{side.name}: only {len(done)} of {len(jobs)} jobs indexed after {seconds:.0f} s"
            )
        await asyncio.sleep(0.2)


async def _phase(side: Side, jobs: int, rate: float | None, in_flight: int = 64) -> dict[str, Any]:
    """Offer `jobs` at `rate` per second (None: all at once, `in_flight` at a time)."""
    sent: dict[uuid.UUID, float] = {}
    meter = CpuMeter(side.pids)
    await meter.start()
    window = time.perf_counter()
    gate = asyncio.Semaphore(in_flight)

    async def one(job_id: uuid.UUID) -> None:
        async with gate:
            job, started = await side.submit(job_id)
            sent[job] = started

    tasks = []
    for i in range(jobs):
        if rate is not None:
            delay = window + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(uuid.uuid4())))
    await asyncio.gather(*tasks)
    ids = list(sent)
    indexed = await _wait_indexed(side, ids, seconds=120 + jobs / 10)
    elapsed = time.perf_counter() - window
    cpu = await meter.stop()
    latencies = [(indexed[j] - sent[j]) * 1000 for j in ids]
    span = max(indexed.values()) - min(sent.values())
    service = {k: v for k, v in cpu.items() if k != "load generator"}
    return {
        "side": side.name,
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


def _upload_event(job_id: uuid.UUID, audio_uri: str) -> AudioUploadedV1:
    return AudioUploadedV1(
        job_id=job_id,
        tenant_id=TENANT,
        correlation_id=uuid.uuid4(),
        producer="bench",
        audio_uri=audio_uri,  # type: ignore[arg-type]
        size_bytes=32044,
        options=TranscriptionOptions(language="en"),
    )


@dataclass
class Peer:
    """The Celery + Redis peer, running: its Redis, its worker, its database."""

    redis: subprocess.Popen[bytes]
    worker: subprocess.Popen[bytes]
    database_url: str


def _port_answers(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
        return True
    return False


@contextlib.contextmanager
def running_peer(workdir: Path) -> Iterator[Peer]:
    """A Redis of its own (AOF, fsync every second) and `celery worker` (prefork, 2)."""
    redis_server = shutil.which("redis-server")
    if redis_server is None:
        raise SystemExit("redis-server is not installed (scripts/bootstrap installs it)")
    port = free_port()
    data = workdir / "redis"
    data.mkdir()
    redis = subprocess.Popen(
        [redis_server, "--bind", "127.0.0.1", "--port", str(port), "--dir", str(data),
         "--appendonly", "yes", "--appendfsync", "everysec", "--save", "",
         "--loglevel", "warning"],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    worker: subprocess.Popen[bytes] | None = None
    try:
        deadline = time.monotonic() + 30
        while not _port_answers(port):
            if time.monotonic() > deadline or redis.poll() is not None:
                raise SystemExit("redis-server did not start")
            time.sleep(0.1)
        with throwaway_database("scribe_bench_peer") as database_url:
            asyncio.run(_create_peer_schema(database_url))
            env = {
                **os.environ,
                celery_peer.REDIS_URL_ENV: f"redis://127.0.0.1:{port}/0",
                celery_peer.DATABASE_URL_ENV: database_url,
            }
            log = (workdir / "celery.log").open("ab")
            worker = subprocess.Popen(
                [sys.executable, "-m", "celery", "-A", "bench.celery_peer", "worker",
                 "--pool=prefork", "--concurrency=2", "--loglevel=WARNING",
                 "--without-gossip", "--without-mingle", "--without-heartbeat"],
                env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            )  # fmt: skip
            celery_peer.app.conf.broker_url = env[celery_peer.REDIS_URL_ENV]
            yield Peer(redis=redis, worker=worker, database_url=database_url)
            worker.terminate()
            worker.wait(30)
    finally:
        for process in (worker, redis):
            if process is not None and process.poll() is None:
                process.kill()
                process.wait()


async def _create_peer_schema(database_url: str) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(celery_peer.SCHEMA)
    finally:
        await conn.close()


async def _measure(
    stack: Stack,
    database_url: str,
    peer: Peer,
    rates: list[float],
    seconds: float,
    saturation: int,
    rounds: int,
) -> list[dict[str, Any]]:
    # Under the tenant's own directory: the only place its file:// URIs may point.
    media = stack.media_root / TENANT / "bench-silence.wav"
    media.parent.mkdir(parents=True, exist_ok=True)
    _silence(media)
    uri = media.resolve().as_uri()
    monitor = await asyncpg.connect(database_url)
    peer_monitor = await asyncpg.connect(peer.database_url)
    database = database_url.rsplit("/", 1)[1]
    peer_database = peer.database_url.rsplit("/", 1)[1]
    broker = make_broker(stack.amqp_url, service="bench")
    try:
        async with broker:
            await broker.start()

            scribe = scribe_side(stack, monitor, database, broker, uri)

            wav = media.read_bytes()
            http = httpx.AsyncClient(base_url=stack.api, headers=API_HEADERS, timeout=60)

            async def upload(_job_id: uuid.UUID) -> tuple[uuid.UUID, float]:
                response = await http.post(
                    "/v1/transcriptions",
                    files={"file": ("silence.wav", wav, "application/octet-stream")},
                    data={"language": "en"},
                )
                if response.status_code != 202:
                    raise SystemExit(f"upload refused: {response.status_code} {response.text}")
                return uuid.UUID(response.json()["id"]), time.time()

            async def peer_pids() -> PidList:
                worker = psutil.Process(peer.worker.pid)
                pids = [("celery", worker.pid)]
                pids += [("celery", c.pid) for c in worker.children(recursive=True)]
                pids.append(("redis", peer.redis.pid))
                return pids + await postgres_pids(peer_monitor, peer_database)

            async def enqueue(job_id: uuid.UUID) -> tuple[uuid.UUID, float]:
                started = time.time()
                # Blocking, as the seed's API called it: one LPUSH of the chain's first task.
                celery_peer.submit({"job_id": str(job_id), "tenant_id": TENANT, "audio_uri": uri})
                return job_id, started

            async def peer_indexed(jobs: list[uuid.UUID]) -> dict[uuid.UUID, float]:
                rows = await peer_monitor.fetch(
                    "SELECT job_id, extract(epoch FROM indexed_at)::float8 AS at FROM peer_jobs "
                    "WHERE status = 'completed' AND job_id = ANY($1)",
                    jobs,
                )
                return {r["job_id"]: r["at"] for r in rows}

            celery = Side("celery", peer_pids, enqueue, peer_indexed)
            http_side = Side("scribe", scribe.pids, upload, scribe.indexed)
            # Warm-up: connections, prepared statements, the first-use imports, the
            # prefork children's first connections.
            await _phase(scribe, 50, 50.0)
            await _phase(celery, 50, 50.0)
            await _phase(http_side, 20, 20.0, in_flight=8)
            phases = []
            # Alternating, round after round: both sides see the same machine, in turn.
            for run in range(1, rounds + 1):
                for side in (scribe, celery):
                    for rate in [*rates, None]:
                        jobs = saturation if rate is None else round(rate * seconds)
                        phase = await _phase(side, jobs, rate)
                        phase["round"] = run
                        phases.append(phase)
            # The same load through the HTTP API: latency from the 202 to indexed.
            http_phase = await _phase(http_side, round(50.0 * seconds), 50.0, in_flight=8)
            http_phase["path"] = "http"
            http_phase["round"] = rounds
            phases.append(http_phase)
            await http.aclose()
            return phases
    finally:
        await monitor.close()
        await peer_monitor.close()


def _ratios(phases: list[dict[str, Any]], rates: list[float]) -> dict[str, float]:
    """Scribe against Celery, from the medians over rounds of each side's figures."""

    def figure(side: str, rate: float | None, key: str) -> float:
        return median(
            p[key]
            for p in phases
            if p["side"] == side and p["offered_jobs_per_s"] == rate and "path" not in p
        )

    busiest = max(rates)
    return {
        "saturation_jobs_per_s_scribe_over_celery": figure("scribe", None, "jobs_per_s")
        / figure("celery", None, "jobs_per_s"),
        f"p99_ms_at_{busiest:.0f}_scribe_over_celery": figure("scribe", busiest, "p99_ms")
        / figure("celery", busiest, "p99_ms"),
        f"cpu_ms_per_job_at_{busiest:.0f}_scribe_over_celery": figure(
            "scribe", busiest, "cpu_ms_per_job"
        )
        / figure("celery", busiest, "cpu_ms_per_job"),
        f"cpu_ms_per_job_at_{busiest:.0f}_scribe": figure("scribe", busiest, "cpu_ms_per_job"),
    }


def run(quick: bool = False) -> Result:
    rates = [20.0, 50.0]
    seconds = 4.0 if quick else 10.0
    saturation = 200 if quick else 1000
    rounds = 1 if quick else 2
    with (
        throwaway_vhost() as amqp_url,
        throwaway_database() as database_url,
        tempfile.TemporaryDirectory(prefix="scribe-bench-") as tmp,
        running_peer(Path(tmp)) as peer,
        running_stack(
            amqp_url,
            database_url,
            Path(tmp),
            transcriber_argv=[sys.executable, "-m", "bench.instant"],
            env={"SCRIBE_LOG_LEVEL": "WARNING"},
        ) as stack,
    ):
        phases = asyncio.run(
            _measure(stack, database_url, peer, rates, seconds, saturation, rounds)
        )
    result = Result(
        name="broker",
        title="control plane with an instant engine, Scribe and its Celery + Redis peer "
        "alternating: publish (or HTTP 202) → indexed",
        columns=[
            "side",
            "round",
            "offered",
            "jobs",
            "jobs/s",
            "p50 ms",
            "p99 ms",
            "CPU-ms/job",
            "of which",
        ],
        settings={
            "offered_rates": rates,
            "seconds_per_rate": seconds,
            "saturation_jobs": saturation,
            "rounds": rounds,
            "transcribers": 1,
            "engine": "bench.instant.InstantEngine",
            "peer": "bench.celery_peer: Celery prefork x2, acks_late, prefetch multiplier 1, "
            "Redis AOF everysec, 2-task chain",
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
                phase["side"],
                phase["round"],
                label,
                phase["jobs"],
                round(phase["jobs_per_s"], 1),
                round(phase["p50_ms"], 1),
                round(phase["p99_ms"], 1),
                round(phase["cpu_ms_per_job"], 1),
                " ".join(f"{k}={v}" for k, v in sorted(by.items())),
            ]
        )
    ratios = _ratios(phases, rates)
    result.figures = {"phases": phases, "ratios": ratios}
    result.notes = [
        *(f"{k}: {v:.2f}" for k, v in ratios.items()),
        "targets (issue 20): saturation >= 1.5x Celery, p99 at 50/s <= Celery's, <= 10 CPU-ms/job",
        "CPU-ms/job excludes the load generator; rabbitmq and postgres background "
        "processes are shared with anything else running",
    ]
    return result
