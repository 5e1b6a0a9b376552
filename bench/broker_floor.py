"""The floor under `bench broker`: what Scribe's event contract costs RabbitMQ and
PostgreSQL with no Scribe code at all.

Per job, the broker work the stack does (`bench/README.md`, "Issue 20 on a quiet machine"):
four persistent, confirmed publishes (the upload; the pool router's copy to its model's
queue; `transcription.started`; `transcript.completed`) and six deliveries into quorum
queues, each acked by hand once its effect is done (intake and indexer for the upload, the
pool queue, the indexer for `started`, indexer and webhooks for `completed`). And the least
PostgreSQL work the indexer's guarantee needs: one committed transaction per job event that
inserts the event's tracking record (three per job; the stack also writes the job's row and
transcript in them, and under load puts several events in one transaction).

Latency of a job: from its upload's publish to the commit of its `completed` event's
tracking transaction (`bench broker` ends at that transaction's start, a millisecond or two
earlier).

Every client is aio-pika or asyncpg in this one process, with no FastStream, no pydantic and
no logging: the figures that matter are RabbitMQ's and PostgreSQL's CPU per job, which no
client code can lower. Issue 20 asks for at most 10 CPU-ms per job over all processes.

    uv run python -m bench broker_floor        # 3,000 jobs; --quick: 500
    uv run python -m bench.broker_floor --jobs N
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from typing import Any, Final

import aio_pika
import asyncpg

from bench.broker import CpuMeter, PidList, postgres_pids
from bench.common import (
    Result,
    median,
    percentile,
    pids_named,
    throwaway_database,
    throwaway_vhost,
)

EXCHANGE: Final = "floor.events"
UPLOADED: Final = "audio.uploaded.v1"
POOL: Final = "pool.tiny-en.audio-uploaded"
STARTED: Final = "transcription.started.v1"
COMPLETED: Final = "transcript.completed.v1"
QUEUES: Final = {
    "intake": [UPLOADED],
    "pool": [POOL],
    "indexer": [UPLOADED, STARTED, COMPLETED],
    "webhooks": [COMPLETED],
}
# About the size of the stack's events for a 1 s clip (JSON, headers apart).
BODY: Final = {UPLOADED: 700, POOL: 700, STARTED: 450, COMPLETED: 900}
PREFETCH: Final = 64
IN_FLIGHT: Final = 64
CLIENTS: Final = "clients (Python)"


async def pipeline(
    amqp_url: str, database_url: str, jobs: int, rates: list[float | None]
) -> dict[str, Any]:
    """`jobs` jobs through the contract's broker and database work at each offered rate
    (`None`: as fast as it goes, 64 in flight); CPU-ms per job by process for each."""
    db = await asyncpg.create_pool(database_url, min_size=4, max_size=4)
    await db.execute("CREATE TABLE processed (event_id uuid PRIMARY KEY, at timestamptz)")
    monitor = await asyncpg.connect(database_url)
    connection = await aio_pika.connect(amqp_url)
    indexed: dict[str, asyncio.Future[float]] = {}
    try:
        channel = await connection.channel(publisher_confirms=True)
        await channel.set_qos(prefetch_count=PREFETCH)
        exchange = await channel.declare_exchange(EXCHANGE, "topic", durable=True)
        queues = {}
        for name, keys in QUEUES.items():
            # The stack's queue arguments (`scribe_runtime.topology.Subscription.arguments`).
            queue = await channel.declare_queue(
                f"floor.{name}",
                durable=True,
                arguments={
                    "x-queue-type": "quorum",
                    "x-delivery-limit": 5,
                    "x-dead-letter-exchange": "floor.dlx",
                    "x-dead-letter-routing-key": f"floor.{name}",
                },
            )
            for key in keys:
                await queue.bind(exchange, key)
            queues[name] = queue

        async def publish(key: str, job: str) -> None:
            message = aio_pika.Message(
                body=job.encode().ljust(BODY[key], b" "),
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                message_id=str(uuid.uuid4()),
                type=key,
            )
            await exchange.publish(message, routing_key=key)

        async def router(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            await publish(POOL, message.body.decode().strip())
            await message.ack()

        async def worker(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            job = message.body.decode().strip()
            await asyncio.gather(publish(STARTED, job), publish(COMPLETED, job))
            await message.ack()

        async def indexer(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            async with db.acquire() as conn, conn.transaction():
                await conn.execute(
                    "INSERT INTO processed VALUES ($1, now())", uuid.UUID(message.message_id)
                )
            await message.ack()
            if message.type == COMPLETED:
                indexed.pop(message.body.decode().strip()).set_result(time.perf_counter())

        async def webhooks(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            await message.ack()

        for name, handler in (
            ("intake", router),
            ("pool", worker),
            ("indexer", indexer),
            ("webhooks", webhooks),
        ):
            await queues[name].consume(handler)

        database = await monitor.fetchval("SELECT current_database()")

        async def servers() -> PidList:
            """Counted as `bench broker` counts its side's servers."""
            return [("rabbitmq", pid) for pid in pids_named("beam.smp")] + await postgres_pids(
                monitor, database
            )

        async def run(count: int, rate: float | None) -> tuple[float, list[float]]:
            """Wall seconds, and each job's latency in ms: its upload's publish began to
            its `completed`'s tracking transaction committed."""
            slots = asyncio.Semaphore(IN_FLIGHT)
            latencies: list[float] = []

            async def one(at: float) -> None:
                if rate:
                    await asyncio.sleep(max(0.0, at - time.perf_counter()))
                async with slots:
                    job = uuid.uuid4().hex
                    done = indexed[job] = asyncio.get_running_loop().create_future()
                    began = time.perf_counter()
                    await publish(UPLOADED, job)
                    latencies.append(1000 * (await done - began))

            started = time.perf_counter()
            step = 1 / rate if rate else 0.0
            await asyncio.gather(*(one(started + i * step) for i in range(count)))
            return time.perf_counter() - started, latencies

        await run(min(200, jobs), None)  # warm: the queues' first segments, statements
        phases = []
        for rate in rates:
            meter = CpuMeter(servers)
            await meter.start()
            seconds, latencies = await run(jobs, rate)
            spent = await meter.stop()
            # This process is every client as well as the load generator.
            spent[CLIENTS] = spent.pop("load generator")
            phases.append(
                {
                    "offered": rate,
                    "jobs": jobs,
                    "seconds": seconds,
                    "jobs_per_s": jobs / seconds,
                    "p50_ms": median(latencies),
                    "p99_ms": percentile(latencies, 99),
                    "cpu_ms_per_job": {k: 1000 * v / jobs for k, v in spent.items()},
                }
            )
        return {"phases": phases, "beam_nodes": len(pids_named("beam.smp"))}
    finally:
        await connection.close()
        await monitor.close()
        await db.close()


