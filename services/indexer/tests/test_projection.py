"""The job projection is idempotent and order-independent (pure, no database)."""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable
from datetime import timedelta
from uuid import uuid4

import pytest

from contracts import TranscriptionCancelledV1
from contracts.envelope import Event
from contracts.errors import ErrorCode
from indexer.projection import JobState, JobStatus, apply_event, decide_cancel
from services.indexer.tests import job_events as ev


def fold(events: list[Event]) -> JobState:
    state: JobState | None = None
    for event in events:
        state = apply_event(state, event)
    assert state is not None
    return state


def test_in_order_completed_job_has_everything_a_user_asks_about() -> None:
    events = ev.completed_job()
    job = fold(events)
    assert job.status is JobStatus.COMPLETED
    assert job.progress == 1.0
    assert job.attempts == 2
    assert job.worker == "worker-2"
    assert job.model == "tiny.en"
    assert job.language == "en"
    assert job.duration_seconds == 11.02  # the transcript's decoded length beats the probe
    assert job.original_filename == "standup.wav"
    assert job.uploaded_at == events[0].occurred_at
    assert job.completed_at == events[-1].occurred_at
    assert job.updated_at == events[-1].occurred_at
    assert job.error_code is None


@pytest.mark.parametrize("make", [ev.completed_job, ev.failed_job])
def test_every_arrival_order_and_duplication_ends_in_the_same_job(
    make: Callable[[], list[Event]],
) -> None:
    events = make()
    expected = fold(events)
    rng = random.Random(5)
    orders: list[list[Event]] = (
        [list(p) for p in itertools.permutations(events)] if len(events) <= 6 else []
    )
    orders += [rng.sample(events, len(events)) for _ in range(500)]
    for order in orders:
        duplicated = list(order) + rng.sample(events, 3)
        rng.shuffle(duplicated)
        assert fold(list(order)) == expected
        assert fold(duplicated) == expected


def test_late_started_or_progress_never_demotes_a_finished_job() -> None:
    job = uuid4()
    done = fold([ev.uploaded(job), ev.completed(job)])
    late = fold(
        [ev.uploaded(job), ev.completed(job), ev.started(job, at=20), ev.progress(job, 0.1)]
    )
    assert late.status is JobStatus.COMPLETED
    assert late.progress == 1.0
    assert late.model == done.model
    failed = fold([ev.uploaded(job), ev.failed(job), ev.started(job, at=20)])
    assert failed.status is JobStatus.FAILED
    assert failed.error_code == "corrupt_audio"


def test_completed_before_uploaded_still_yields_a_complete_job() -> None:
    job = uuid4()
    uploaded, completed = ev.uploaded(job), ev.completed(job)
    only_completed = fold([completed])
    assert only_completed.status is JobStatus.COMPLETED
    assert only_completed.audio_uri is None
    both = fold([completed, uploaded])
    assert both.status is JobStatus.COMPLETED
    assert both.audio_uri == "file:///media/ab/cd/abcd.wav"
    assert both.sha256 == "ab" * 32
    assert both.duration_seconds == 11.02
    assert both == fold([uploaded, completed])


def test_a_transcript_beats_an_earlier_failure_whatever_the_order() -> None:
    job = uuid4()
    events: list[Event] = [ev.uploaded(job), ev.failed(job, at=5), ev.completed(job, at=30)]
    for order in itertools.permutations(events):
        assert fold(list(order)).status is JobStatus.COMPLETED


