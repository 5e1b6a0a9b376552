"""The whole stack as real processes: HTTP upload and external event, to search and export."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Iterator
from pathlib import Path
from uuid import uuid4

import httpx
import jiwer
import pytest
import srt
from whisper_normalizer.english import EnglishTextNormalizer

from contracts import AudioUploadedV1, TranscriptionOptions
from scribe_runtime.messaging import make_broker, publish_event
from tests.speech import SCRIPTS, synthesize
from tests.support.downstream import bind_downstream, drain_downstream
from tests.support.stack import Stack, running_stack, wait_for_job

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

DOWNSTREAM = "e2e-downstream.transcript-completed"
normalise = EnglishTextNormalizer()


@pytest.fixture
def stack(amqp_url: str, database_url: str, tmp_path: Path) -> Iterator[Stack]:
    # A downstream service's own queue, bound before any job exists.
    asyncio.run(bind_downstream(amqp_url, DOWNSTREAM))
    with running_stack(amqp_url, database_url, tmp_path) as running:
        yield running


def wer(reference: str, hypothesis: str) -> float:
    return float(jiwer.wer(normalise(reference), normalise(hypothesis)))


def test_upload_transcribe_search_export_and_external_producer(stack: Stack) -> None:
    # No keys configured in the stack: the development key (tenant `default`) works.
    client = httpx.Client(
        base_url=stack.api, timeout=60, headers={"Authorization": "Bearer dev-insecure-key"}
    )
    speech = synthesize(SCRIPTS["meeting"], fmt="flac")

    # 1. Over HTTP, with word timestamps.
    with speech.open("rb") as handle:
        accepted = client.post(
            "/v1/transcriptions",
            files={"file": ("planning.flac", handle, "application/octet-stream")},
            data={"language": "en", "word_timestamps": "true"},
        )
    assert accepted.status_code == 202, accepted.text
    uploaded_id = accepted.json()["id"]
    job = wait_for_job(client, uploaded_id)
    transcript = job["transcript"]
    assert transcript["language"] == "en"
    assert wer(SCRIPTS["meeting"], transcript["text"]) < 0.15
    segments = transcript["segments"]
    assert segments
    assert all(s["words"] for s in segments)

    # 2. Search finds a word of it, at the time it was said.
    hits = client.get("/v1/search", params={"q": "budget"}).json()["hits"]
    mine = [h for h in hits if h["job_id"] == uploaded_id]
    assert mine, hits
    segment = next(s for s in segments if s["id"] == mine[0]["segment_id"])
    assert mine[0]["start"] == pytest.approx(segment["start"])
    spoken = [w for w in segment["words"] if "budget" in w["word"].lower()]
    assert spoken
    assert segment["start"] <= spoken[0]["start"] <= segment["end"]
    assert "<mark>" in mine[0]["snippet"]

    # 3. SRT export parses and carries the segments' times.
    exported = client.get(f"/v1/transcriptions/{uploaded_id}/transcript.srt")
    assert exported.status_code == 200
    cues = list(srt.parse(exported.text))
    assert cues
    assert cues[0].start.total_seconds() == pytest.approx(segments[0]["start"], abs=0.001)
    assert cues[-1].end.total_seconds() == pytest.approx(segments[-1]["end"], abs=0.001)

    # 4. An external producer publishes straight to RabbitMQ with a file:// URI.
    external = stack.media_root / "default" / "external" / "weather.wav"
    external.parent.mkdir(parents=True)
    shutil.copyfile(synthesize(SCRIPTS["weather"]), external)
    event = AudioUploadedV1(
        job_id=uuid4(),
        tenant_id="default",
        correlation_id=uuid4(),
        producer="e2e-external-producer",
        audio_uri=external.resolve().as_uri(),  # type: ignore[arg-type]
        options=TranscriptionOptions(language="en"),
    )
    asyncio.run(_publish(stack.amqp_url, event))
    external_job = wait_for_job(client, str(event.job_id))
    assert wer(SCRIPTS["weather"], external_job["transcript"]["text"]) < 0.15
    hits = client.get("/v1/search", params={"q": '"light breeze"'}).json()["hits"]
    assert [h["job_id"] for h in hits] == [str(event.job_id)]

    # 5. A downstream queue heard exactly one transcript.completed per job.
    completed = asyncio.run(drain_downstream(stack.amqp_url, DOWNSTREAM))
    assert sorted(str(e.job_id) for e in completed) == sorted([uploaded_id, str(event.job_id)])


async def _publish(amqp_url: str, event: AudioUploadedV1) -> None:
    broker = make_broker(amqp_url, service="e2e-external-producer")
    async with broker:
        await broker.connect()
        await publish_event(broker, event)