def run(quick: bool = False, jobs: int | None = None) -> Result:
    """Saturation (64 jobs in flight), then 50 jobs/s offered, as `bench broker` measures."""
    jobs = jobs or (500 if quick else 3000)
    with throwaway_vhost("scribe-floor") as amqp_url, throwaway_database("scribe_floor") as url:
        figures = asyncio.run(pipeline(amqp_url, url, jobs, [None, 50.0]))
    result = Result(
        name="broker_floor",
        title="Scribe's event contract with plain clients: CPU-ms per job by process",
        columns=[
            "offered",
            "jobs/s",
            "p50 ms",
            "p99 ms",
            "RabbitMQ",
            "PostgreSQL",
            "both servers",
            "clients (Python)",
            "all",
        ],
        settings={"jobs": jobs, "prefetch": PREFETCH, "in_flight": IN_FLIGHT},
        figures=figures,
    )
    for phase in figures["phases"]:
        cpu = phase["cpu_ms_per_job"]
        servers = cpu.get("rabbitmq", 0.0) + cpu.get("postgres", 0.0)
        result.rows.append(
            [
                "saturation" if phase["offered"] is None else f"{phase['offered']:g}/s",
                round(phase["jobs_per_s"], 1),
                round(phase["p50_ms"], 1),
                round(phase["p99_ms"], 1),
                round(cpu.get("rabbitmq", 0.0), 2),
                round(cpu.get("postgres", 0.0), 2),
                round(servers, 2),
                round(cpu.get(CLIENTS, 0.0), 2),
                round(sum(cpu.values()), 2),
            ]
        )
    result.notes = [
        f"{jobs} jobs a phase; {figures['beam_nodes']} beam.smp process(es) on the host "
        "counted as RabbitMQ",
        "per job: 4 confirmed persistent publishes, 6 quorum-queue deliveries acked by hand, "
        "3 committed PostgreSQL transactions of one INSERT each",
        "issue 20's target: <= 10 CPU-ms per job over all processes",
    ]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--jobs", type=int, default=3000, help="jobs per phase")
    args = parser.parse_args()
    print(run(jobs=args.jobs).table())


if __name__ == "__main__":
    main()
