"""The indexer's handler with fakes at the ports: tenants, retries, dead letters."""

from __future__ import annotations

from pathlib import Path
from uuid import UUID, uuid4

import pytest
from prometheus_client import REGISTRY

from contracts.envelope import Event
from indexer.handlers import (
    MEDIA_NOT_ERASABLE,
    UNKNOWN_TENANT,
    JobEventIndexer,
    RetryPolicy,
    with_retries,
)
from indexer.media import LocalMediaEraser
from indexer.projection import JobStatus, decide_cancel
from indexer.store import Applied
from scribe_runtime.amqp import Delivery
from scribe_runtime.retry import TransientError
from services.indexer.tests import job_events as ev


class FakeStore:
    def __init__(self, failures: list[BaseException] | None = None) -> None:
        self.applied: list[Event] = []
        self.failures = failures or []

    async def apply(self, event: Event) -> Applied:
        if self.failures:
            raise self.failures.pop(0)
        duplicate = event in self.applied
        self.applied.append(event)
        return Applied(duplicate=duplicate, status=JobStatus.QUEUED)

    async def media_of(self, tenant_id: str, job_id: UUID) -> str | None:
        return None


class FakeTenants:
    def __init__(self, *known: str) -> None:
        self.known = set(known)

    async def is_known(self, tenant_id: str) -> bool:
        return tenant_id in self.known


class FakeDeadLetter:
    def __init__(self) -> None:
        self.letters: list[tuple[Delivery, str, str]] = []

    async def __call__(self, delivery: Delivery, *, code: str, reason: str) -> None:
        self.letters.append((delivery, code, reason))


NO_WAIT = RetryPolicy(attempts=3, first_delay=0.0)


async def test_unknown_tenant_is_dead_lettered_and_never_stored() -> None:
    store, dead = FakeStore(), FakeDeadLetter()
    indexer = JobEventIndexer(store, FakeTenants("default"), dead, NO_WAIT)
    message = Delivery(body=b"{}")
    await indexer.on_job_event(ev.uploaded(uuid4(), tenant="mallory"), message)
    assert store.applied == []
    assert len(dead.letters) == 1
    assert dead.letters[0][0] is message
    assert dead.letters[0][1] == UNKNOWN_TENANT
    assert "mallory" in dead.letters[0][2]


async def test_known_tenant_is_projected() -> None:
    store, dead = FakeStore(), FakeDeadLetter()
    indexer = JobEventIndexer(store, FakeTenants("default"), dead, NO_WAIT)
    event = ev.uploaded(uuid4())
    await indexer.on_job_event(event, Delivery(body=b"{}"))
    assert store.applied == [event]
    assert dead.letters == []


async def test_database_outage_is_retried_with_backoff_then_succeeds() -> None:
    store = FakeStore([ConnectionRefusedError(), ConnectionResetError()])
    indexer = JobEventIndexer(store, FakeTenants("default"), FakeDeadLetter(), NO_WAIT)
    event = ev.uploaded(uuid4())
    await indexer.on_job_event(event, Delivery(body=b"{}"))
    assert store.applied == [event]


async def test_outage_longer_than_the_retries_hands_the_event_to_the_retry_stages() -> None:
    store = FakeStore([ConnectionRefusedError()] * 3)
    indexer = JobEventIndexer(store, FakeTenants("default"), FakeDeadLetter(), NO_WAIT)
    with pytest.raises(TransientError, match="database unavailable after 3 tries") as caught:
        await indexer.on_job_event(ev.uploaded(uuid4()), Delivery(body=b"{}"))
    assert isinstance(caught.value.__cause__, ConnectionRefusedError)
    assert store.applied == []


async def test_a_bug_is_not_retried() -> None:
    store = FakeStore([ValueError("bad")])
    slept: list[float] = []

    async def sleep(delay: float) -> None:
        slept.append(delay)

    with pytest.raises(ValueError, match="bad"):
        await with_retries(lambda: store.apply(ev.uploaded(uuid4())), RetryPolicy(), sleep)
    assert slept == []