def test_a_cause_is_never_hidden_by_the_erased_chunks_source_not_found() -> None:
    job = uuid4()
    cause = ev.failed(job, at=5)  # corrupt_audio, permanent
    # After it the job's chunks are erased: a chunk still queued then cannot find its audio.
    gone = cause.model_copy(
        update={
            "event_id": uuid4(),
            "occurred_at": ev.T0 + timedelta(seconds=8),
            "code": ErrorCode.SOURCE_NOT_FOUND,
            "message": "no regular file",
        }
    )
    dead = cause.model_copy(
        update={
            "event_id": uuid4(),
            "occurred_at": ev.T0 + timedelta(seconds=9),
            "code": ErrorCode.DEAD_LETTERED,
            "retryable": True,
        }
    )
    events: list[Event] = [ev.uploaded(job), cause, gone, dead]
    for order in itertools.permutations(events):
        state = fold(list(order))
        assert (state.status, state.error_code, state.error_retryable) == (
            JobStatus.FAILED,
            "corrupt_audio",
            False,
        )
    # A replayed job failing again for a real cause later: that later failure is shown.
    again = cause.model_copy(update={"event_id": uuid4(), "occurred_at": ev.T0 + timedelta(days=2)})
    for order in itertools.permutations([ev.uploaded(job), cause, gone, again]):
        assert fold(list(order)).failed_event_id == again.event_id
    # Retryable failures alone: the latest is shown, as before.
    earlier = dead.model_copy(update={"event_id": uuid4(), "occurred_at": ev.T0})
    for order in itertools.permutations([ev.uploaded(job), earlier, dead]):
        assert fold(list(order)).failed_event_id == dead.event_id
    # A permanent failure beats a later retryable one.
    assert fold([ev.uploaded(job), earlier, cause]).error_code == "corrupt_audio"


def _cancelled(events: list[Event]) -> TranscriptionCancelledV1:
    """The fact a cancel request leads to, decided against the job after `events`."""
    job_id = events[0].job_id
    state = fold(events) if events else None
    fact = decide_cancel(
        state, ev.cancel_requested(job_id), producer="scribe-indexer/test", now=ev.T0
    )
    assert fact is not None
    return fact


def test_a_queued_or_running_job_is_cancelled_and_nothing_late_revives_it() -> None:
    job_id = uuid4()
    head = [ev.uploaded(job_id), ev.started(job_id)]
    cancelled = _cancelled(head)
    late = [
        ev.progress(job_id, 0.9),
        ev.completed(job_id),
        ev.failed(job_id),
        ev.started(job_id, 2),
    ]
    for order in itertools.permutations([cancelled, *late]):
        job = fold([*head, *order])
        assert job.status is JobStatus.CANCELLED
        assert job.cancelled_event_id == cancelled.event_id


def test_a_cancel_request_changes_no_finished_job() -> None:
    for events in (ev.completed_job(), ev.failed_job()):
        request = ev.cancel_requested(events[0].job_id, at=60.0)
        assert decide_cancel(fold(events), request, producer="p", now=ev.T0) is None


def test_a_cancel_that_overtakes_the_upload_still_ends_cancelled() -> None:
    job_id = uuid4()
    request = ev.cancel_requested(job_id)
    cancelled = decide_cancel(None, request, producer="p", now=ev.T0)
    again = decide_cancel(None, request, producer="p", now=ev.T0)
    assert cancelled is not None
    assert again is not None
    assert cancelled.event_id == again.event_id, "a retried request announces the same event"
    job = fold([cancelled, ev.uploaded(job_id), ev.started(job_id)])
    assert job.status is JobStatus.CANCELLED
    assert job.original_filename == "standup.wav", "the upload still describes the job"


def test_a_plan_shows_the_decided_language_and_decoded_duration_in_any_order() -> None:
    job = uuid4()
    upload, start, plan = ev.uploaded(job), ev.started(job), ev.plan(job, count=4)
    for order in itertools.permutations([upload, start, plan]):
        state = fold(list(order))
        assert state.status is JobStatus.PROCESSING
        assert (state.chunk_count, state.chunked_at) == (4, plan.occurred_at)
        assert state.duration_seconds == 240.0  # the plan's, not the upload's probe (11 s)
        assert (state.language, state.language_probability) == ("en", 0.98)


def test_the_eta_is_the_furthest_progresss_and_none_once_finished() -> None:
    job = uuid4()
    ahead = ev.progress(job, 0.5).model_copy(update={"eta_seconds": 30.0, "event_id": uuid4()})
    behind = ev.progress(job, 0.25).model_copy(update={"eta_seconds": 90.0, "event_id": uuid4()})
    for order in ([ahead, behind], [behind, ahead]):
        assert fold([ev.uploaded(job), *order]).eta_seconds == 30.0
    assert fold([ev.uploaded(job), ahead, ev.completed(job)]).eta_seconds is None
    assert fold([ev.uploaded(job), ev.completed(job), ahead]).eta_seconds is None
