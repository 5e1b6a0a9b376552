"""Search per language (migration 0010), through the indexer and the read API.

Each transcript's segments are indexed with its language's text-search configuration: a
German word in another inflection finds the German transcript, English behaves as before,
and a language PostgreSQL has no stemmer for is indexed word for word (`simple`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any
from uuid import UUID, uuid4

import asyncpg
import httpx
import pytest

from contracts import TranscriptCompletedV1
from contracts.transcription import Segment
from indexer.migrate import prepare_database
from indexer.store import PostgresProjectionStore
from ingest import search
from services.indexer.tests import job_events as ev
from tests.integration.test_read_api import AUTH, make_app
from tests.support.servers import READER, as_role

pytestmark = pytest.mark.integration

TEXTS = {
    "de": "Die Kinder spielten gestern in den alten Häusern am Fluss.",
    "en": "The children were running quickly between the old houses by the river.",
    "sw": "Watoto walicheza nyumbani jana jioni.",  # Swahili: PostgreSQL has no stemmer
    "fr": "Les enfants chantaient des chansons anciennes.",
}


def completed(job: UUID, language: str) -> TranscriptCompletedV1:
    text = TEXTS[language]
    base = ev.completed(job, "default")
    segment = Segment(id=0, start=1.0, end=4.0, text=text)
    return base.model_copy(update={"language": language, "segments": [segment], "text": text})


@pytest.fixture
async def client(database_url: str) -> AsyncIterator[tuple[httpx.AsyncClient, dict[str, UUID]]]:
    await prepare_database(
        database_url, reader_role=READER, reader_password=None, tenants=("default", "acme")
    )
    jobs = {language: uuid4() for language in TEXTS}
    async with asyncpg.create_pool(database_url, min_size=1, max_size=2) as pool:
        store = PostgresProjectionStore(pool)
        for language, job in jobs.items():
            for event in ev.completed_job(job)[:-1]:
                await store.apply(event)
            await store.apply(completed(job, language))
    app = make_app(as_role(database_url, READER))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://test", headers=AUTH
        ) as http:
            yield http, jobs


async def found(http: httpx.AsyncClient, q: str, **params: Any) -> list[str]:
    response = await http.get("/v1/search", params={"q": q, **params})
    assert response.status_code == 200, response.text
    return [hit["job_id"] for hit in response.json()["hits"]]


async def test_a_german_word_in_another_inflection_finds_the_german_transcript(
    client: tuple[httpx.AsyncClient, dict[str, UUID]],
) -> None:
    http, jobs = client
    german = str(jobs["de"])
    assert await found(http, "Haus") == [german]  # "Häusern" stems to "haus"
    assert await found(http, "Kind") == [german]  # "Kinder"
    assert await found(http, "alte Flüsse") == [german]  # "alten", "Fluss"
    assert await found(http, "Haus", language="de") == [german]
    response = await http.get("/v1/search", params={"q": "Haus"})
    assert "<mark>Häusern</mark>" in response.json()["hits"][0]["snippet"]
    assert await found(http, "chanson", language="fr") == [str(jobs["fr"])]  # "chansons"


async def test_english_search_is_unchanged(
    client: tuple[httpx.AsyncClient, dict[str, UUID]],
) -> None:
    http, jobs = client
    english = str(jobs["en"])
    assert await found(http, "run") == [english]  # "running": English stemming as before
    assert await found(http, "house", language="en") == [english]
    assert await found(http, '"old houses"') == [english]
    assert await found(http, "the") == []  # an English stop word alone matches nothing
    assert await found(http, "river -children") == []


async def test_a_language_without_a_stemmer_is_indexed_word_for_word(
    client: tuple[httpx.AsyncClient, dict[str, UUID]],
) -> None:
    http, jobs = client
    swahili = str(jobs["sw"])
    assert await found(http, "nyumbani") == [swahili]
    assert await found(http, "Walicheza", language="sw") == [swahili]
    assert await found(http, "nyumba") == []  # no stemming: only the word itself


TRICKY_QUERIES = [
    "Haus",
    "the",  # a stop word in English, a word in German and in `simple`
    '"fellow americans" -taxes',
    'o\'neil \\back "a b c" -x or y',
    "l'été à Paris, naïve café",
    "it's o''clock\\'s \\\\x",
    "a:* b:AB c & d | !e <-> f",
    '"a -b" or -"c d"',
    "straße über",
    "\\\\'' ''' \\",  # no lexeme in any configuration
]


@pytest.mark.parametrize("language", [None, "de", "xx"])
async def test_the_query_is_parsed_in_one_statement_as_the_configurations_or_ed(
    client: tuple[httpx.AsyncClient, dict[str, UUID]], database_url: str, language: str | None
) -> None:
    """The search statement parses the query in every configuration of the tenant's
    languages and ORs them as text cast back to a tsquery: it is the very tsquery that
    `websearch_to_tsquery(c1, q) || websearch_to_tsquery(c2, q) || ...` gives (by name,
    stop-word-only configurations left out), which ranks and highlights the same."""
    conn = await asyncpg.connect(as_role(database_url, READER))
    try:
        await conn.execute("SELECT set_config('scribe.tenant_id', 'default', false)")
        configs = await conn.fetch(
            "SELECT DISTINCT scribe_text_search_config(language)::text AS c "
            "FROM search_languages WHERE $1::text IS NULL "
            "UNION SELECT scribe_text_search_config($1)::text WHERE $1::text IS NOT NULL "
            "ORDER BY 1",
            language,
        )
        assert len(configs) == (4 if language is None else 1)  # en, de, fr and simple (sw)
        for text in TRICKY_QUERIES:
            expected = None
            for row in configs:
                part = await conn.fetchval(
                    "SELECT q FROM websearch_to_tsquery($1::regconfig, $2) q WHERE numnode(q) > 0",
                    row["c"],
                    text,
                )
                if part is not None:
                    expected = (
                        part
                        if expected is None
                        else await conn.fetchval(
                            "SELECT $1::tsquery || $2::tsquery", expected, part
                        )
                    )
            parsed = await conn.fetchval(
                f"SELECT ({search._PARSED_SQL})::text", "default", text, language
            )
            assert parsed == expected, text
    finally:
        await conn.close()
