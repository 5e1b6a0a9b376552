"""The peer of `python -m bench broker`: the seed's design, Celery + Redis, the same job shape.

    celery -A bench.celery_peer worker --pool=prefork --concurrency=2   # what the bench runs

An upload is a 2-task chain, `transcribe | index`, put on Redis by the load generator:
`transcribe` resolves and stats the file (as Scribe's file source does), marks the job
`processing` in PostgreSQL and returns a one-segment stub transcript (the instant engine's);
`index` writes the job `completed`, its transcript text and its segment in one transaction.
Latency ends at that transaction's `now()` (its start), as Scribe's ends at the indexer's
`processed_at`.

Configured the way a careful deployment would, not the fastest way: `acks_late` with
`reject_on_worker_lost` (a killed worker's task is redelivered), prefetch multiplier 1,
JSON, no result backend (a chain passes results in its messages), Redis with an
append-only file fsynced every second. The guarantees side by side are in bench/README.md.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Final
from urllib.parse import unquote, urlparse

import psycopg
from celery import Celery, chain

REDIS_URL_ENV: Final = "SCRIBE_BENCH_REDIS_URL"
DATABASE_URL_ENV: Final = "SCRIBE_BENCH_PEER_DATABASE_URL"

SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS peer_jobs (
    job_id uuid PRIMARY KEY,
    tenant_id text NOT NULL,
    status text NOT NULL,
    audio_uri text NOT NULL,
    language text,
    duration_seconds double precision,
    text text,
    indexed_at timestamptz
);
CREATE TABLE IF NOT EXISTS peer_segments (
    job_id uuid NOT NULL REFERENCES peer_jobs ON DELETE CASCADE,
    segment_id int NOT NULL,
    start_seconds double precision NOT NULL,
    end_seconds double precision NOT NULL,
    text text NOT NULL,
    PRIMARY KEY (job_id, segment_id)
);
"""

app = Celery("scribe_bench_peer")
app.conf.update(
    broker_url=os.environ.get(REDIS_URL_ENV, "redis://127.0.0.1:6379/15"),
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    task_serializer="json",
    accept_content=["json"],
    task_ignore_result=True,
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
    # A task held unacked longer than this is handed to another worker (Redis's "ack").
    broker_transport_options={"visibility_timeout": 3600},
)

_connection: psycopg.Connection[Any] | None = None


def _db() -> psycopg.Connection[Any]:
    """This worker process's connection (prefork: one per child, opened on first use)."""
    global _connection
    if _connection is None or _connection.closed:
        _connection = psycopg.connect(os.environ[DATABASE_URL_ENV], autocommit=True)
    return _connection


@app.task(name="peer.transcribe")  # type: ignore[untyped-decorator]
def transcribe(job: dict[str, Any]) -> dict[str, Any]:
    """The stub transcription: stat the audio, mark the job processing, return one segment."""
    Path(unquote(urlparse(job["audio_uri"]).path)).stat()
    conn = _db()
    with conn.transaction():
        conn.execute(
            "INSERT INTO peer_jobs (job_id, tenant_id, status, audio_uri) "
            "VALUES (%s, %s, 'processing', %s) ON CONFLICT (job_id) DO UPDATE "
            "SET status = 'processing' WHERE peer_jobs.status <> 'completed'",
            (job["job_id"], job["tenant_id"], job["audio_uri"]),
        )
    return {
        **job,
        "language": "en",
        "duration_seconds": 1.0,
        "segments": [{"id": 0, "start": 0.0, "end": 1.0, "text": "instant"}],
    }


@app.task(name="peer.index")  # type: ignore[untyped-decorator]
def index(result: dict[str, Any]) -> None:
    """Write the job completed with its transcript, idempotently (a redelivery rewrites it)."""
    conn = _db()
    with conn.transaction():
        conn.execute(
            "UPDATE peer_jobs SET status = 'completed', language = %s, duration_seconds = %s, "
            "text = %s, indexed_at = now() WHERE job_id = %s",
            (
                result["language"],
                result["duration_seconds"],
                " ".join(s["text"] for s in result["segments"]),
                result["job_id"],
            ),
        )
        conn.execute("DELETE FROM peer_segments WHERE job_id = %s", (result["job_id"],))
        with conn.cursor() as cursor:
            cursor.executemany(
                "INSERT INTO peer_segments (job_id, segment_id, start_seconds, end_seconds, "
                "text) VALUES (%s, %s, %s, %s, %s)",
                [
                    (result["job_id"], s["id"], s["start"], s["end"], s["text"])
                    for s in result["segments"]
                ],
            )


def submit(job: dict[str, Any]) -> None:
    """Put one upload's chain on the broker (what the seed's API did per upload)."""
    chain(transcribe.s(job), index.s()).apply_async()
