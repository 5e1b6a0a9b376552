"""A long job at the transcriber's ports: split by the planner, chunks by any worker.

Real files and the real chunk store; a fake engine stands in for the model.
"""

from __future__ import annotations

import threading
import wave
from collections.abc import Callable
from pathlib import Path
from uuid import UUID, uuid4

import numpy as np
import pytest

from contracts.audio import AudioUploadedV1, TranscriptionOptions
from contracts.chunks import (
    ChunkSpec,
    TranscriptionChunkedV1,
    TranscriptionChunkRequestedV1,
    TranscriptionChunkTranscribedV1,
    assemble_segments,
)
from contracts.envelope import Event
from contracts.errors import ErrorCode
from contracts.transcription import (
    Segment,
    TranscriptCompletedV1,
    TranscriptionFailedV1,
    TranscriptionStartedV1,
    Word,
)
from scribe_runtime.amqp import Delivery
from scribe_runtime.cancellations import FilesystemCancelMarks
from services.transcriber.tests.fakes import DeadLetters, FakeEngine, Recorder
from transcriber.admission import Admission
from transcriber.audio import SAMPLE_RATE
from transcriber.chunk_store import FileChunkStore
from transcriber.chunking import ChunkPolicy, ChunkSink, ChunkWriter, Samples
from transcriber.long_audio import LongAudio, keep_owned
from transcriber.service import Transcriber
from transcriber.sources import FileSource

POLICY = ChunkPolicy(chunk_seconds=30.0, search_seconds=8.0, overlap_seconds=2.0)


def noise_wav(path: Path, seconds: float) -> Path:
    rng = np.random.default_rng(3)
    samples = (rng.standard_normal(int(seconds * SAMPLE_RATE)) * 2000).astype("<i2")
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(SAMPLE_RATE)
        out.writeframes(samples.tobytes())
    return path


def service(
    media: Path,
    engine: FakeEngine,
    recorder: Recorder,
    *,
    threshold: float = 20.0,
    after_work: Callable[[], object] | None = None,
    **kw: float,
) -> Transcriber:
    return Transcriber(
        engine=engine,
        source=FileSource(media),
        publish=recorder,
        admission=Admission(["acme"]),
        dead_letter=DeadLetters(),
        worker="w1",
        producer="test",
        marks=FilesystemCancelMarks(media),
        long_audio=LongAudio(
            store=FileChunkStore(media),
            threshold_seconds=threshold,
            max_duration_seconds=kw.get("max_duration", 36000.0),
            policy=POLICY,
        ),
        after_work=after_work,
    )


def upload_of(path: Path, **options: object) -> AudioUploadedV1:
    return AudioUploadedV1(
        job_id=uuid4(),
        tenant_id="acme",
        producer="test",
        audio_uri=path.resolve().as_uri(),  # type: ignore[arg-type]
        options=TranscriptionOptions.model_validate(options),
    )


def delivery(event: AudioUploadedV1 | TranscriptionChunkRequestedV1, **kw: bool) -> Delivery:
    return Delivery(
        body=event.model_dump_json().encode(),
        message_id=str(event.event_id),
        type=event.message_type,
        redelivered=kw.get("redelivered", False),
    )


def timeless(events: list[Event]) -> list[dict[str, object]]:
    """What an event says, but when and on which delivery (stamped anew on each)."""
    return [e.model_dump(exclude={"occurred_at", "attempt"}) for e in events]


