"""A long job's chunks in PostgreSQL: the plan, each result as it arrives, and the decisions.

`transcription.chunked.v1` (the plan) and `transcription.chunk.transcribed.v1` (one
chunk's result) may arrive in any order, twice, or a result before its plan. Each is
kept in `job_chunks`, one row per (job, chunk): the plan inserts the rows it lacks, a
result fills its row (an upsert: of two results of one chunk, the earliest by
(`occurred_at`, event id) is kept, whichever arrives first). After either, `progress_of`
reads the job's chunks back, in the same transaction and under the job's lock:

- every chunk of the plan done: `completion` assembles the transcript
  (`contracts.chunks.assemble_segments`), labels its segments and words with the plan's
  speaker turns when the job was diarized (`contracts.speakers.label_segments`, turns kept
  in `job_speaker_turns`), into the `transcript.completed.v1` that the caller projects
  exactly like a transcriber's and puts in the outbox;
- otherwise the fraction of the audio done (cores of done chunks / duration) and the ETA:
  remaining audio seconds times the real-time factor measured on this job's done chunks
  (their processing seconds / audio seconds), less the time each worker at work has
  already spent on the chunk in its hand (since its last result: prefetch 1), divided by
  the workers at work on it (distinct workers that finished one of its chunks within
  `WORKERS_WINDOW_SECONDS` of the latest result), at most the chunks left, at least 1.

Every figure is computed from stored rows and the events' own times, never the wall
clock, so the same chunks give the same transcript, event ids and estimates on any
replica, in any arrival order.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Final, TypeAlias
from uuid import UUID, uuid5

import asyncpg
from asyncpg.pool import PoolConnectionProxy
from pydantic import TypeAdapter

from contracts.chunks import (
    TranscriptionChunkedV1,
    TranscriptionChunkTranscribedV1,
    assemble_segments,
)
from contracts.envelope import NUL_FREE_CONTEXT
from contracts.speakers import SpeakerTurn, label_segments
from contracts.transcription import TranscriptCompletedV1, TranscriptionProgressV1
from indexer.projection import JobState

_TURNS: Final = TypeAdapter(list[SpeakerTurn])

WORKERS_WINDOW_SECONDS: Final = 300.0
"""A worker that finished one of the job's chunks this recently is counted as at work."""

if TYPE_CHECKING:
    Connection: TypeAlias = PoolConnectionProxy[asyncpg.Record]


def completion_event_id(tenant_id: str, job_id: UUID) -> UUID:
    """The one `transcript.completed.v1` id of a job.

    The transcriber derives a short job's completion id the same way (uuid5 of the job id
    and `outcome:<tenant>:completed`), so a job has one completion id whichever path
    completed it, and a consumer deduplicating by `message_id` can never act twice.
    """
    return uuid5(job_id, f"outcome:{tenant_id}:completed")


def progress_event_id(tenant_id: str, job_id: UUID, chunks_done: int) -> UUID:
    """Stable per (job, chunks done): a progress is decided once per chunk that completes."""
    return uuid5(job_id, f"chunk-progress:{tenant_id}:{chunks_done}")


async def store_plan(conn: Connection, plan: TranscriptionChunkedV1) -> None:
    """The rows of a plan's chunks that no result has created yet (cores from the plan).

    The plan's speaker turns, when it has some, replace any kept from a later plan: the
    caller stores only the plan the job now describes (the earliest).
    """
    if plan.speaker_turns is not None:
        await conn.execute(
            "INSERT INTO job_speaker_turns (tenant_id, job_id, turns, turn_count, planned_at) "
            "VALUES ($1, $2, $3, $4, $5) ON CONFLICT (tenant_id, job_id) DO UPDATE SET "
            "turns = EXCLUDED.turns, turn_count = EXCLUDED.turn_count, "
            "planned_at = EXCLUDED.planned_at",
            plan.tenant_id,
            plan.job_id,
            _TURNS.dump_json(plan.speaker_turns).decode(),
            len(plan.speaker_turns),
            plan.occurred_at,
        )
    await conn.executemany(
        "INSERT INTO job_chunks (tenant_id, job_id, chunk_index, core_start, core_end, "
        "updated_at) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
        [
            (
                plan.tenant_id,
                plan.job_id,
                c.index,
                c.core_start,
                c.core_end,
                plan.occurred_at,
            )
            for c in plan.chunks
        ],
    )


