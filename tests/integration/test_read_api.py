"""The read API over a real PostgreSQL, through the read-only role."""

from __future__ import annotations

import asyncio
import base64
import json
import threading
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import asyncpg
import httpx
import pytest
import srt
import webvtt
from fastapi import FastAPI

from contracts import TranscriptCompletedV1
from contracts.envelope import Event
from contracts.transcription import Segment, Word
from indexer.migrate import prepare_database
from indexer.store import PostgresProjectionStore
from ingest import queries
from ingest.app import create_read_app
from ingest.auth import hash_api_key
from ingest.cursors import fingerprint
from ingest.deps import services_of
from ingest.failures import InvalidInputError
from ingest.queries import JobFilter
from ingest.settings import IngestSettings
from services.indexer.tests import job_events as ev
from tests.support.servers import READER, as_role

pytestmark = pytest.mark.integration

LONG_TEXT = (
    "Today we are going to talk about the migration of the northern bald ibis, a bird that "
    "almost vanished from Europe and was taught its route again by people flying microlights."
)


def long_completed(job: UUID, tenant: str = "default") -> TranscriptCompletedV1:
    words = LONG_TEXT.split()
    step = 0.4
    segment = Segment(
        id=0,
        start=20.0,
        end=20.0 + step * len(words),
        text=LONG_TEXT,
        words=[
            Word(word=w, start=20.0 + i * step, end=20.0 + (i + 1) * step, probability=0.9)
            for i, w in enumerate(words)
        ],
    )
    base = ev.completed(job, tenant)
    return base.model_copy(update={"segments": [segment], "text": LONG_TEXT})


API_KEY = "read-api-test-key"
AUTH = {"Authorization": f"Bearer {API_KEY}"}


def make_app(url: str, tenant: str = "default") -> FastAPI:
    return create_read_app(
        IngestSettings(database_url=url, api_keys={hash_api_key(API_KEY): tenant})
    )


@pytest.fixture
async def indexed(database_url: str) -> dict[str, Any]:
    await prepare_database(
        database_url, reader_role=READER, reader_password=None, tenants=("default", "acme")
    )
    jobs = {"done": uuid4(), "failed": uuid4(), "queued": uuid4(), "long": uuid4()}
    events: list[Event] = [
        *ev.completed_job(jobs["done"]),
        *ev.failed_job(jobs["failed"]),
        ev.uploaded(jobs["queued"], at=30.0),
        ev.uploaded(jobs["long"], at=40.0),
        long_completed(jobs["long"]),
    ]
    acme_job = uuid4()
    events += ev.completed_job(acme_job, tenant="acme")
    async with asyncpg.create_pool(database_url, min_size=1, max_size=2) as pool:
        store = PostgresProjectionStore(pool)
        for event in events:
            await store.apply(event)
    return {"jobs": jobs, "acme_job": acme_job, "url": as_role(database_url, READER)}


def client_app(client: httpx.AsyncClient) -> FastAPI:
    """The app behind an ASGI client."""
    transport = client._transport
    assert isinstance(transport, httpx.ASGITransport)
    app = transport.app
    assert isinstance(app, FastAPI)
    return app


@pytest.fixture
async def client(indexed: dict[str, Any]) -> AsyncIterator[httpx.AsyncClient]:
    app = make_app(indexed["url"])
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://test", headers=AUTH
        ) as client:
            yield client


async def test_completed_job_has_status_audio_and_transcript(
    client: httpx.AsyncClient, indexed: dict[str, Any]
) -> None:
    job = indexed["jobs"]["done"]
    response = await client.get(f"/v1/transcriptions/{job}")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "completed"
    assert body["progress"] == 1.0
    assert body["attempts"] == 2
    assert body["audio"]["original_filename"] == "standup.wav"
    assert body["audio"]["duration_seconds"] == 11.02
    # The worker's event carried file:///media/ab/cd/abcd.wav: the caller sees no server path.
    assert body["audio"]["uri"] == "media:abcd.wav"
    assert body["options"]["word_timestamps"] is True
    assert "error" not in body
    transcript = body["transcript"]
    assert [s["text"] for s in transcript["segments"]] == list(ev.SEGMENT_TEXTS)
    assert transcript["segments"][1]["start"] == 3.7
    assert transcript["segments"][1]["words"][0]["word"] == "Peter"
    assert body["links"]["transcript_srt"] == f"/v1/transcriptions/{job}/transcript.srt"


