"""The gate in front of the model: unknown tenants, conflicting re-uploads, confirmed outcomes."""

from __future__ import annotations

from contracts.audio import AudioUploadedV1, TranscriptionOptions
from contracts.transcription import TranscriptCompletedV1
from services.transcriber.tests.fakes import (
    DeadLetters,
    FakeEngine,
    FakeSource,
    Recorder,
    delivery_of,
    upload,
)
from transcriber.admission import Admission
from transcriber.service import Transcriber


def make(remember: int = 100) -> tuple[Transcriber, FakeEngine, Recorder, DeadLetters]:
    engine, publish, letters = FakeEngine(), Recorder(), DeadLetters()
    service = Transcriber(
        engine=engine,
        source=FakeSource(),
        publish=publish,
        admission=Admission(("acme", "globex"), remember=remember),
        dead_letter=letters,
        worker="worker-1",
        producer="scribe-transcriber/test",
    )
    return service, engine, publish, letters


def again(event: AudioUploadedV1, **changes: object) -> AudioUploadedV1:
    """Another upload of the same job: a new event id, optionally other audio or options."""
    data = event.model_dump(exclude={"event_id", "occurred_at"}) | changes
    return AudioUploadedV1.model_validate(data)


async def test_an_unknown_tenant_is_dead_lettered_without_work_or_events() -> None:
    service, engine, publish, letters = make()
    event = again(upload(), tenant_id="mallory")
    await service.on_audio_uploaded(event, delivery_of(event))
    assert letters.codes == ["unknown_tenant"]
    assert engine.requests == []
    assert publish.events == []


async def test_a_conflicting_reupload_of_a_completed_job_is_refused() -> None:
    service, engine, publish, letters = make()
    first = upload()
    await service.on_audio_uploaded(first, delivery_of(first))
    assert len(publish.of(TranscriptCompletedV1)) == 1
    published = len(publish.events)
    conflicts = [
        again(first, audio_uri="file:///media/acme/other.wav"),
        again(first, sha256="ab" * 32),
        again(first, options=TranscriptionOptions(language="fr")),
        again(first, options=TranscriptionOptions(word_timestamps=True)),
    ]
    for conflict in conflicts:
        await service.on_audio_uploaded(conflict, delivery_of(conflict))
    assert letters.codes == ["conflicting_job"] * len(conflicts)
    assert len(engine.requests) == 1
    assert len(publish.events) == published


async def test_the_same_job_id_of_another_tenant_is_another_job() -> None:
    service, _engine, publish, letters = make()
    first = upload()
    theirs = again(first, tenant_id="globex", audio_uri="file:///media/globex/x.wav")
    for event in (first, theirs):
        await service.on_audio_uploaded(event, delivery_of(event))
    assert letters.codes == []
    completions = publish.of(TranscriptCompletedV1)
    assert [e.tenant_id for e in completions] == ["acme", "globex"]
    assert len({e.event_id for e in completions}) == 2


async def test_a_redelivered_job_whose_outcome_was_confirmed_is_not_transcribed_again() -> None:
    service, engine, publish, letters = make()
    first = upload()
    await service.on_audio_uploaded(first, delivery_of(first))
    published = len(publish.events)
    await service.on_audio_uploaded(first, delivery_of(first, redelivered=True))
    await service.on_audio_uploaded(again(first), delivery_of(again(first)))
    assert len(engine.requests) == 1
    assert len(publish.events) == published
    assert letters.codes == []


async def test_every_upload_of_a_job_gets_the_same_completion_id() -> None:
    """Two workers that each take an upload of one job publish one completion, twice."""
    first = upload()
    ids = set()
    for event in (first, again(first)):
        service, _engine, publish, _letters = make()  # separate processes: no shared memory
        await service.on_audio_uploaded(event, delivery_of(event))
        ids |= {e.event_id for e in publish.of(TranscriptCompletedV1)}
    assert len(ids) == 1


async def test_the_memory_is_bounded() -> None:
    service, engine, _publish, _letters = make(remember=2)
    jobs = [upload() for _ in range(3)]
    for event in jobs:
        await service.on_audio_uploaded(event, delivery_of(event))
    await service.on_audio_uploaded(jobs[0], delivery_of(jobs[0], redelivered=True))
    assert len(engine.requests) == 4  # the oldest was forgotten: transcribed again
    await service.on_audio_uploaded(jobs[2], delivery_of(jobs[2], redelivered=True))
    assert len(engine.requests) == 4