async def store_result(conn: Connection, result: TranscriptionChunkTranscribedV1) -> bool:
    """Upsert one chunk's result; True when this result is now the chunk's."""
    stored: bool | None = await conn.fetchval(
        "INSERT INTO job_chunks AS c (tenant_id, job_id, chunk_index, core_start, core_end, "
        "result_event_id, result, segment_count, audio_seconds, processing_seconds, worker, "
        "transcribed_at, updated_at) "
        "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $12) "
        "ON CONFLICT (tenant_id, job_id, chunk_index) DO UPDATE SET "
        "core_start = EXCLUDED.core_start, core_end = EXCLUDED.core_end, "
        "result_event_id = EXCLUDED.result_event_id, result = EXCLUDED.result, "
        "segment_count = EXCLUDED.segment_count, audio_seconds = EXCLUDED.audio_seconds, "
        "processing_seconds = EXCLUDED.processing_seconds, worker = EXCLUDED.worker, "
        "transcribed_at = EXCLUDED.transcribed_at, "
        "updated_at = GREATEST(c.updated_at, EXCLUDED.updated_at) "
        # The earliest result of a chunk is kept, whichever order results arrive in.
        "WHERE c.result_event_id IS NULL OR (EXCLUDED.transcribed_at, EXCLUDED.result_event_id) "
        "< (c.transcribed_at, c.result_event_id) "
        "RETURNING true",
        result.tenant_id,
        result.job_id,
        result.chunk_index,
        result.core_start,
        result.core_end,
        result.event_id,
        result.model_dump_json(),
        len(result.segments),
        result.audio_seconds,
        result.processing_seconds,
        result.worker,
        result.occurred_at,
    )
    return bool(stored)


@dataclass(frozen=True, slots=True)
class ChunkProgress:
    """A planned job's chunks, read back after a chunk event."""

    chunk_count: int
    done: int
    done_seconds: float
    audio_seconds: float
    processing_seconds: float
    segments: int
    workers: int
    latest: datetime | None
    in_flight_seconds: tuple[float, ...] = ()
    """How long each worker at work has been on its current chunk, longest first."""

    @property
    def complete(self) -> bool:
        """Every chunk of the plan has its result."""
        return self.done == self.chunk_count

    def fraction(self, duration: float) -> float:
        """Fraction of the audio done, 0 to 1."""
        if duration <= 0:
            return 1.0 if self.complete else 0.0
        return min(1.0, max(0.0, self.done_seconds / duration))

    def eta_seconds(self, duration: float) -> float | None:
        """Seconds until complete at the measured pace; None before any audio is measured."""
        if self.audio_seconds <= 0:
            return None
        real_time_factor = self.processing_seconds / self.audio_seconds
        remaining = max(0.0, duration - self.done_seconds)
        left = self.chunk_count - self.done
        # The chunks in hand are partly done: credit each its worker's time on it (at
        # most one per chunk left), and no more workers than chunks left share the rest.
        credit = sum(s for s in self.in_flight_seconds[:left] if s > 0)
        work = max(0.0, remaining * real_time_factor - credit)
        return round(work / max(1, min(self.workers, left)), 3)


