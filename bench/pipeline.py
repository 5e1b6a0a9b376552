"""Audio through the whole stack (upload → indexed) and through plain faster-whisper.

Both sides use the transcriber's own settings (model, int8 on CPU, threads, beam, VAD), so a
difference between them is the pipeline's cost. "Indexed" is the indexer's transaction
that recorded the job's `transcript.completed` (`processed_events.processed_at`, on this
host's clock): polling the read API for it would add the poll interval and the polls' CPU,
which on two cores would slow the very inference being measured.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from bench.common import API_HEADERS, Clip, throwaway_database, throwaway_vhost
from tests.support.stack import Stack, running_stack
from transcriber.settings import TranscriberSettings


def settings(threads: int) -> TranscriberSettings:
    """The transcriber's settings (its defaults, like the stack's) with `threads`."""
    return TranscriberSettings(cpu_threads=threads, health_port=None)


def worker_env(s: TranscriberSettings) -> dict[str, str]:
    """The same settings, as the stack's transcriber processes read them."""
    return {
        "SCRIBE_TRANSCRIBER_CPU_THREADS": str(s.cpu_threads),
        "SCRIBE_TRANSCRIBER_BEAM_SIZE": str(s.beam_size),
        "SCRIBE_TRANSCRIBER_DEVICE": "cpu",
        "SCRIBE_TRANSCRIBER_COMPUTE_TYPE": "int8",
        "SCRIBE_TRANSCRIBER_VAD_FILTER": str(s.vad_filter).lower(),
        "SCRIBE_LOG_LEVEL": "WARNING",
    }


class Plain:
    """faster-whisper with nothing around it: one model, files transcribed in this process."""

    def __init__(self, s: TranscriberSettings) -> None:
        from faster_whisper import WhisperModel

        self.settings = s
        self.model = WhisperModel(
            s.model, device="cpu", compute_type="int8", cpu_threads=s.cpu_threads
        )

    def transcribe(self, path: Path) -> tuple[float, str]:
        """Wall seconds (decode + inference) and text."""
        started = time.perf_counter()
        segments, _info = self.model.transcribe(
            str(path),
            language="en",
            beam_size=self.settings.beam_size,
            vad_filter=self.settings.vad_filter,
        )
        text = " ".join(s.text.strip() for s in segments)
        return time.perf_counter() - started, text


@contextlib.contextmanager
def stack(s: TranscriberSettings, transcribers: int = 1) -> Iterator[Stack]:
    """The whole stack on a throwaway vhost and database, transcribers configured like `s`."""
    with (
        throwaway_vhost() as amqp_url,
        throwaway_database() as database_url,
        tempfile.TemporaryDirectory(prefix="scribe-bench-") as tmp,
        running_stack(
            amqp_url, database_url, Path(tmp), transcribers=transcribers, env=worker_env(s)
        ) as running,
    ):
        yield running


def upload(stack: Stack, clip: Clip) -> tuple[uuid.UUID, float]:
    """POST the clip; its job id and the epoch second the upload began."""
    began = time.time()
    with clip.path.open("rb") as handle:
        response = httpx.post(
            f"{stack.api}/v1/transcriptions",
            files={"file": (clip.path.name, handle, "application/octet-stream")},
            data={"language": "en"},
            headers=API_HEADERS,
            timeout=120,
        )
    if response.status_code != 202:
        raise SystemExit(f"upload of {clip.path.name}: {response.status_code} {response.text}")
    return uuid.UUID(response.json()["id"]), began


async def _indexed(
    database_url: str, jobs: list[uuid.UUID], seconds: float
) -> dict[uuid.UUID, float]:
    conn = await asyncpg.connect(database_url)
    try:
        deadline = time.monotonic() + seconds
        while True:
            rows = await conn.fetch(
                "SELECT job_id, extract(epoch FROM processed_at)::float8 AS at "
                "FROM processed_events "
                "WHERE event_type LIKE 'transcript.completed%' AND job_id = ANY($1)",
                jobs,
            )
            if len(rows) >= len(jobs):
                return {r["job_id"]: r["at"] for r in rows}
            failed = await conn.fetch(
                "SELECT job_id, error_code FROM jobs WHERE status = 'failed' AND job_id = ANY($1)",
                jobs,
            )
            if failed:
                raise SystemExit(f"jobs failed: {[dict(r) for r in failed]}")
            if time.monotonic() > deadline:
                raise SystemExit(f"{len(rows)} of {len(jobs)} jobs indexed after {seconds:.0f} s")
            await asyncio.sleep(0.1)
    finally:
        await conn.close()


def wait_indexed(
    stack: Stack, jobs: list[uuid.UUID], seconds: float = 900
) -> dict[uuid.UUID, float]:
    """Epoch second each job's completion was indexed, once all are (SystemExit if one failed)."""
    return asyncio.run(_indexed(stack.database_url, jobs, seconds))


def transcript_text(stack: Stack, job: uuid.UUID) -> str:
    """The transcript as the read API serves it."""
    response = httpx.get(
        f"{stack.api}/v1/transcriptions/{job}/transcript.txt", headers=API_HEADERS, timeout=30
    )
    response.raise_for_status()
    return response.text


def through_stack(stack: Stack, clip: Clip) -> tuple[float, str]:
    """Wall seconds from the upload's start to its completion indexed, and the text served."""
    job, began = upload(stack, clip)
    indexed = wait_indexed(stack, [job])[job]
    return indexed - began, transcript_text(stack, job)


def settings_figures(s: TranscriberSettings, **extra: Any) -> dict[str, Any]:
    return {
        "model": s.resolved_model_name(),
        "device": "cpu",
        "compute_type": "int8",
        "cpu_threads": s.cpu_threads,
        "beam_size": s.beam_size,
        "vad_filter": s.vad_filter,
        "language": "en",
        "nproc": len(os.sched_getaffinity(0)),
        **extra,
    }