async def test_a_long_upload_is_planned_into_work_items_then_the_plan(tmp_path: Path) -> None:
    media = tmp_path / "media"
    path = noise_wav(media / "acme" / "long.wav", 70)
    recorder = Recorder()
    job = upload_of(path)
    await service(media, FakeEngine(), recorder).on_audio_uploaded(job, delivery(job))

    kinds = [type(e) for e in recorder.events if not isinstance(e, TranscriptionStartedV1)]
    items = recorder.of(TranscriptionChunkRequestedV1)
    assert kinds == [TranscriptionChunkRequestedV1] * len(items) + [TranscriptionChunkedV1]
    assert len(recorder.of(TranscriptionStartedV1)) == 1
    assert not recorder.of(TranscriptCompletedV1)
    plan = recorder.of(TranscriptionChunkedV1)[0]
    assert isinstance(plan, TranscriptionChunkedV1)
    assert len(plan.chunks) == len(items) >= 3
    assert plan.duration_seconds == pytest.approx(70.0)
    assert plan.chunks[-1].core_end == pytest.approx(70.0)
    assert all(isinstance(i, TranscriptionChunkRequestedV1) for i in items)
    assert {i.chunk.index for i in items} == set(range(len(items)))  # type: ignore[attr-defined]

    # A redelivery (on a worker that never saw it) publishes the very same plan, and no
    # work item again: the store marks each one the broker confirmed.
    again = Recorder()
    await service(media, FakeEngine(), again).on_audio_uploaded(
        job, delivery(job, redelivered=True)
    )
    assert not again.of(TranscriptionChunkRequestedV1)
    assert timeless(again.of(TranscriptionChunkedV1)) == timeless([plan])

    # The planner killed after handing out the first chunk: the redelivered upload hands
    # out the others, equal to what an unbroken split handed out.
    chunk_dir = media / "acme" / "chunks" / str(job.job_id)
    for index in range(1, len(items)):
        (chunk_dir / f"{index:04d}.published").unlink()
    resumed = Recorder()
    await service(media, FakeEngine(), resumed).on_audio_uploaded(
        job, delivery(job, redelivered=True)
    )
    assert timeless(resumed.of(TranscriptionChunkRequestedV1)) == timeless(items[1:])
    assert timeless(resumed.of(TranscriptionChunkedV1)) == timeless([plan])


class HeldStore(FileChunkStore):
    """Chunk 1 and later are not finished until chunk 0's work item is on the broker."""

    def __init__(self, media: Path, first_out: threading.Event) -> None:
        super().__init__(media)
        self.first_out = first_out
        self.late: list[int] = []

    def sink(self, tenant_id: str, job_id: UUID) -> ChunkSink:
        inner = super().sink(tenant_id, job_id)
        store = self

        class Sink:
            def open(self, index: int) -> ChunkWriter:
                writer = inner.open(index)
                if index == 0:
                    return writer

                class Held:
                    def write(self, samples: Samples) -> None:
                        writer.write(samples)

                    def close(self) -> str:
                        if not store.first_out.wait(timeout=5):
                            store.late.append(index)
                        return writer.close()

                return Held()

            def is_published(self, index: int) -> bool:
                return inner.is_published(index)

            def mark_published(self, index: int) -> None:
                inner.mark_published(index)

        return Sink()


class FirstItemRecorder(Recorder):
    def __init__(self) -> None:
        super().__init__()
        self.first_out = threading.Event()

    async def __call__(self, event: Event) -> None:
        await super().__call__(event)
        if isinstance(event, TranscriptionChunkRequestedV1) and event.chunk.index == 0:
            self.first_out.set()


async def test_a_chunks_work_item_goes_out_while_the_planner_still_splits(
    tmp_path: Path,
) -> None:
    media = tmp_path / "media"
    path = noise_wav(media / "acme" / "long.wav", 70)
    recorder = FirstItemRecorder()
    store = HeldStore(media, recorder.first_out)
    planner = Transcriber(
        engine=FakeEngine(),
        source=FileSource(media),
        publish=recorder,
        admission=Admission(["acme"]),
        dead_letter=DeadLetters(),
        worker="w1",
        producer="test",
        long_audio=LongAudio(store=store, threshold_seconds=20.0, policy=POLICY),
    )
    # The language given: nothing to wait for (else the items wait for the first speech).
    job = upload_of(path, language="en")
    await planner.on_audio_uploaded(job, delivery(job))
    (plan,) = recorder.of(TranscriptionChunkedV1)
    assert isinstance(plan, TranscriptionChunkedV1)
    assert len(plan.chunks) >= 3
    assert store.late == [], "chunk 0's work item was out before chunk 1 was written"
    items = recorder.of(TranscriptionChunkRequestedV1)
    assert [i.chunk for i in items] == plan.chunks  # type: ignore[attr-defined]
    assert [i.chunk_count for i in items][-1] == len(plan.chunks)  # type: ignore[attr-defined]
    assert all(i.chunk_count > i.chunk.index for i in items)  # type: ignore[attr-defined]


