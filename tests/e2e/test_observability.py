"""What an operator sees after real jobs: each service's /metrics, and one job's logs.

One upload that completes, one external event whose audio is missing (fails with
`source_not_found`), one upload refused as not audio, one search. Then every service's
`/metrics` must count exactly that, and one correlation id must lead through the logs of
ingest, transcriber and indexer for the uploaded job.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import asyncpg
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from contracts import AudioUploadedV1, TranscriptionOptions, routing
from scribe_runtime.messaging import make_broker, publish_event
from tests.speech import SCRIPTS, synthesize
from tests.support import probes
from tests.support.stack import Stack, running_stack, wait_for_job

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

AUTH = {"Authorization": "Bearer dev-insecure-key"}  # the development key (tenant default)
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]
TRANSCRIBER_EVENTS = (
    routing.TRANSCRIPTION_STARTED_V1,
    routing.TRANSCRIPTION_PROGRESS_V1,
    routing.TRANSCRIPT_COMPLETED_V1,
    routing.TRANSCRIPTION_FAILED_V1,
)


@pytest.fixture
def stack(amqp_url: str, database_url: str, tmp_path: Path) -> Iterator[Stack]:
    with running_stack(amqp_url, database_url, tmp_path) as running:
        yield running


def scrape(url: str) -> Samples:
    response = probes.get(url, timeout=10)  # no credentials: /metrics is open
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    """A sample's value; 0 when it was never recorded (prometheus_client omits it)."""
    return samples.get((name, frozenset(labels.items())), 0.0)


def log_lines(stack: Stack, name: str) -> list[dict[str, Any]]:
    lines = []
    for raw in stack.log(name).splitlines():
        if raw.startswith("{"):
            lines.append(json.loads(raw))
    return lines


async def _publish(amqp_url: str, event: AudioUploadedV1) -> None:
    broker = make_broker(amqp_url, service="e2e-external-producer")
    async with broker:
        await broker.connect()
        await publish_event(broker, event)