async def test_failed_and_queued_jobs_say_where_they_are(
    client: httpx.AsyncClient, indexed: dict[str, Any]
) -> None:
    failed = (await client.get(f"/v1/transcriptions/{indexed['jobs']['failed']}")).json()
    assert failed["status"] == "failed"
    assert failed["error"] == {
        "code": "corrupt_audio",
        "message": "the audio stream cannot be decoded",
        "retryable": False,
    }
    assert "transcript" not in failed
    queued = (await client.get(f"/v1/transcriptions/{indexed['jobs']['queued']}")).json()
    assert queued["status"] == "queued"
    assert queued["progress"] == 0.0
    export = await client.get(f"/v1/transcriptions/{indexed['jobs']['queued']}/transcript.srt")
    assert export.status_code == 409
    assert export.json()["code"] == "transcript_not_ready"


@pytest.mark.parametrize("suffix", ["", "/transcript.json", "/transcript.vtt"])
async def test_unknown_foreign_and_malformed_ids_are_not_found(
    client: httpx.AsyncClient, indexed: dict[str, Any], suffix: str
) -> None:
    for job in (uuid4(), indexed["acme_job"], "not-a-uuid"):
        response = await client.get(f"/v1/transcriptions/{job}{suffix}")
        assert response.status_code == 404, job
        assert response.json()["code"] == "not_found"


async def test_listing_filters_by_status_and_pages_with_a_cursor(
    client: httpx.AsyncClient, indexed: dict[str, Any]
) -> None:
    seen: list[str] = []
    cursor = None
    for _ in range(10):
        params: dict[str, Any] = {"limit": 1}
        if cursor:
            params["cursor"] = cursor
        page = (await client.get("/v1/transcriptions", params=params)).json()
        seen += [item["id"] for item in page["items"]]
        cursor = page.get("next_cursor")
        if not cursor:
            break
    jobs = indexed["jobs"]
    # Newest first; the acme job is invisible to the default tenant.
    assert seen[:2] == [str(jobs["long"]), str(jobs["queued"])]
    assert sorted(seen) == sorted(str(j) for j in jobs.values())
    completed = (await client.get("/v1/transcriptions", params={"status": "completed"})).json()
    assert {i["id"] for i in completed["items"]} == {str(jobs["done"]), str(jobs["long"])}
    both = (
        await client.get("/v1/transcriptions", params=[("status", "failed"), ("status", "queued")])
    ).json()
    assert {i["id"] for i in both["items"]} == {str(jobs["failed"]), str(jobs["queued"])}
    window = (
        await client.get(
            "/v1/transcriptions",
            params={
                "created_after": (ev.T0 + timedelta(seconds=30)).isoformat(),
                "created_before": (ev.T0 + timedelta(seconds=31)).isoformat(),
            },
        )
    ).json()
    assert [i["id"] for i in window["items"]] == [str(jobs["queued"])]


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/v1/transcriptions", {"status": "sleeping"}),
        ("/v1/transcriptions", {"limit": 0}),
        ("/v1/transcriptions", {"limit": 101}),
        ("/v1/transcriptions", {"created_after": "yesterday"}),
        ("/v1/transcriptions", {"cursor": "garbage!"}),
        (
            "/v1/transcriptions",
            {"created_after": "2026-01-02T00:00:00Z", "created_before": "2026-01-01T00:00:00Z"},
        ),
        ("/v1/search", {}),
        ("/v1/search", {"q": "   "}),
        ("/v1/search", {"q": "fox", "limit": 1000}),
        ("/v1/search", {"q": "fox", "language": "English"}),
        ("/v1/search", {"q": "fox", "cursor": "eyJ2IjoxfQ"}),
    ],
)
async def test_bad_query_parameters_are_422(
    client: httpx.AsyncClient, path: str, params: dict[str, Any]
) -> None:
    response = await client.get(path, params=params)
    assert response.status_code == 422


async def test_a_cursor_from_another_query_is_refused(client: httpx.AsyncClient) -> None:
    page = (await client.get("/v1/transcriptions", params={"limit": 1})).json()
    response = await client.get(
        "/v1/transcriptions",
        params={"limit": 1, "status": "completed", "cursor": page["next_cursor"]},
    )
    assert response.status_code == 422
    assert response.json()["code"] == "invalid_cursor"


