"""The control plane scaled out: 1, 2 and 4 indexer and transcriber replicas, saturation.

    uv run python -m bench scale_out [--quick]

For each replica count n, the real stack (`bench.broker`'s setup: ingest, webhooks, the
instant engine in place of the model) runs n transcribers and n indexers competing on
their queues, and `bench.broker`'s saturation phase publishes the same number of
confirmed `audio.uploaded.v1` as fast as the stack takes them. Jobs/s from the first
publish to the last `transcript.completed` indexed, and CPU-ms per job by component.
On 2 cores, replicas beyond the cores cannot add throughput: the curve shows where the
machine, not the design, stops it (and what the replicas cost: more processes, more
connections, more context switches).
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from pathlib import Path
from typing import Any, Final

import asyncpg

from bench.broker import TENANT, _phase, _silence, scribe_side
from bench.common import Result, throwaway_database, throwaway_vhost
from scribe_runtime.messaging import make_broker
from tests.support.ports import free_port
from tests.support.stack import BIN, Stack, running_stack

REPLICAS: Final = (1, 2, 4)


async def _saturate(stack: Stack, database_url: str, jobs: int) -> dict[str, Any]:
    media = stack.media_root / TENANT / "bench-silence.wav"
    media.parent.mkdir(parents=True, exist_ok=True)
    _silence(media)
    uri = media.resolve().as_uri()
    monitor = await asyncpg.connect(database_url)
    database = database_url.rsplit("/", 1)[1]
    broker = make_broker(stack.amqp_url, service="bench")
    try:
        async with broker:
            await broker.start()

            side = scribe_side(stack, monitor, database, broker, uri)
            await _phase(side, 50, 50.0)  # warm-up
            return await _phase(side, jobs, None)
    finally:
        await monitor.close()


def _one(replicas: int, jobs: int) -> dict[str, Any]:
    with (
        throwaway_vhost() as amqp_url,
        throwaway_database() as database_url,
        tempfile.TemporaryDirectory(prefix="scribe-bench-") as tmp,
        running_stack(
            amqp_url,
            database_url,
            Path(tmp),
            transcribers=replicas,
            transcriber_argv=[sys.executable, "-m", "bench.instant"],
            env={"SCRIBE_LOG_LEVEL": "WARNING", "SCRIBE_TRANSCRIBER_CPU_THREADS": "1"},
        ) as stack,
    ):
        for n in range(2, replicas + 1):
            name = f"indexer-{n}"
            stack.health[name] = free_port()
            stack.start(
                name,
                [str(BIN / "scribe-indexer"), "run"],
                {"SCRIBE_INDEXER_HEALTH_PORT": str(stack.health[name])},
            )
        stack.wait_ready()
        phase = asyncio.run(_saturate(stack, database_url, jobs))
    phase.pop("latencies_ms")
    return {"replicas": replicas, **phase}


def run(quick: bool = False) -> Result:
    jobs = 200 if quick else 1000
    runs = [_one(n, jobs) for n in REPLICAS]
    result = Result(
        name="scale_out",
        title="control plane at saturation, n indexers + n transcribers (instant engine)",
        columns=["replicas", "jobs", "jobs/s", "vs 1 replica", "p50 ms", "CPU-ms/job", "of which"],
        settings={"replicas": list(REPLICAS), "jobs": jobs, "engine": "bench.instant"},
    )
    base = runs[0]["jobs_per_s"]
    for r in runs:
        by = r["cpu_ms_per_job_by_process"]
        result.rows.append(
            [
                r["replicas"],
                r["jobs"],
                round(r["jobs_per_s"], 1),
                round(r["jobs_per_s"] / base, 2),
                round(r["p50_ms"], 1),
                round(r["cpu_ms_per_job"], 1),
                " ".join(f"{k}={v}" for k, v in sorted(by.items())),
            ]
        )
    result.figures = {"runs": runs}
    result.notes = [
        "saturation: all jobs published at once (64 confirms in flight); 2 cores shared by "
        "every process, RabbitMQ and PostgreSQL included",
    ]
    return result