async def progress_of(
    conn: Connection, tenant_id: str, job_id: UUID, chunk_count: int
) -> ChunkProgress:
    """Aggregate the done chunks of the plan (indexes beyond it are not the plan's)."""
    row = await conn.fetchrow(
        "WITH done AS (SELECT * FROM job_chunks WHERE tenant_id = $1 AND job_id = $2 "
        "  AND chunk_index < $3 AND result_event_id IS NOT NULL) "
        "SELECT count(*) AS done, "
        "  coalesce(sum(core_end - core_start), 0) AS done_seconds, "
        "  coalesce(sum(audio_seconds), 0) AS audio_seconds, "
        "  coalesce(sum(processing_seconds), 0) AS processing_seconds, "
        "  coalesce(sum(segment_count), 0) AS segments, "
        "  max(transcribed_at) AS latest, "
        # Each worker at work: when it last finished one of the job's chunks.
        "  (SELECT coalesce(array_agg(w.last), '{}') FROM (SELECT max(transcribed_at) AS last "
        "    FROM done GROUP BY coalesce(worker, '')) w WHERE w.last >= "
        "    (SELECT max(transcribed_at) FROM done) - make_interval(secs => $4)) AS worker_lasts "
        "FROM done",
        tenant_id,
        job_id,
        chunk_count,
        WORKERS_WINDOW_SECONDS,
    )
    assert row is not None
    lasts: list[datetime] = list(row["worker_lasts"])
    latest: datetime | None = row["latest"]
    return ChunkProgress(
        chunk_count=chunk_count,
        done=row["done"],
        done_seconds=row["done_seconds"],
        audio_seconds=row["audio_seconds"],
        processing_seconds=row["processing_seconds"],
        segments=row["segments"],
        workers=len(lasts),
        latest=latest,
        # Prefetch 1: a worker takes its next chunk when it finishes one, so each worker
        # other than the latest has been on its current chunk since its last result.
        in_flight_seconds=tuple(
            sorted(((latest - last).total_seconds() for last in lasts), reverse=True)
        )
        if latest is not None
        else (),
    )


def progress_event(
    state: JobState, progress: ChunkProgress, *, producer: str
) -> TranscriptionProgressV1:
    """The job's progress after its latest chunk, with its ETA."""
    duration = state.duration_seconds or 0.0
    assert state.chunked_at is not None
    return TranscriptionProgressV1(
        event_id=progress_event_id(state.tenant_id, state.job_id, progress.done),
        occurred_at=max(progress.latest or state.chunked_at, state.chunked_at),
        job_id=state.job_id,
        tenant_id=state.tenant_id,
        correlation_id=state.correlation_id,
        producer=producer,
        progress=progress.fraction(duration),
        processed_seconds=round(progress.done_seconds, 3),
        duration_seconds=duration,
        segments_done=progress.segments,
        eta_seconds=progress.eta_seconds(duration),
        job_fingerprint=state.job_fingerprint,
    )


async def completion(conn: Connection, state: JobState, *, producer: str) -> TranscriptCompletedV1:
    """The assembled transcript of a job whose every chunk is in.

    `processing_seconds` is the sum of the chunks' processing seconds: worker time, as a
    short job's is, so its ratio to the duration is the same real-time factor whatever
    the fan-out (the elapsed time is `completed_at` - `started_at` of the job).
    """
    assert state.chunk_count is not None
    assert state.chunked_at is not None
    rows = await conn.fetch(
        "SELECT result FROM job_chunks WHERE tenant_id = $1 AND job_id = $2 "
        "AND chunk_index < $3 ORDER BY chunk_index",
        state.tenant_id,
        state.job_id,
        state.chunk_count,
    )
    # Every string was checked for NUL when the result was received: not again, 600 times.
    trusted = {NUL_FREE_CONTEXT: True}
    results = [
        TranscriptionChunkTranscribedV1.model_validate_json(r["result"], context=trusted)
        for r in rows
    ]
    segments = assemble_segments(results)
    turns = await conn.fetchval(
        "SELECT turns FROM job_speaker_turns WHERE tenant_id = $1 AND job_id = $2",
        state.tenant_id,
        state.job_id,
    )
    if turns is not None:
        # Turns of the whole file, found once: one label per speaker across every chunk.
        segments = label_segments(segments, _TURNS.validate_json(turns))
    text = " ".join(s.text.strip() for s in segments if s.text.strip())
    assert state.language is not None
    assert state.model is not None
    fields: dict[str, object] = {
        "event_id": completion_event_id(state.tenant_id, state.job_id),
        "occurred_at": max([state.chunked_at, *(r.occurred_at for r in results)]),
        "job_id": state.job_id,
        "tenant_id": state.tenant_id,
        "correlation_id": state.correlation_id,
        "producer": producer,
        "language": state.language,
        "language_probability": state.language_probability or 0.0,
        "duration_seconds": state.duration_seconds or 0.0,
        "model": state.model,
        "text": text,
        "segments": segments,
        "processing_seconds": round(sum(r.processing_seconds for r in results), 3),
        "attempt": max([1, *(r.attempt for r in results)]),
        "empty_reason": None if text else "no_speech",
        "job_fingerprint": state.job_fingerprint,
    }
    return TranscriptCompletedV1.model_validate(fields, context=trusted)
