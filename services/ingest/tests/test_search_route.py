"""`GET /v1/search` over a fake reader: who is asked, for which tenant, and what comes back.

The route resolves its tenant, reader and cursor codec in one dependency
(`ingest.deps.TenantReads`); these pin what that must keep: the key checked on every
request, before any parameter, and the key's own tenant handed to the reader.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import httpx
import pytest

from ingest.app import build_read_app
from ingest.auth import ApiKeyring, hash_api_key
from ingest.container import ReadServices, cursor_codec
from ingest.queries import JobReader
from ingest.search import Hit, SearchResult
from ingest.settings import IngestSettings

KEYS = {"key-of-acme": "acme", "key-of-globex": "globex"}
ASK_FOR_A_KEY = "send an API key: Authorization: Bearer <key>"
JOB = uuid.UUID("4b0c7a3e-2a53-4c4f-9a0e-9e8b2f1c5d11")


class FakeReader(JobReader):
    """Answers every search with one hit of `JOB`, and remembers who asked."""

    def __init__(self, settings: IngestSettings) -> None:
        super().__init__(
            None,  # type: ignore[arg-type]  # never reaches a pool
            timeout_seconds=1.0,
            search_candidate_limit=settings.search_candidate_limit,
        )
        self.calls: list[tuple[str, str, dict[str, Any]]] = []

    async def search(
        self,
        tenant: str,
        text: str,
        *,
        limit: int,
        language: str | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        after: tuple[float, uuid.UUID, int] | None = None,
        speaker: str | None = None,
    ) -> SearchResult:
        self.calls.append((tenant, text, {"limit": limit, "language": language, "after": after}))
        hit = Hit(
            job_id=JOB,
            segment_id=3,
            start=12.0,
            end=15.5,
            language="en",
            text="ask not what your country can do",
            snippet="ask not what your <mark>country</mark> can do",
            rank=0.25,
        )
        return SearchResult(hits=[hit], has_more=True, approximate=False)


@pytest.fixture
async def reader_and_client() -> AsyncIterator[tuple[FakeReader, httpx.AsyncClient]]:
    settings = IngestSettings(api_keys={hash_api_key(k): t for k, t in KEYS.items()})
    reader = FakeReader(settings)
    services = ReadServices(
        settings=settings,
        keyring=ApiKeyring.load(settings.api_keys, None),
        queries=reader,
        cursors=cursor_codec(settings),
    )
    transport = httpx.ASGITransport(app=build_read_app(services))
    async with httpx.AsyncClient(transport=transport, base_url="http://ingest") as client:
        yield reader, client


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        ({}, ASK_FOR_A_KEY),
        ({"Authorization": "Bearer key-of-nobody"}, "the API key is not valid"),
        ({"Authorization": "Basic a2V5LW9mLWFjbWU6"}, ASK_FOR_A_KEY),
    ],
)
async def test_without_a_valid_key_it_is_401_before_any_parameter_or_read(
    reader_and_client: tuple[FakeReader, httpx.AsyncClient],
    headers: dict[str, str],
    message: str,
) -> None:
    reader, client = reader_and_client
    for params in ({"q": "country"}, {}, {"q": "country", "limit": "0"}):
        response = await client.get("/v1/search", params=params, headers=headers)
        assert response.status_code == 401, response.text
        assert response.json() == {"code": "unauthenticated", "message": message}
        assert response.headers["www-authenticate"].startswith("Bearer")
    assert reader.calls == []


async def test_each_key_searches_its_own_tenant(
    reader_and_client: tuple[FakeReader, httpx.AsyncClient],
) -> None:
    reader, client = reader_and_client
    for key, tenant in KEYS.items():
        response = await client.get(
            "/v1/search",
            params={"q": "country", "limit": "1", "language": "en"},
            headers={"Authorization": f"Bearer {key}"},
        )
        assert response.status_code == 200, response.text
        expected = {"limit": 1, "language": "en", "after": None}
        assert reader.calls[-1] == (tenant, "country", expected)
    assert [call[0] for call in reader.calls] == ["acme", "globex"]


async def test_a_page_and_its_cursor(
    reader_and_client: tuple[FakeReader, httpx.AsyncClient],
) -> None:
    reader, client = reader_and_client
    acme = {"Authorization": "Bearer key-of-acme"}
    response = await client.get("/v1/search", params={"q": "country", "limit": "1"}, headers=acme)
    assert response.headers["content-type"] == "application/json"
    page = response.json()
    assert page["query"] == "country"
    assert page["approximate"] is False
    [hit] = page["hits"]
    assert hit["job_id"] == str(JOB)
    assert hit["snippet"] == "ask not what your <mark>country</mark> can do"
    assert hit["links"]["self"] == f"/v1/transcriptions/{JOB}"
    assert hit["links"]["transcript_vtt"] == f"/v1/transcriptions/{JOB}/transcript.vtt"

    following = await client.get(
        "/v1/search",
        params={"q": "country", "limit": "1", "cursor": page["next_cursor"]},
        headers=acme,
    )
    assert following.status_code == 200, following.text
    assert reader.calls[-1][2]["after"] == (0.25, JOB, 3)

    # Another tenant's cursor is not this tenant's: refused, and nothing is read.
    calls = len(reader.calls)
    stolen = await client.get(
        "/v1/search",
        params={"q": "country", "limit": "1", "cursor": page["next_cursor"]},
        headers={"Authorization": "Bearer key-of-globex"},
    )
    assert stolen.status_code == 422, stolen.text
    assert stolen.json()["code"] == "invalid_cursor"
    assert len(reader.calls) == calls


async def test_invalid_parameters_are_422_with_a_stable_code(
    reader_and_client: tuple[FakeReader, httpx.AsyncClient],
) -> None:
    reader, client = reader_and_client
    acme = {"Authorization": "Bearer key-of-acme"}
    for params in ({}, {"q": " "}, {"q": "x", "limit": "101"}, {"q": "x", "language": "EN"}):
        response = await client.get("/v1/search", params=params, headers=acme)
        assert response.status_code == 422, (params, response.text)
        assert response.json()["code"] == "validation_error"
    assert reader.calls == []