async def test_srt_and_vtt_parse_and_round_trip_the_segment_times(
    client: httpx.AsyncClient, indexed: dict[str, Any], tmp_path: Any
) -> None:
    job = indexed["jobs"]["done"]
    segments = ev.segments()
    srt_response = await client.get(f"/v1/transcriptions/{job}/transcript.srt")
    assert srt_response.status_code == 200
    assert srt_response.headers["content-type"].startswith("application/x-subrip")
    cues = list(srt.parse(srt_response.text))
    assert [c.index for c in cues] == [1, 2, 3]
    for cue, segment in zip(cues, segments, strict=True):
        assert cue.start.total_seconds() == pytest.approx(segment.start, abs=0.0005)
        assert cue.end.total_seconds() == pytest.approx(segment.end, abs=0.0005)
        assert " ".join(cue.content.split("\n")) == segment.text

    vtt_response = await client.get(f"/v1/transcriptions/{job}/transcript.vtt")
    assert vtt_response.headers["content-type"].startswith("text/vtt")
    path = tmp_path / "t.vtt"
    path.write_text(vtt_response.text)
    captions = webvtt.read(str(path)).captions
    assert len(captions) == 3
    for caption, segment in zip(captions, segments, strict=True):
        assert caption.start_in_seconds + caption.start_time.milliseconds / 1000 == pytest.approx(
            segment.start, abs=0.0005
        )
        assert caption.text.replace("\n", " ") == segment.text

    text = (await client.get(f"/v1/transcriptions/{job}/transcript.txt")).text
    assert text.splitlines() == list(ev.SEGMENT_TEXTS)
    as_json = (await client.get(f"/v1/transcriptions/{job}/transcript.json")).json()
    assert [s["start"] for s in as_json["segments"]] == [s.start for s in segments]


async def test_a_long_segment_becomes_readable_caption_cues_timed_by_its_words(
    client: httpx.AsyncClient, indexed: dict[str, Any]
) -> None:
    job = indexed["jobs"]["long"]
    cues = list(srt.parse((await client.get(f"/v1/transcriptions/{job}/transcript.srt")).text))
    assert len(cues) > 1
    for cue in cues:
        lines = cue.content.split("\n")
        assert len(lines) <= 2
        assert all(len(line) <= 42 for line in lines)
    assert " ".join(" ".join(c.content.split("\n")) for c in cues) == LONG_TEXT
    assert cues[0].start == timedelta(seconds=20)
    words = LONG_TEXT.split()
    first_cue_words = len(cues[0].content.split())
    # The second cue starts exactly when its first word was said.
    assert cues[1].start.total_seconds() == pytest.approx(20.0 + 0.4 * first_cue_words)
    assert cues[-1].end.total_seconds() == pytest.approx(20.0 + 0.4 * len(words))


async def test_search_finds_a_word_at_the_segment_s_true_start_time(
    client: httpx.AsyncClient, indexed: dict[str, Any]
) -> None:
    response = await client.get("/v1/search", params={"q": "pickled"})
    assert response.status_code == 200
    body = response.json()
    assert len(body["hits"]) == 1
    hit = body["hits"][0]
    assert hit["job_id"] == str(indexed["jobs"]["done"])
    assert hit["segment_id"] == 1
    assert hit["start"] == 3.7
    assert hit["end"] == 7.2
    assert "<mark>pickled</mark>" in hit["snippet"]
    # Stemming: the plural query finds the singular's segment too.
    assert [h["segment_id"] for h in (await client.get("/v1/search?q=pickle")).json()["hits"]] == [
        1
    ]


async def test_a_search_of_stop_words_only_finds_nothing(
    client: httpx.AsyncClient, indexed: dict[str, Any]
) -> None:
    # Every indexed transcript holds "the"; a query with no lexeme still matches nothing.
    response = await client.get("/v1/search", params={"q": "the and"})
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {
        "query": "the and",
        "hits": [],
        "next_cursor": None,
        "approximate": False,
    }


