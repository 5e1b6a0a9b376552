"""`GET /v1/search` reads its query string in one validation (`ingest.search_params`) and
writes its page straight from the rows (`read_models.search_page_json`); both must say
exactly what FastAPI and the models would have said: the same documented parameters, the
same 422s, the same bytes."""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Annotated, Any

import httpx
import pytest
from fastapi import Depends, FastAPI, Query

from ingest.app import build_read_app
from ingest.auth import ApiKeyring
from ingest.container import ReadServices, cursor_codec
from ingest.cursors import MAX_CURSOR_CHARS
from ingest.errors import install_error_handlers
from ingest.links import job_links
from ingest.read_models import SearchHit, SearchPage, search_page_json
from ingest.search import Hit
from ingest.search_params import SearchParams, search_params
from ingest.settings import IngestSettings


def _declared_by_fastapi() -> FastAPI:
    """The oracle: the route's parameters as they were declared before, one `Query` each."""
    app = FastAPI()
    install_error_handlers(app)

    @app.get("/v1/search")
    async def search(
        q: Annotated[
            str,
            Query(
                min_length=1,
                max_length=500,
                description=(
                    'Web-search syntax: words (all must match), "a phrase", `or`, `-excluded`.'
                ),
                examples=['"fellow americans" -taxes'],
            ),
        ],
        language: Annotated[str | None, Query(pattern=r"^[a-z]{2,3}$")] = None,
        speaker: Annotated[
            str | None,
            Query(
                pattern=r"^[A-Za-z0-9_-]{1,64}$",
                description="Only segments of this speaker (diarized jobs), e.g. `SPEAKER_00`.",
                examples=["SPEAKER_00"],
            ),
        ] = None,
        created_after: Annotated[
            datetime | None, Query(description="Job created at or after.")
        ] = None,
        created_before: Annotated[datetime | None, Query(description="Job created before.")] = None,
        limit: Annotated[int, Query(ge=1, le=100)] = 20,
        cursor: Annotated[str | None, Query(max_length=MAX_CURSOR_CHARS)] = None,
    ) -> dict[str, Any]:
        return SearchParams(
            q=q,
            language=language,
            speaker=speaker,
            created_after=created_after,
            created_before=created_before,
            limit=limit,
            cursor=cursor,
        ).model_dump(mode="json")

    return app


def _ours() -> FastAPI:
    app = FastAPI()
    install_error_handlers(app)

    @app.get("/v1/search")
    async def search(params: Annotated[SearchParams, Depends(search_params)]) -> dict[str, Any]:
        return params.model_dump(mode="json")

    return app


def test_the_document_lists_the_parameters_as_fastapi_would() -> None:
    settings = IngestSettings()
    services = ReadServices(
        settings=settings,
        keyring=ApiKeyring.load({}, None),
        queries=None,  # type: ignore[arg-type]  # the document reads no database
        cursors=cursor_codec(settings),
    )
    ours = build_read_app(services).openapi()["paths"]["/v1/search"]["get"]["parameters"]
    theirs = _declared_by_fastapi().openapi()["paths"]["/v1/search"]["get"]["parameters"]
    assert ours == theirs
    assert [p["name"] for p in ours] == [
        "q",
        "language",
        "speaker",
        "created_after",
        "created_before",
        "limit",
        "cursor",
    ]
    assert ours[0]["required"] is True
    assert not any(p["required"] for p in ours[1:])


QUERIES = [
    "",
    "q=",
    "q=country",
    "q=country&limit=0",
    "q=country&limit=101",
    "q=country&limit=abc",
    "q=country&limit=",
    "q=country&limit=20.5",
    "q=country&limit=99999999999999999999999",
    "q=country&language=EN",
    "q=country&language=",
    "q=country&speaker=a%20b",
    "q=country&speaker=" + "s" * 65,
    "q=country&created_after=yesterday",
    "q=country&created_after=2026-12-07T10:00:00%2B14:00&created_before=9999-12-31",
    "q=country&created_after=0001-01-01T00:00:00",
    "q=country&cursor=" + "c" * 1025,
    "q=" + "w" * 501,
    "q=a&q=b&limit=1&limit=2",
    "limit=0&language=EN&speaker=%21",
    "q=country&unknown=1&limit=5",
]


@pytest.mark.parametrize("query", QUERIES)
async def test_the_same_answer_as_fastapi_for_every_query_string(query: str) -> None:
    answers = []
    for app in (_declared_by_fastapi(), _ours()):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://ingest") as client:
            response = await client.get(f"/v1/search?{query}")
            answers.append((response.status_code, response.json()))
    assert answers[0] == answers[1]


def _hit(**overrides: Any) -> Hit:
    values: dict[str, Any] = {
        "job_id": uuid.UUID("4b0c7a3e-2a53-4c4f-9a0e-9e8b2f1c5d11"),
        "segment_id": 12,
        "start": 73.4,
        "end": 77.9,
        "language": "en",
        "text": "ask not what your country can do",
        "snippet": "ask not what your <mark>country</mark> can do",
        "rank": 0.1,
        "speaker": None,
    }
    return Hit(**(values | overrides))


@pytest.mark.parametrize(
    "hits",
    [
        [],
        [_hit()],
        [_hit(speaker="SPEAKER_01", rank=3.4e38, start=0.0, end=1e-7)],
        [_hit(text='"quoted" </script> \\ \u2028 naïve 日本語 \U0001f600', segment_id=2**31 - 1)],
        [_hit(job_id=uuid.uuid4(), segment_id=i, rank=1 / (i + 1)) for i in range(20)],
    ],
)
@pytest.mark.parametrize("cursor", [None, "v1.abc_-"])
def test_the_page_is_the_models_json_byte_for_byte(hits: list[Hit], cursor: str | None) -> None:
    page = SearchPage(
        query='"fellow americans" -taxes',
        hits=[
            SearchHit(
                job_id=h.job_id,
                segment_id=h.segment_id,
                start=h.start,
                end=h.end,
                language=h.language,
                speaker=h.speaker,
                text=h.text,
                snippet=h.snippet,
                rank=h.rank,
                links=job_links(h.job_id, "completed"),
            )
            for h in hits
        ],
        next_cursor=cursor,
        approximate=bool(hits),
    )
    ours = search_page_json(page.query, hits, cursor, bool(hits))
    assert ours == page.model_dump_json().encode()
    assert SearchPage.model_validate(json.loads(ours)) == page
