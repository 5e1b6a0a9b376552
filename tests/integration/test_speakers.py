"""Speaker labels from `transcript.completed` to the read API, exports and search (real DB)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from uuid import UUID, uuid4

import asyncpg
import httpx
import pytest
import webvtt

from contracts import TranscriptCompletedV1
from contracts.transcription import Segment, Word
from indexer.migrate import prepare_database
from indexer.store import PostgresProjectionStore
from services.indexer.tests import job_events as ev
from tests.integration.test_read_api import AUTH, make_app
from tests.support.servers import READER, as_role

pytestmark = pytest.mark.integration


def diarized(job: UUID) -> TranscriptCompletedV1:
    """A two-speaker call: the agent greets, the caller asks about an invoice."""
    lines = [
        (0.0, 2.0, "SPEAKER_00", "Good morning, how can I help?"),
        (2.5, 5.0, "SPEAKER_01", "I am calling about the invoice for the kitchen."),
        (5.5, 7.0, "SPEAKER_00", "Let me find that invoice."),
    ]
    segments = []
    for i, (start, end, speaker, text) in enumerate(lines):
        tokens = text.split()
        step = (end - start) / len(tokens)
        words = [
            Word(
                word=f" {t}",
                start=start + k * step,
                end=start + (k + 1) * step,
                probability=0.9,
                speaker=speaker,
            )
            for k, t in enumerate(tokens)
        ]
        segments.append(
            Segment(id=i, start=start, end=end, text=f" {text}", words=words, speaker=speaker)
        )
    base = ev.completed(job)
    return base.model_copy(
        update={"segments": segments, "text": " ".join(s.text.strip() for s in segments)}
    )


@pytest.fixture
async def client(database_url: str) -> AsyncIterator[tuple[httpx.AsyncClient, dict[str, UUID]]]:
    await prepare_database(
        database_url, reader_role=READER, reader_password=None, tenants=("default",)
    )
    jobs = {"call": uuid4(), "plain": uuid4()}
    async with asyncpg.create_pool(database_url, min_size=1, max_size=2) as pool:
        store = PostgresProjectionStore(pool)
        for event in [
            ev.uploaded(jobs["call"]),
            diarized(jobs["call"]),
            *ev.completed_job(jobs["plain"]),
        ]:
            await store.apply(event)
    app = make_app(as_role(database_url, READER))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t", headers=AUTH) as c:
            yield c, jobs


async def _get(client: httpx.AsyncClient, path: str) -> httpx.Response:
    response = await client.get(path)
    assert response.status_code == 200, response.text
    return response


async def test_the_transcript_names_the_speaker_of_each_segment_and_word(
    client: tuple[httpx.AsyncClient, dict[str, UUID]],
) -> None:
    http, jobs = client
    body = (await _get(http, f"/v1/transcriptions/{jobs['call']}")).json()
    segments = body["transcript"]["segments"]
    assert [s["speaker"] for s in segments] == ["SPEAKER_00", "SPEAKER_01", "SPEAKER_00"]
    assert {w["speaker"] for w in segments[1]["words"]} == {"SPEAKER_01"}
    plain = (await _get(http, f"/v1/transcriptions/{jobs['plain']}")).json()
    assert all(s.get("speaker") is None for s in plain["transcript"]["segments"])
    assert all(
        w.get("speaker") is None
        for s in plain["transcript"]["segments"]
        for w in s.get("words") or []
    )


async def test_exports_show_who_speaks(client: tuple[httpx.AsyncClient, dict[str, UUID]]) -> None:
    http, jobs = client
    base = f"/v1/transcriptions/{jobs['call']}/transcript"
    text = (await _get(http, f"{base}.txt")).text
    assert text.splitlines() == [
        "SPEAKER_00: Good morning, how can I help?",
        "SPEAKER_01: I am calling about the invoice for the kitchen.",
        "SPEAKER_00: Let me find that invoice.",
    ]
    srt_text = (await _get(http, f"{base}.srt")).text
    assert "\nSPEAKER_01: I am calling about the invoice" in srt_text
    vtt_text = (await _get(http, f"{base}.vtt")).text
    assert "<v SPEAKER_00>Good morning, how can I help?" in vtt_text
    captions = webvtt.from_string(vtt_text)
    voices = [c.voice for c in captions.captions]
    assert voices[0] == "SPEAKER_00"
    assert "SPEAKER_01" in voices
    plain = (await _get(http, f"/v1/transcriptions/{jobs['plain']}/transcript.txt")).text
    assert "SPEAKER" not in plain


async def test_search_filters_by_speaker(client: tuple[httpx.AsyncClient, dict[str, UUID]]) -> None:
    http, jobs = client
    everyone = (await _get(http, "/v1/search?q=invoice")).json()["hits"]
    assert sorted((h["segment_id"], h["speaker"]) for h in everyone) == [
        (1, "SPEAKER_01"),
        (2, "SPEAKER_00"),
    ]
    caller = (await _get(http, "/v1/search?q=invoice&speaker=SPEAKER_01")).json()["hits"]
    assert [(h["job_id"], h["segment_id"], h["speaker"]) for h in caller] == [
        (str(jobs["call"]), 1, "SPEAKER_01")
    ]
    nobody = (await _get(http, "/v1/search?q=invoice&speaker=SPEAKER_07")).json()["hits"]
    assert nobody == []
    bad = await http.get("/v1/search", params={"q": "invoice", "speaker": "a b"})
    assert bad.status_code == 422
