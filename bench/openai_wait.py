"""What the OpenAI-compatible routes' wait costs: a status poll versus decoding an event.

    uv run python -m bench.openai_wait

The routes learn a job's outcome by polling the read port (`JobReader.transcript`). The
alternative was an exclusive queue per ingest replica bound to the terminal events,
where every replica decodes every `transcript.completed.v1` of the fleet. Prints, on a
throwaway database: the wall time and ingest CPU of one poll of a job still processing
(what the wait pays at each pause) and of the final read of a completed one; and the
CPU to decode one `transcript.completed.v1` of a 10-minute talk with word timestamps
(what each replica would pay per job of the fleet, waited on or not).
"""

from __future__ import annotations

import asyncio
import statistics
import time
import uuid
from typing import Final

import asyncpg

from bench.common import throwaway_database
from contracts import TranscriptCompletedV1
from contracts.transcription import Segment, Word
from indexer.migrate import prepare_database
from indexer.store import PostgresProjectionStore
from ingest.queries import JobReader
from services.indexer.tests import job_events as ev
from tests.support.servers import READER, as_role

ROUNDS: Final = 500


def talk_event(minutes: float = 10.0) -> TranscriptCompletedV1:
    """A completed event like a 10-minute talk's: a segment per 4 s, 2.5 words a second."""
    segments = []
    for i in range(int(minutes * 60 / 4)):
        start = i * 4.0
        words = [
            Word(
                word=f" word{j}", start=start + j * 0.4, end=start + j * 0.4 + 0.35, probability=0.9
            )
            for j in range(10)
        ]
        text = "".join(w.word for w in words)
        segments.append(Segment(id=i, start=start, end=start + 4.0, text=text, words=words))
    base = ev.completed(uuid.uuid4())
    return base.model_copy(update={"segments": segments, "duration_seconds": minutes * 60})


async def measure(url: str) -> None:
    await prepare_database(url, reader_role=READER, reader_password=None, tenants=("default",))
    processing, done = uuid.uuid4(), uuid.uuid4()
    async with asyncpg.create_pool(url, min_size=1, max_size=2) as pool:
        store = PostgresProjectionStore(pool)
        for event in [ev.uploaded(processing), ev.started(processing, 1), *ev.completed_job(done)]:
            await store.apply(event)
    async with asyncpg.create_pool(as_role(url, READER), min_size=1, max_size=2) as pool:
        reader = JobReader(pool, timeout_seconds=5, search_candidate_limit=1000)
        for label, job in (("poll, still processing", processing), ("read, completed", done)):
            walls, cpus = [], []
            for _ in range(ROUNDS):
                wall, cpu = time.perf_counter(), time.process_time()
                await reader.transcript("default", job)
                walls.append(time.perf_counter() - wall)
                cpus.append(time.process_time() - cpu)
            print(
                f"{label:>24}: wall p50 {statistics.median(walls) * 1000:.2f} ms, "
                f"ingest CPU mean {statistics.fmean(cpus) * 1000:.3f} ms"
            )
    event = talk_event()
    body = event.model_dump_json().encode()
    cpu = time.process_time()
    for _ in range(20):
        TranscriptCompletedV1.model_validate_json(body)
    per_event = (time.process_time() - cpu) / 20
    print(
        f"{'decode completed event':>24}: {len(body) / 1024:.0f} KiB "
        f"(10-minute talk, words), CPU {per_event * 1000:.2f} ms per replica per job"
    )


def main() -> None:
    with throwaway_database("scribe_bench_openai") as url:
        asyncio.run(measure(url))


if __name__ == "__main__":
    main()