async def test_a_job_s_links_are_the_same_wherever_it_appears(
    client: httpx.AsyncClient, indexed: dict[str, Any]
) -> None:
    job = indexed["jobs"]["done"]
    links = (await client.get(f"/v1/transcriptions/{job}")).json()["links"]
    listed = (await client.get("/v1/transcriptions", params={"status": "completed"})).json()
    [hit] = (await client.get("/v1/search", params={"q": "pickled"})).json()["hits"]

    assert links["self"] == f"/v1/transcriptions/{job}"
    assert links["transcript"] == links["transcript_json"] == f"{links['self']}/transcript.json"
    assert [i["links"] for i in listed["items"] if i["id"] == str(job)] == [links]
    assert hit["links"] == links
    for fmt in ("json", "txt", "srt", "vtt"):
        assert (await client.get(links[f"transcript_{fmt}"])).status_code == 200


async def test_phrase_or_and_exclusion_follow_web_search_syntax(client: httpx.AsyncClient) -> None:
    async def texts(q: str) -> list[str]:
        response = await client.get("/v1/search", params={"q": q})
        assert response.status_code == 200
        return sorted(h["text"] for h in response.json()["hits"])

    fox, peter, shells = ev.SEGMENT_TEXTS
    assert await texts('"quick brown fox"') == [fox]
    # Both words occur, but not as this phrase: a phrase query must not match.
    assert await texts('"fox quick"') == []
    assert await texts("fox quick") == [fox]
    assert await texts("fox or shells") == sorted([fox, shells])
    assert await texts("sea -summer") == []
    assert await texts("harbour -summer") == [peter]


async def test_search_is_tenant_scoped_filtered_and_cursor_paged(
    client: httpx.AsyncClient, indexed: dict[str, Any]
) -> None:
    # The acme tenant has the same transcript; the default tenant never sees it.
    hits = (await client.get("/v1/search", params={"q": "fox"})).json()["hits"]
    assert {h["job_id"] for h in hits} == {str(indexed["jobs"]["done"])}
    assert (await client.get("/v1/search", params={"q": "fox", "language": "de"})).json()[
        "hits"
    ] == []
    later = {"q": "fox", "created_after": (ev.T0 + timedelta(seconds=1)).isoformat()}
    assert (await client.get("/v1/search", params=later)).json()["hits"] == []

    seen = []
    params: dict[str, Any] = {"q": "the or sea or fox or bird or peck", "limit": 1}
    for _ in range(10):
        page = (await client.get("/v1/search", params=params)).json()
        seen += [(h["job_id"], h["segment_id"], h["rank"]) for h in page["hits"]]
        if not page.get("next_cursor"):
            break
        params["cursor"] = page["next_cursor"]
    assert len(seen) == 4 == len(set(seen))
    ranks = [rank for _, _, rank in seen]
    assert ranks == sorted(ranks, reverse=True)


async def test_reads_answer_503_while_postgres_is_away_and_the_app_still_starts() -> None:
    app = make_app("postgresql://scribe_reader@127.0.0.1:1/scribe")
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://test", headers=AUTH
        ) as client:
            response = await client.get(f"/v1/transcriptions/{uuid4()}")
    assert response.status_code == 503
    assert response.json()["code"] == "database_unavailable"
    assert response.headers["retry-after"] == "2"


EDGE_OF_CALENDAR = ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00"]


@pytest.mark.parametrize("when", EDGE_OF_CALENDAR)
@pytest.mark.parametrize("field", ["created_after", "created_before"])
@pytest.mark.parametrize("path", ["/v1/transcriptions", "/v1/search"])
async def test_dates_at_the_edge_of_the_calendar_are_422_not_500(
    client: httpx.AsyncClient, path: str, field: str, when: str
) -> None:
    params = {field: when, **({"q": "fox"} if path == "/v1/search" else {})}
    response = await client.get(path, params=params)
    assert response.status_code == 422, response.text
    assert response.json()["code"] == "validation_error"
    assert response.json()["details"][0]["loc"] == ["query", field]


def _unsigned(kind: str, scope: str, position: list[Any]) -> str:
    """A cursor as the API made them before they were signed: anyone can build one."""
    raw = json.dumps({"v": 1, "k": kind, "s": scope, "p": position}, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).rstrip(b"=").decode()


FORGED_SEARCH = [
    [1.0, str(uuid4()), 2**40],  # segment id beyond int4
    [1e300, str(uuid4()), 1],  # rank beyond `real`
    ["nan", str(uuid4()), 1],
    [1.0, str(uuid4()), -1],
]