async def test_a_short_upload_keeps_its_one_step_path(tmp_path: Path) -> None:
    media = tmp_path / "media"
    path = noise_wav(media / "acme" / "short.wav", 10)
    recorder = Recorder()
    job = upload_of(path)
    await service(media, FakeEngine(), recorder).on_audio_uploaded(job, delivery(job))
    assert len(recorder.of(TranscriptCompletedV1)) == 1
    assert not recorder.of(TranscriptionChunkedV1)


async def test_an_external_upload_over_the_limit_fails_before_any_work(tmp_path: Path) -> None:
    media = tmp_path / "media"
    path = noise_wav(media / "acme" / "long.wav", 40)
    recorder = Recorder()
    engine = FakeEngine()
    job = upload_of(path)
    await service(media, engine, recorder, max_duration=30.0).on_audio_uploaded(job, delivery(job))
    failed = recorder.of(TranscriptionFailedV1)
    assert [f.code for f in failed] == [ErrorCode.AUDIO_TOO_LONG]  # type: ignore[attr-defined]
    assert not engine.requests
    assert not (media / "acme" / "chunks").exists()


async def test_chunks_are_transcribed_in_absolute_time_and_assemble(tmp_path: Path) -> None:
    media = tmp_path / "media"
    path = noise_wav(media / "acme" / "long.wav", 70)
    planner = Recorder()
    job = upload_of(path, word_timestamps=True)
    await service(media, FakeEngine(), planner).on_audio_uploaded(job, delivery(job))
    items = [e for e in planner.events if isinstance(e, TranscriptionChunkRequestedV1)]

    results = Recorder()
    worker = service(media, FakeEngine(segments=4, duration=10.0), results)
    for item in reversed(items):  # any order
        await worker.on_chunk_requested(item, delivery(item))
    done = [e for e in results.events if isinstance(e, TranscriptionChunkTranscribedV1)]
    assert sorted(r.chunk_index for r in done) == list(range(len(items)))
    for result, item in zip(sorted(done, key=lambda r: r.chunk_index), items, strict=True):
        assert result.event_id != item.event_id
        for segment in result.segments:
            assert item.chunk.start <= segment.start <= segment.end <= item.chunk.end
    segments = assemble_segments(done)
    assert [s.id for s in segments] == list(range(len(segments)))
    starts = [s.start for s in segments]
    assert starts == sorted(starts)
    assert segments[-1].start > 50

    # The same chunk again on a fresh worker: an equal result with the same event id.
    again = Recorder()
    await service(media, FakeEngine(segments=4, duration=10.0), again).on_chunk_requested(
        items[1], delivery(items[1], redelivered=True)
    )
    first = next(r for r in done if r.chunk_index == 1)
    second = again.of(TranscriptionChunkTranscribedV1)[0]
    assert isinstance(second, TranscriptionChunkTranscribedV1)
    assert second.event_id == first.event_id
    assert second.segments == first.segments


async def test_the_memory_of_each_step_of_a_job_is_handed_back_off_the_loop(
    tmp_path: Path,
) -> None:
    # What the worker wires to `malloc_trim`: once a one-step job, a split or a chunk has
    # done its blocking work, on that work's thread (a trim can take milliseconds).
    media = tmp_path / "media"
    threads: list[str] = []

    def after() -> None:
        threads.append(threading.current_thread().name)

    short = upload_of(noise_wav(media / "acme" / "short.wav", 10))
    planner = Recorder()
    long = upload_of(noise_wav(media / "acme" / "long.wav", 70))
    worker = service(media, FakeEngine(), planner, after_work=after)
    await worker.on_audio_uploaded(short, delivery(short))
    await worker.on_audio_uploaded(long, delivery(long))
    items = planner.of(TranscriptionChunkRequestedV1)
    for item in items:
        assert isinstance(item, TranscriptionChunkRequestedV1)
        await worker.on_chunk_requested(item, delivery(item))

    assert len(planner.of(TranscriptionChunkTranscribedV1)) == len(items) >= 3
    assert [name.split("-")[0] for name in threads] == ["inference", "split"] + ["chunk"] * len(
        items
    )
    assert threading.current_thread().name not in threads