def test_backoff_grows_and_is_capped() -> None:
    assert RetryPolicy(attempts=6, first_delay=0.5, max_delay=3.0).delays() == [
        0.5,
        1.0,
        2.0,
        3.0,
        3.0,
    ]


class S3Store(FakeStore):
    async def media_of(self, tenant_id: str, job_id: UUID) -> str | None:
        return "s3://bucket/default/ab/abcd"


async def test_a_delete_whose_media_cannot_be_erased_is_dead_lettered_not_reported_done(
    tmp_path: Path,
) -> None:
    store, dead, announced = S3Store(), FakeDeadLetter(), []

    async def publish(event: Event) -> None:
        announced.append(event)

    indexer = JobEventIndexer(
        store,
        FakeTenants("default"),
        dead,
        NO_WAIT,
        publish=publish,
        media=LocalMediaEraser(tmp_path),
    )
    await indexer.on_job_event(ev.delete_requested(uuid4()), Delivery(body=b"{}"))
    assert [code for _, code, _ in dead.letters] == [MEDIA_NOT_ERASABLE]
    assert store.applied == [], "no tombstone while the media is still there"
    assert announced == []


class CancellingStore(FakeStore):
    async def apply(self, event: Event) -> Applied:
        self.applied.append(event)
        cancelled = decide_cancel(None, event, producer="p", now=ev.T0)  # type: ignore[arg-type]
        return Applied(duplicate=False, status=JobStatus.CANCELLED, announce=cancelled)


async def test_an_applied_cancel_is_announced_and_counted_as_an_outcome() -> None:
    announced: list[Event] = []

    async def publish(event: Event) -> None:
        announced.append(event)

    def cancelled_count() -> float:
        value = REGISTRY.get_sample_value(
            "scribe_indexer_job_outcomes_total", {"outcome": "cancelled", "code": ""}
        )
        return value or 0.0

    before = cancelled_count()
    indexer = JobEventIndexer(
        CancellingStore(), FakeTenants("default"), FakeDeadLetter(), NO_WAIT, publish=publish
    )
    await indexer.on_job_event(ev.cancel_requested(uuid4()), Delivery(body=b"{}"))
    assert [e.message_type for e in announced] == ["transcription.cancelled.v1"]
    assert cancelled_count() == before + 1


class FinishingStore(FakeStore):
    """Says each event finished a long job whose chunk audio can go."""

    async def apply(self, event: Event) -> Applied:
        self.applied.append(event)
        return Applied(duplicate=False, status=JobStatus.COMPLETED, chunk_audio_spent=True)


class BrokenEraser(LocalMediaEraser):
    async def delete_chunks(self, tenant_id: str, job_id: UUID) -> None:
        raise OSError("the object store said no")


async def test_a_finished_jobs_chunks_are_erased_and_a_failure_to_is_only_logged(
    tmp_path: Path,
) -> None:
    job = uuid4()
    chunks = tmp_path / "default" / "chunks" / str(job)
    chunks.mkdir(parents=True)
    (chunks / "0000.wav").write_bytes(b"RIFF")
    event = ev.completed(job)
    erasing = JobEventIndexer(
        FinishingStore(),
        FakeTenants("default"),
        FakeDeadLetter(),
        NO_WAIT,
        media=LocalMediaEraser(tmp_path),
    )
    await erasing.on_job_event(event, Delivery(body=b"{}"))
    assert not chunks.exists()

    chunks.mkdir(parents=True)
    store = FinishingStore()
    broken = JobEventIndexer(
        store, FakeTenants("default"), FakeDeadLetter(), NO_WAIT, media=BrokenEraser(tmp_path)
    )
    await broken.on_job_event(event, Delivery(body=b"{}"))  # returns: the message is acked
    assert store.applied == [event]
    assert chunks.exists()