@pytest.mark.parametrize("position", FORGED_SEARCH)
async def test_forged_search_cursors_are_422_whether_signed_or_not(
    client: httpx.AsyncClient, position: list[Any]
) -> None:
    scope = fingerprint("default", "fox", None, None, None)
    forged = _unsigned("search", scope, position)
    response = await client.get("/v1/search", params={"q": "fox", "cursor": forged})
    assert response.status_code == 422, response.text
    assert response.json()["code"] == "invalid_cursor"
    # Even a cursor the server signed is range-checked before it reaches a query.
    signed = services_of(client_app(client)).cursors.encode("search", scope, position)
    response = await client.get("/v1/search", params={"q": "fox", "cursor": signed})
    assert response.status_code == 422, response.text
    assert response.json()["code"] == "invalid_cursor"


@pytest.mark.parametrize("created", ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00"])
async def test_forged_listing_cursors_are_422(client: httpx.AsyncClient, created: str) -> None:
    scope = fingerprint("default", None, None, None)
    for cursor in (
        _unsigned("jobs", scope, [created, str(uuid4())]),
        services_of(client_app(client)).cursors.encode("jobs", scope, [created, str(uuid4())]),
    ):
        response = await client.get("/v1/transcriptions", params={"cursor": cursor})
        assert response.status_code == 422, response.text
        assert response.json()["code"] == "invalid_cursor"


async def test_an_edited_cursor_is_refused(client: httpx.AsyncClient) -> None:
    page = (await client.get("/v1/transcriptions", params={"limit": 1})).json()
    body, mac = page["next_cursor"].split(".")
    position = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    position["p"][0] = "2000-01-01T00:00:00+00:00"
    edited = base64.urlsafe_b64encode(json.dumps(position).encode()).rstrip(b"=").decode()
    params: dict[str, str | int] = {"limit": 1, "cursor": f"{edited}.{mac}"}
    response = await client.get("/v1/transcriptions", params=params)
    assert response.status_code == 422
    assert response.json()["code"] == "invalid_cursor"


async def test_a_value_postgres_cannot_take_is_refused_by_the_reader_not_a_500(
    client: httpx.AsyncClient,
) -> None:
    # The routes range-check their input; the read port still turns an overflow into 422.
    reader = services_of(client_app(client)).queries
    year_zero = datetime.fromisoformat("0001-01-01T00:00:00+14:00")
    with pytest.raises(InvalidInputError) as refused:
        await reader.jobs("default", JobFilter(created_after=year_zero), after=None, limit=1)
    assert refused.value.code == "invalid_query_value"


async def test_a_long_transcript_is_built_after_its_connection_went_back_to_the_pool(
    indexed: dict[str, Any], database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A long transcript takes a while to build (off the loop, one at a time): holding its
    database connection meanwhile would starve every other read of the pool. With a pool
    of one connection, another read goes through while the build is held."""
    long_job = uuid4()
    segments = [
        Segment(id=i, start=i * 5.0, end=i * 5.0 + 4.0, text=f"segment {i}")
        for i in range(queries.LARGE_TRANSCRIPT_SEGMENTS)
    ]
    completed = ev.completed(long_job).model_copy(update={"segments": segments})
    async with asyncpg.create_pool(database_url, min_size=1, max_size=1) as pool:
        for event in (ev.uploaded(long_job), completed):
            await PostgresProjectionStore(pool).apply(event)

    building, release = threading.Event(), threading.Event()
    model = queries._model

    def held(*args: Any) -> Any:
        building.set()
        assert release.wait(30)
        return model(*args)

    monkeypatch.setattr(queries, "_model", held)
    settings = IngestSettings(database_url=indexed["url"], reader_pool_size=1)
    async with queries.open_reader_pool(settings) as pool:
        reader = queries.JobReader.from_settings(pool, settings)
        long_read = asyncio.create_task(reader.transcript("default", long_job))
        try:
            assert await asyncio.to_thread(building.wait, 30)
            # Before: this waited for the pool's one connection until the build ended.
            assert (
                await asyncio.wait_for(
                    reader.status("default", indexed["jobs"]["done"]), timeout=10
                )
                == "completed"
            )
        finally:
            release.set()
        found = await long_read
    assert found is not None
    assert found.transcript is not None
    assert len(found.transcript.segments) == queries.LARGE_TRANSCRIPT_SEGMENTS
