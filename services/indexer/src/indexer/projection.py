"""The job projection as a pure function: state + event → state, in any order.

Every rule below is chosen so that the same set of events gives the same row whatever
their arrival order or duplication (a commutative, idempotent merge):

- status only moves up `queued < processing < failed < completed < cancelled`: a late
  `started` or `progress` never demotes a finished job, a transcript beats an earlier
  failure (a dead-lettered job that is replayed and then completes is completed), and
  nothing revives a cancelled job;
- counters (`progress`, `processed_seconds`, `attempts`) take the maximum;
- timestamps are the events' own `occurred_at`: `first_event_at` the minimum,
  `updated_at` the maximum; never the wall clock;
- where two events of one kind disagree, a fixed winner: the earliest upload, the highest
  started attempt, the latest failure and the latest completion (ties by event id);
- audio metadata fills from the upload whenever it arrives, so a `completed` that overtook
  its `uploaded` still ends in a complete job.
- a long job's plan (`transcription.chunked`, the earliest wins) sets its chunk count,
  language and decoded duration, which a later upload's probe or start does not replace;
  its chunks' results are merged by the store (`indexer.chunks`), which derives progress,
  the ETA (the furthest progress's estimate wins) and the completion from every chunk.

A cancel *request* is not a fact but a question put to the current state: `decide_cancel`
answers it once (a job that already finished is not cancelled) and its answer, the fact
`transcription.cancelled`, is what the rules above merge in any order.

One rule is not a merge: the first event that names the job's definition (its upload's
`job_fingerprint`: audio and options) fixes it, and an event naming another definition is
refused (`conflicting`) rather than merged, so a second upload that reuses a job id with
other audio can neither re-run nor overwrite the job.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any
from uuid import UUID, uuid5

from contracts import (
    AudioUploadedV1,
    TranscriptCompletedV1,
    TranscriptionCancelledV1,
    TranscriptionCancelRequestedV1,
    TranscriptionChunkedV1,
    TranscriptionChunkTranscribedV1,
    TranscriptionFailedV1,
    TranscriptionProgressV1,
    TranscriptionStartedV1,
)
from contracts.audio import job_fingerprint
from contracts.envelope import Event
from contracts.errors import ErrorCode


class JobStatus(StrEnum):
    """Where a job is in its life."""

    QUEUED = "queued"
    PROCESSING = "processing"
    FAILED = "failed"
    COMPLETED = "completed"
    CANCELLED = "cancelled"


_RANK = {
    JobStatus.QUEUED: 0,
    JobStatus.PROCESSING: 1,
    JobStatus.FAILED: 2,
    JobStatus.COMPLETED: 3,
    JobStatus.CANCELLED: 4,
}

FINISHED: frozenset[JobStatus] = frozenset(
    {JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED}
)
"""Terminal statuses: a cancel request changes none of them; retention erases them."""


@dataclass(frozen=True, slots=True)
class JobState:
    """One row of `jobs` (its generated `created_at` aside)."""

    tenant_id: str
    job_id: UUID
    status: JobStatus
    first_event_at: datetime
    updated_at: datetime
    progress: float = 0.0
    processed_seconds: float = 0.0
    attempts: int = 0
    correlation_id: UUID | None = None
    audio_uri: str | None = None
    sha256: str | None = None
    size_bytes: int | None = None
    content_type: str | None = None
    original_filename: str | None = None
    requested_language: str | None = None
    requested_model: str | None = None
    word_timestamps: bool | None = None
    uploaded_at: datetime | None = None
    worker: str | None = None
    started_attempt: int | None = None
    started_at: datetime | None = None
    model: str | None = None
    language: str | None = None
    language_probability: float | None = None
    duration_seconds: float | None = None
    processing_seconds: float | None = None
    completed_event_id: UUID | None = None
    completed_at: datetime | None = None
    error_code: str | None = None
    error_message: str | None = None
    error_retryable: bool | None = None
    failed_event_id: UUID | None = None
    failed_at: datetime | None = None
    cancelled_event_id: UUID | None = None
    cancelled_at: datetime | None = None
    job_fingerprint: str | None = None
    chunk_count: int | None = None
    chunked_at: datetime | None = None
    eta_seconds: float | None = None

    @property
    def chunked(self) -> bool:
        """A long job: its plan of chunks is known."""
        return self.chunked_at is not None

    @classmethod
    def columns(cls) -> tuple[str, ...]:
        """Column names, in field order (the `jobs` table's writable columns)."""
        return tuple(f.name for f in dataclasses.fields(cls))

    def values(self) -> tuple[Any, ...]:
        """Column values, in `columns()` order."""
        return tuple(
            str(v) if isinstance(v, JobStatus) else v
            for v in (getattr(self, name) for name in self.columns())
        )

    @classmethod
    def from_record(cls, record: Any) -> JobState:
        """Rebuild from a database record holding at least `columns()`."""
        values = {name: record[name] for name in cls.columns()}
        values["status"] = JobStatus(values["status"])
        return cls(**values)


def _status_for(event: Event) -> JobStatus:
    if isinstance(event, AudioUploadedV1):
        return JobStatus.QUEUED
    if isinstance(
        event,
        TranscriptionStartedV1
        | TranscriptionProgressV1
        | TranscriptionChunkedV1
        | TranscriptionChunkTranscribedV1,
    ):
        return JobStatus.PROCESSING
    if isinstance(event, TranscriptCompletedV1):
        return JobStatus.COMPLETED
    if isinstance(event, TranscriptionFailedV1):
        return JobStatus.FAILED
    if isinstance(event, TranscriptionCancelledV1):
        return JobStatus.CANCELLED
    raise TypeError(f"the job projection does not handle {type(event).__name__}")


def fingerprint_of(event: Event) -> str | None:
    """The job definition an event names, if it names one."""
    if isinstance(event, AudioUploadedV1):
        return event.job_fingerprint()
    return getattr(event, "job_fingerprint", None)


def definition(state: JobState) -> str | None:
    """The job's fixed definition; rows older than the column fall back to their upload."""
    if state.job_fingerprint is not None:
        return state.job_fingerprint
    if state.uploaded_at is None or state.audio_uri is None:
        return None
    return job_fingerprint(
        audio_uri=state.audio_uri,
        sha256=state.sha256,
        language=state.requested_language,
        model=state.requested_model,
        word_timestamps=bool(state.word_timestamps),
    )


def conflicting(state: JobState | None, event: Event) -> bool:
    """Whether `event` is about another definition of the job than the one it has."""
    if state is None:
        return False
    named = fingerprint_of(event)
    fixed = definition(state)
    return named is not None and fixed is not None and named != fixed


def _newer(at: datetime, event_id: UUID, than_at: datetime | None, than_id: UUID | None) -> bool:
    if than_at is None or than_id is None:
        return True
    return (at, event_id.int) > (than_at, than_id.int)


def apply_event(state: JobState | None, event: Event) -> JobState:
    """The job after `event`; `state` is None for a job not seen before."""
    status = _status_for(event)
    at = event.occurred_at
    if state is None:
        state = JobState(
            tenant_id=event.tenant_id,
            job_id=event.job_id,
            status=status,
            first_event_at=at,
            updated_at=at,
        )
    elif _RANK[status] > _RANK[state.status]:
        state = dataclasses.replace(state, status=status)
    state = dataclasses.replace(
        state,
        first_event_at=min(state.first_event_at, at),
        updated_at=max(state.updated_at, at),
    )
    if state.correlation_id is None and event.correlation_id is not None:
        state = dataclasses.replace(state, correlation_id=event.correlation_id)
    if state.job_fingerprint is None:
        state = dataclasses.replace(
            state, job_fingerprint=definition(state) or fingerprint_of(event)
        )

    if isinstance(event, AudioUploadedV1):
        return _on_uploaded(state, event)
    if isinstance(event, TranscriptionStartedV1):
        return _on_started(state, event)
    if isinstance(event, TranscriptionProgressV1):
        return _on_progress(state, event)
    if isinstance(event, TranscriptionChunkedV1):
        return _on_chunked(state, event)
    if isinstance(event, TranscriptionChunkTranscribedV1):
        # Its effect is on `job_chunks`: the store derives progress from every chunk done.
        return dataclasses.replace(state, attempts=max(state.attempts, event.attempt))
    if isinstance(event, TranscriptCompletedV1):
        return _on_completed(state, event)
    if isinstance(event, TranscriptionCancelledV1):
        return _on_cancelled(state, event)
    assert isinstance(event, TranscriptionFailedV1)
    return _on_failed(state, event)


def cancelled_event_id(request: TranscriptionCancelRequestedV1) -> UUID:
    """The id of the `transcription.cancelled` a request leads to: the same on every retry."""
    return uuid5(request.event_id, "transcription.cancelled.v1")


def decide_cancel(
    state: JobState | None,
    request: TranscriptionCancelRequestedV1,
    *,
    producer: str,
    now: datetime,
) -> TranscriptionCancelledV1 | None:
    """The fact a cancel request leads to, or None when the job already finished.

    A job not seen yet (the request overtook its upload) is cancelled too: its upload,
    arriving later, cannot revive it.
    """
    if state is not None and state.status in FINISHED:
        return None
    return TranscriptionCancelledV1(
        event_id=cancelled_event_id(request),
        occurred_at=max(now, request.occurred_at),
        job_id=request.job_id,
        tenant_id=request.tenant_id,
        correlation_id=request.correlation_id,
        producer=producer,
        request_event_id=request.event_id,
    )


def _on_cancelled(state: JobState, event: TranscriptionCancelledV1) -> JobState:
    earlier = _newer(
        state.cancelled_at or event.occurred_at,
        state.cancelled_event_id or event.event_id,
        event.occurred_at,
        event.event_id,
    )
    if state.cancelled_at is not None and not earlier:
        return state  # the earliest cancellation of a job describes it
    return dataclasses.replace(
        state, cancelled_event_id=event.event_id, cancelled_at=event.occurred_at
    )


def _on_progress(state: JobState, event: TranscriptionProgressV1) -> JobState:
    # The estimate of the furthest progress wins (the smaller of two at the same point).
    eta = state.eta_seconds
    if event.progress > state.progress:
        eta = event.eta_seconds
    elif event.progress == state.progress and event.eta_seconds is not None:
        eta = event.eta_seconds if eta is None else min(eta, event.eta_seconds)
    return dataclasses.replace(
        state,
        progress=max(state.progress, event.progress),
        processed_seconds=max(state.processed_seconds, event.processed_seconds),
        eta_seconds=None if state.status in FINISHED else eta,
    )


def _on_chunked(state: JobState, event: TranscriptionChunkedV1) -> JobState:
    """The plan of a long job: the earliest one describes it (a planner is deterministic)."""
    if state.chunked_at is not None and state.chunked_at <= event.occurred_at:
        return state
    state = dataclasses.replace(
        state,
        chunk_count=len(event.chunks),
        chunked_at=event.occurred_at,
        attempts=max(state.attempts, event.attempt),
    )
    if state.completed_event_id is not None:
        return state
    # The decoded duration and the language decided once for every chunk, shown from now.
    return dataclasses.replace(
        state,
        model=event.model,
        language=event.language,
        language_probability=event.language_probability,
        duration_seconds=event.duration_seconds,
    )


def _on_uploaded(state: JobState, event: AudioUploadedV1) -> JobState:
    if state.uploaded_at is not None and state.uploaded_at <= event.occurred_at:
        return state  # the earliest upload of a job describes it
    return dataclasses.replace(
        state,
        # The upload's correlation id is the request's: it wins over any other event's.
        correlation_id=event.correlation_id or state.correlation_id,
        audio_uri=str(event.audio_uri),
        sha256=event.sha256,
        size_bytes=event.size_bytes,
        content_type=event.content_type,
        original_filename=event.original_filename,
        requested_language=event.options.language,
        requested_model=event.options.model,
        word_timestamps=event.options.word_timestamps,
        uploaded_at=event.occurred_at,
        # The probe's duration stands in until the decoded duration of a plan or transcript.
        duration_seconds=(
            state.duration_seconds
            if state.completed_event_id is not None or state.chunked
            else event.duration_seconds
        ),
    )


def _on_started(state: JobState, event: TranscriptionStartedV1) -> JobState:
    state = dataclasses.replace(
        state,
        attempts=max(state.attempts, event.attempt),
        started_at=min(state.started_at, event.occurred_at)
        if state.started_at is not None
        else event.occurred_at,
    )
    if state.started_attempt is not None and event.attempt <= state.started_attempt:
        return state
    return dataclasses.replace(
        state,
        worker=event.worker,
        started_attempt=event.attempt,
        model=(
            state.model if state.completed_event_id is not None or state.chunked else event.model
        ),
    )


def _on_completed(state: JobState, event: TranscriptCompletedV1) -> JobState:
    state = dataclasses.replace(
        state,
        attempts=max(state.attempts, event.attempt),
        progress=1.0,
        processed_seconds=max(state.processed_seconds, event.duration_seconds),
        eta_seconds=None,
    )
    if not _newer(event.occurred_at, event.event_id, state.completed_at, state.completed_event_id):
        return state
    return dataclasses.replace(
        state,
        model=event.model,
        language=event.language,
        language_probability=event.language_probability,
        duration_seconds=event.duration_seconds,
        processing_seconds=event.processing_seconds,
        completed_event_id=event.event_id,
        completed_at=event.occurred_at,
    )


def _failure_prevails(state: JobState, event: TranscriptionFailedV1) -> bool:
    """Whether `event` is the failure the job shows rather than the one it has.

    A permanent failure (`retryable` false) beats a retryable one. Of two permanent ones
    the latest wins (a replayed job that fails again ends then, and retention counts from
    then), except that `source_not_found` never displaces another cause: once a long job
    has failed, the indexer erases its chunks, and a chunk still queued then fails later
    for want of its audio, which must not hide why the job failed. Of two retryable ones
    the latest wins. A total order on the events, so the arrival order never matters.
    """
    if state.failed_at is None or state.failed_event_id is None:
        return True
    if state.error_retryable is False:
        if event.retryable:
            return False
        gone = ErrorCode.SOURCE_NOT_FOUND.value
        if (event.code == gone) != (state.error_code == gone):
            return state.error_code == gone  # the real cause over the erased audio
        return _newer(event.occurred_at, event.event_id, state.failed_at, state.failed_event_id)
    if not event.retryable:
        return True
    return _newer(event.occurred_at, event.event_id, state.failed_at, state.failed_event_id)


def _on_failed(state: JobState, event: TranscriptionFailedV1) -> JobState:
    state = dataclasses.replace(state, attempts=max(state.attempts, event.attempts))
    if not _failure_prevails(state, event):
        return state
    return dataclasses.replace(
        state,
        error_code=str(event.code),
        error_message=event.message,
        error_retryable=event.retryable,
        failed_event_id=event.event_id,
        failed_at=event.occurred_at,
    )