async def test_a_cancelled_jobs_chunks_do_no_work(tmp_path: Path) -> None:
    media = tmp_path / "media"
    path = noise_wav(media / "acme" / "long.wav", 70)
    planner = Recorder()
    job = upload_of(path)
    await service(media, FakeEngine(), planner).on_audio_uploaded(job, delivery(job))
    items = [e for e in planner.events if isinstance(e, TranscriptionChunkRequestedV1)]
    engine = FakeEngine()
    results = Recorder()
    worker = service(media, engine, results)
    await worker.on_chunk_requested(items[0], delivery(items[0]))
    await FilesystemCancelMarks(media).mark("acme", job.job_id)
    for item in items[1:]:
        await worker.on_chunk_requested(item, delivery(item))
    assert len(engine.requests) == 1
    assert len(results.of(TranscriptionChunkTranscribedV1)) == 1


def chunk(start: float, end: float, core_start: float, core_end: float) -> ChunkSpec:
    return ChunkSpec(
        index=1,
        start=start,
        end=end,
        core_start=core_start,
        core_end=core_end,
        audio_uri="file:///m/acme/chunks/j/0001.wav",  # type: ignore[arg-type]
    )


def seg(i: int, words: list[tuple[str, float, float]]) -> Segment:
    return Segment(
        id=i,
        start=words[0][1],
        end=words[-1][2],
        text="".join(w for w, _, _ in words).strip(),
        words=[Word(word=w, start=s, end=e, probability=0.9) for w, s, e in words],
    )


def test_each_word_of_an_overlap_is_kept_by_one_chunk_only() -> None:
    # The original: words every 0.5 s; a hard cut at 100 s, 1 s of overlap each side.
    said = [(f" w{i}", 96 + i * 0.5, 96 + i * 0.5 + 0.4) for i in range(16)]  # 96..104 s
    left = chunk(0.0, 101.0, 0.0, 100.0)
    right = chunk(99.0, 200.0, 100.0, 200.0)

    def heard_by(c: ChunkSpec) -> list[Segment]:
        # What each chunk's engine returns: the words in its audio, in chunk-local time.
        local = [(w, s - c.start, e - c.start) for w, s, e in said if s >= c.start and e <= c.end]
        return [seg(0, local)]

    kept = keep_owned(heard_by(left), left, words=True) + keep_owned(
        heard_by(right), right, words=False
    )
    words = [w.word for w in kept[0].words or []] + kept[1].text.split()
    assert [w.strip() for w in words] == [w.strip() for w, _, _ in said]
    assert kept[0].end <= 100.5
    assert kept[1].start >= 99.5
    assert kept[1].words is None  # the job did not ask for words


