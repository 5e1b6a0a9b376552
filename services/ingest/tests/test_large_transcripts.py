"""A long job's transcript is rendered off the event loop, in every answer that carries it.

A 10-hour transcript with words (7,500 segments, 90,000 words) takes ~0.6 CPU-s to build
and as much again to render as SRT; on the event loop that is a stall of every request of
every tenant on the replica. From `LARGE_TRANSCRIPT_SEGMENTS` segments the work runs on a
worker thread (`ingest.queries.off_loop`), and the answers are the same as before.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from ingest import exports, queries, reads
from ingest.auth import DEV_API_KEY
from ingest.deps import get_queries
from ingest.links import job_links
from ingest.queries import LARGE_TRANSCRIPT_SEGMENTS, TranscriptLookup
from ingest.read_models import AudioInfo, SegmentOut, TranscriptionOut, TranscriptOut, WordOut
from ingest.settings import IngestSettings
from services.ingest.tests.test_api import FakePublisher, fake_app

JOB = uuid.uuid4()


def transcript(segments: int) -> TranscriptOut:
    return TranscriptOut(
        language="en",
        language_probability=1.0,
        duration_seconds=segments * 5.0,
        model="tiny.en",
        text=" hello there" * segments,
        segments=[
            SegmentOut(
                id=i,
                start=i * 5.0,
                end=i * 5.0 + 4.0,
                text=" hello there",
                words=[
                    WordOut(word=" hello", start=i * 5.0, end=i * 5.0 + 1, probability=0.9),
                    WordOut(word=" there", start=i * 5.0 + 2, end=i * 5.0 + 4, probability=0.9),
                ],
            )
            for i in range(segments)
        ],
    )


class Reader:
    def __init__(self, segments: int) -> None:
        self.made = transcript(segments)

    async def transcript(self, tenant: str, job_id: uuid.UUID) -> TranscriptLookup | None:
        return TranscriptLookup(status="completed", transcript=self.made)

    async def job(self, tenant: str, job_id: uuid.UUID) -> TranscriptionOut | None:
        now = datetime.now(UTC)
        return TranscriptionOut(
            id=job_id,
            status="completed",
            progress=1.0,
            attempts=1,
            audio=AudioInfo(),
            created_at=now,
            updated_at=now,
            links=job_links(job_id, "completed"),
            transcript=self.made,
        )


@pytest.fixture(params=[10, LARGE_TRANSCRIPT_SEGMENTS], ids=["short", "long"])
async def served(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[httpx.AsyncClient, Reader, list[bool]]]:
    """A client of the app over a reader of a transcript of `param` segments, and where
    each piece of rendering work ran (True: on the event loop's thread)."""
    on_loop: list[bool] = []
    real = queries.off_loop

    async def spied(large: bool, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        def recorded(*a: Any, **k: Any) -> Any:
            on_loop.append(threading.current_thread() is threading.main_thread())
            return fn(*a, **k)

        return await real(large, recorded, *args, **kwargs)

    monkeypatch.setattr(reads, "off_loop", spied)
    reader = Reader(request.param)
    async with fake_app(IngestSettings(), tmp_path / "media", FakePublisher()) as app:
        app.dependency_overrides[get_queries] = lambda: reader
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="http://ingest",
            headers={"Authorization": f"Bearer {DEV_API_KEY}"},
        ) as client:
            yield client, reader, on_loop


async def test_every_answer_carrying_a_long_transcript_is_rendered_off_the_loop(
    served: tuple[httpx.AsyncClient, Reader, list[bool]],
) -> None:
    client, reader, on_loop = served
    long = len(reader.made.segments) >= LARGE_TRANSCRIPT_SEGMENTS
    timed = exports.timed_segments(reader.made.segments)
    expected = {
        "srt": exports.to_srt(timed),
        "vtt": exports.to_vtt(timed),
        "txt": exports.to_text(timed),
        "tsv": exports.to_tsv(timed),
    }
    for fmt, body in expected.items():
        answer = await client.get(f"/v1/transcriptions/{JOB}/transcript.{fmt}")
        assert answer.status_code == 200
        assert answer.text == body
    answer = await client.get(f"/v1/transcriptions/{JOB}/transcript.json")
    assert TranscriptOut.model_validate_json(answer.content) == reader.made
    answer = await client.get(f"/v1/transcriptions/{JOB}")
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/json"
    job = await reader.job("default", JOB)
    assert job is not None
    shown = answer.json()
    assert shown["transcript"] == job.model_dump(mode="json", exclude_none=True)["transcript"]
    assert "error" not in shown  # None left out, as FastAPI's own rendering does
    if long:
        assert on_loop == [False] * 6  # 4 exports, the JSON export, the job
    else:
        assert on_loop == [True] * 5  # the job's small answer is FastAPI's own