def test_metrics_count_what_happened_and_one_correlation_id_follows_the_job(
    stack: Stack,
) -> None:
    client = httpx.Client(base_url=stack.api, timeout=60, headers=AUTH)
    speech = synthesize(SCRIPTS["meeting"], fmt="flac")
    correlation = uuid4()

    # A job that completes, traced by the caller's correlation id.
    with speech.open("rb") as handle:
        accepted = client.post(
            "/v1/transcriptions",
            files={"file": ("planning.flac", handle, "application/octet-stream")},
            data={"language": "en"},
            headers={"X-Correlation-ID": str(correlation)},
        )
    assert accepted.status_code == 202, accepted.text
    assert accepted.headers["X-Correlation-ID"] == str(correlation)
    job_id = accepted.json()["id"]

    # Refused at the door: not audio.
    refused = client.post(
        "/v1/transcriptions", files={"file": ("notes.mp3", b"just some text\n" * 100)}
    )
    assert refused.status_code == 415, refused.text
    assert refused.json()["code"] == "unsupported_media"

    # An external producer's job whose audio is not there: a failure with a code.
    missing = AudioUploadedV1(
        job_id=uuid4(),
        tenant_id="default",
        correlation_id=uuid4(),
        producer="e2e-external-producer",
        audio_uri=(stack.media_root / "default" / "external" / "gone.wav").as_uri(),  # type: ignore[arg-type]
        options=TranscriptionOptions(language="en"),
    )
    asyncio.run(_publish(stack.amqp_url, missing))

    job = wait_for_job(client, job_id, "completed")
    failed = wait_for_job(client, str(missing.job_id), "failed")
    assert failed["error"]["code"] == "source_not_found"
    assert job["correlation_id"] == str(correlation)
    assert client.get("/v1/search", params={"q": "budget"}).status_code == 200

    ingest_url = f"{stack.api}/metrics"
    transcriber_url = f"http://127.0.0.1:{stack.health['transcriber']}/metrics"
    indexer_url = f"http://127.0.0.1:{stack.health['indexer']}/metrics"

    # Events reach the indexer asynchronously (a late progress event may still be in
    # flight): wait until it has consumed everything the others published.
    deadline = time.monotonic() + 60
    while True:
        ingest, transcriber, indexer = (
            scrape(ingest_url),
            scrape(transcriber_url),
            scrape(indexer_url),
        )
        published = {
            t: value(ingest, "scribe_events_published_total", type=t)
            + value(transcriber, "scribe_events_published_total", type=t)
            for t in (routing.AUDIO_UPLOADED_V1, *TRANSCRIBER_EVENTS)
        }
        published[routing.AUDIO_UPLOADED_V1] += 1  # the external producer's
        consumed = {
            t: value(
                indexer,
                "scribe_events_consumed_total",
                queue="indexer.job-events",
                type=t,
                outcome="handled",
            )
            for t in published
        }
        if consumed == published or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert consumed == published

    # Ingest: one accepted upload, one refusal by code, one search; bytes and times.
    assert (
        value(ingest, "scribe_ingest_jobs_accepted_total", source="upload", replayed="false") == 1
    )
    assert value(ingest, "scribe_ingest_submissions_rejected_total", code="unsupported_media") == 1
    assert value(ingest, "scribe_events_published_total", type=routing.AUDIO_UPLOADED_V1) == 1
    assert value(ingest, "scribe_ingest_upload_bytes_count") == 1
    assert value(ingest, "scribe_ingest_upload_bytes_sum") == speech.stat().st_size
    assert (
        value(ingest, "scribe_ingest_upload_seconds_count", source="upload", outcome="accepted")
        == 1
    )
    assert (
        value(ingest, "scribe_ingest_upload_seconds_count", source="upload", outcome="rejected")
        == 1
    )
    assert value(ingest, "scribe_ingest_search_seconds_count") == 1

    # Transcriber: completed jobs = jobs submitted over HTTP; the failure by its code;
    # audio and inference seconds of the one transcript; every event it published.
    assert value(transcriber, "scribe_transcriber_jobs_total", outcome="completed", code="") == 1
    assert (
        value(
            transcriber, "scribe_transcriber_jobs_total", outcome="failed", code="source_not_found"
        )
        == 1
    )
    assert value(transcriber, "scribe_transcriber_audio_seconds_count") == 1
    assert value(transcriber, "scribe_transcriber_audio_seconds_sum") == pytest.approx(
        job["transcript"]["duration_seconds"], abs=0.01
    )
    assert value(transcriber, "scribe_transcriber_transcription_seconds_count") == 1
    inference = value(transcriber, "scribe_transcriber_transcription_seconds_sum")
    assert inference > 0
    assert value(transcriber, "scribe_transcriber_real_time_factor_sum") == pytest.approx(
        inference / job["transcript"]["duration_seconds"], rel=0.01
    )
    assert (
        value(
            transcriber,
            "scribe_events_consumed_total",
            queue="transcriber.audio-uploaded",
            type=routing.AUDIO_UPLOADED_V1,
            outcome="handled",
        )
        == 2
    )
    assert (
        value(transcriber, "scribe_events_published_total", type=routing.TRANSCRIPTION_STARTED_V1)
        == 2
    )
    assert (
        value(transcriber, "scribe_events_published_total", type=routing.TRANSCRIPT_COMPLETED_V1)
        == 1
    )
    assert (
        value(transcriber, "scribe_events_published_total", type=routing.TRANSCRIPTION_FAILED_V1)
        == 1
    )

    # Indexer: the same outcomes projected; a lag observed for every event it indexed.
    assert value(indexer, "scribe_indexer_job_outcomes_total", outcome="completed", code="") == 1
    assert (
        value(
            indexer, "scribe_indexer_job_outcomes_total", outcome="failed", code="source_not_found"
        )
        == 1
    )
    for event_type, count in consumed.items():
        assert value(indexer, "scribe_indexer_lag_seconds_count", type=event_type) == count
    assert (
        value(indexer, "scribe_indexer_lag_seconds_sum", type=routing.TRANSCRIPT_COMPLETED_V1) > 0
    )

    # One correlation id through the logs of all three services for the uploaded job.
    trace = str(correlation)
    about_job = {
        name: [line for line in log_lines(stack, name) if line.get("job_id") == job_id]
        for name in ("ingest", "transcriber", "indexer")
    }
    for name, lines in about_job.items():
        assert lines, f"{name} logged nothing about job {job_id}"
        assert {line.get("correlation_id") for line in lines} == {trace}, (name, lines)
    assert "audio_accepted" in {line["event"] for line in about_job["ingest"]}
    assert "transcript_completed" in {line["event"] for line in about_job["transcriber"]}
    indexed = [line for line in about_job["indexer"] if line["event"] == "job_event_indexed"]
    # One line per event about the job: as many as the events it recorded for the job.
    assert len({line["event_id"] for line in indexed}) == len(indexed)
    assert len(indexed) == asyncio.run(_events_recorded(stack.database_url, UUID(job_id)))
    assert {
        routing.AUDIO_UPLOADED_V1,
        routing.TRANSCRIPTION_STARTED_V1,
        routing.TRANSCRIPT_COMPLETED_V1,
    } <= {line["event_type"] for line in indexed}
    # Any line anywhere that names the job carries its correlation id.
    for name in ("ingest", "transcriber", "indexer"):
        for raw in stack.log(name).splitlines():
            if job_id in raw and raw.startswith("{"):
                assert json.loads(raw).get("correlation_id") == trace, (name, raw)


async def _events_recorded(database_url: str, job_id: UUID) -> int:
    """Events about the job the indexer recorded as processed (its tracking table)."""
    connection = await asyncpg.connect(database_url)
    try:
        count = await connection.fetchval(
            "SELECT count(*) FROM processed_events WHERE job_id = $1", job_id
        )
    finally:
        await connection.close()
    return int(count)