@pytest.mark.slow
async def test_a_three_hour_file_is_planned_and_every_chunk_transcribed(tmp_path: Path) -> None:
    # 3 h at 8 kHz (the planner resamples): over the old 2 h limit, under the default 10 h.
    media = tmp_path / "media"
    path = media / "acme" / "three-hours.wav"
    path.parent.mkdir(parents=True)
    minute = (np.sin(np.arange(60 * 8000) * 0.2) * 3000).astype("<i2").tobytes()
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(8000)
        for _ in range(180):
            out.writeframes(minute)
    recorder = Recorder()
    job = upload_of(path)
    big = Transcriber(
        engine=FakeEngine(),
        source=FileSource(media),
        publish=recorder,
        admission=Admission(["acme"]),
        dead_letter=DeadLetters(),
        worker="w1",
        producer="test",
        long_audio=LongAudio(store=FileChunkStore(media)),  # the defaults
    )
    await big.on_audio_uploaded(job, delivery(job))
    (plan,) = recorder.of(TranscriptionChunkedV1)
    assert isinstance(plan, TranscriptionChunkedV1)
    assert plan.duration_seconds == pytest.approx(3 * 3600)
    assert len(plan.chunks) >= 60
    assert max(c.end - c.start for c in plan.chunks) <= 120
    items = [e for e in recorder.events if isinstance(e, TranscriptionChunkRequestedV1)]
    for item in items:
        await big.on_chunk_requested(item, delivery(item))
    done = [e for e in recorder.events if isinstance(e, TranscriptionChunkTranscribedV1)]
    assert sorted(r.chunk_index for r in done) == list(range(len(plan.chunks)))
    assert not recorder.of(TranscriptionFailedV1)


def stereo_turns_wav(path: Path, seconds: float, turn: float) -> Path:
    """Noise on the left channel, then the right, alternating every `turn` seconds."""
    rng = np.random.default_rng(5)
    samples = (rng.standard_normal((int(seconds * SAMPLE_RATE), 2)) * 2000).astype("<i2")
    left = (np.arange(samples.shape[0]) // int(turn * SAMPLE_RATE)) % 2 == 0
    samples[left, 1] = 0
    samples[~left, 0] = 0
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as out:
        out.setnchannels(2)
        out.setsampwidth(2)
        out.setframerate(SAMPLE_RATE)
        out.writeframes(samples.tobytes())
    return path


async def test_a_long_job_is_diarized_once_over_the_whole_file_for_its_plan(
    tmp_path: Path,
) -> None:
    media = tmp_path / "media"
    path = stereo_turns_wav(media / "acme" / "call.wav", 70, turn=25)
    by_channel, plain = Recorder(), Recorder()
    job = upload_of(path, diarize="channels")
    await service(media, FakeEngine(), by_channel).on_audio_uploaded(job, delivery(job))
    plan = by_channel.of(TranscriptionChunkedV1)[0]
    assert isinstance(plan, TranscriptionChunkedV1)
    assert len(plan.chunks) >= 3
    assert plan.speaker_turns is not None
    # Left speaks 0-25 s and 50-70 s, right 25-50 s: one turn each, across chunk boundaries.
    assert [(round(t.start), round(t.end), t.speaker) for t in plan.speaker_turns] == [
        (0, 25, "SPEAKER_00"),
        (25, 50, "SPEAKER_01"),
        (50, 70, "SPEAKER_00"),
    ]
    # The chunks themselves are not diarized: the indexer labels the assembled transcript.
    items = by_channel.of(TranscriptionChunkRequestedV1)
    assert all(isinstance(i, TranscriptionChunkRequestedV1) for i in items)

    undiarized = upload_of(path)
    await service(media, FakeEngine(), plain).on_audio_uploaded(undiarized, delivery(undiarized))
    (plain_plan,) = plain.of(TranscriptionChunkedV1)
    assert isinstance(plain_plan, TranscriptionChunkedV1)
    assert plain_plan.speaker_turns is None
    assert "speaker_turns" not in plain_plan.model_dump(exclude_none=True)


async def test_a_diarized_long_job_is_diarized_by_voice_beside_its_split(tmp_path: Path) -> None:
    media = tmp_path / "media"
    path = noise_wav(media / "acme" / "long.wav", 70)
    recorder = Recorder()
    job = upload_of(path, diarize=True)
    await service(media, FakeEngine(), recorder).on_audio_uploaded(job, delivery(job))
    (plan,) = recorder.of(TranscriptionChunkedV1)
    assert isinstance(plan, TranscriptionChunkedV1)
    assert plan.speaker_turns, "noise is one steady 'voice' over the whole file"
    assert plan.speaker_turns[-1].end == pytest.approx(70.0, abs=1.0)
