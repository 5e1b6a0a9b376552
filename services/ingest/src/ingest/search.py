"""Full-text search over segments: bounded ranking, snippets only for the returned page.

Ranking every match of a common word over a million segments costs ~150 ms at p95, so a
query ranks at most `candidate_limit` matching segments (found through the GIN index,
tenant and filters applied first) and `ts_headline`, the other expensive part, runs only
for the page returned. The trade-off: when a query matches more segments than the limit,
the hits are the best of those considered, not of all matches (`approximate`), and paging
stops at the limit. Rare and multi-word queries, the ones where ranking matters, stay
under it and are ranked exactly.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final
from uuid import UUID

import asyncpg
from asyncpg.pool import PoolConnectionProxy

_MARK_START: Final = "\ue000"
_MARK_STOP: Final = "\ue001"
# Private-use markers, not `<mark>`, so the text itself can be HTML-escaped afterwards.
_HEADLINE_OPTIONS: Final = (
    f"StartSel={_MARK_START}, StopSel={_MARK_STOP}, MaxWords=35, MinWords=12, ShortWord=2"
)


@dataclass(frozen=True, slots=True)
class SearchQuery:
    """One page of one search, scoped to a tenant."""

    tenant_id: str
    text: str
    limit: int
    candidate_limit: int
    language: str | None = None
    speaker: str | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None
    after: tuple[float, UUID, int] | None = None
    """Keyset position: (rank, job_id, segment_id) of the previous page's last hit."""


@dataclass(frozen=True, slots=True)
class Hit:
    """A matching segment."""

    job_id: UUID
    segment_id: int
    start: float
    end: float
    language: str
    text: str
    snippet: str
    rank: float
    speaker: str | None = None


@dataclass(frozen=True, slots=True)
class SearchResult:
    """Hits, and whether more segments matched than were ranked."""

    hits: list[Hit]
    has_more: bool
    approximate: bool


_PARSED_SQL: Final = """
SELECT string_agg('(' || p.query::text || ')', ' | ' ORDER BY p.config)::tsquery
FROM (
    SELECT c.config::text AS config, websearch_to_tsquery(c.config, $2) AS query
    FROM (
        SELECT scribe_text_search_config($3) AS config WHERE $3::text IS NOT NULL
        UNION
        SELECT scribe_text_search_config(language) FROM search_languages
        WHERE tenant_id = $1 AND $3::text IS NULL
        UNION
        SELECT 'pg_catalog.english'::regconfig WHERE $3::text IS NULL
            AND NOT EXISTS (SELECT 1 FROM search_languages WHERE tenant_id = $1)
    ) c
) p
WHERE numnode(p.query) > 0
"""
"""The query parsed in the configuration of the filter's language, else in those of every
language the tenant's transcripts are in (English for a tenant with none yet), OR-ed: what
`q1 || q2 || ...` gives, by name order, without a round trip to learn the configurations
first. A tsquery's text is its exact input form, so the OR is built as text and cast back.
A configuration in which the query is only stop words ("the" in English) is left out, as
`||` would; with none left the query is NULL and matches nothing."""


def build_sql(query: SearchQuery) -> tuple[str, list[Any]]:
    """The one statement of a search and its parameters: the query parsed in the
    text-search configurations of the tenant's languages, OR-ed, against one GIN index."""
    params: list[Any] = [query.tenant_id, query.text, query.language]

    def param(value: Any) -> str:
        params.append(value)
        return f"${len(params)}"

    # A query of stop words only ("the", "and") parses to NULL here (or to nothing): the
    # first filter ends it before any segment is read.
    filters = ["numnode(q.query) > 0", "s.tenant_id = $1", "s.tsv @@ q.query"]
    if query.language is not None:
        filters.append("s.language = $3")
    if query.speaker is not None:
        filters.append(f"s.speaker = {param(query.speaker)}")
    job_filters = []
    if query.created_after is not None:
        job_filters.append(f"j.created_at >= {param(query.created_after)}")
    if query.created_before is not None:
        job_filters.append(f"j.created_at < {param(query.created_before)}")
    if job_filters:
        filters.append(
            "EXISTS (SELECT 1 FROM jobs j WHERE j.tenant_id = s.tenant_id "
            f"AND j.job_id = s.job_id AND {' AND '.join(job_filters)})"
        )
    page_filter = "true"
    if query.after is not None:
        rank, job_id, segment_id = query.after
        r, j, s = param(rank), param(job_id), param(segment_id)
        page_filter = (
            f"(rank < {r}::real OR (rank = {r}::real AND (job_id, segment_id) > ({j}, {s})))"
        )
    candidate_limit = param(query.candidate_limit)
    # Every value is a parameter; only the fixed fragments above are formatted in.
    page_limit = param(query.limit + 1)
    sql = f"""
WITH q AS MATERIALIZED (SELECT ({_PARSED_SQL}) AS query),
candidates AS (
    SELECT s.job_id, s.segment_id, s.start_seconds, s.end_seconds, s.text, s.language, s.tsv,
           s.speaker
    FROM q, segments s
    WHERE {" AND ".join(filters)}
    LIMIT {candidate_limit}
),
ranked AS (
    SELECT c.job_id, c.segment_id, c.start_seconds, c.end_seconds, c.text, c.language,
           c.speaker, ts_rank_cd(c.tsv, q.query, 1) AS rank, count(*) OVER () AS considered
    FROM candidates c, q
),
page AS (
    SELECT * FROM ranked WHERE {page_filter}
    ORDER BY rank DESC, job_id, segment_id
    LIMIT {page_limit}
)
SELECT p.job_id, p.segment_id, p.start_seconds, p.end_seconds, p.text, p.language, p.rank,
       p.speaker, p.considered,
       ts_headline(scribe_text_search_config(p.language), p.text, q.query, '{_HEADLINE_OPTIONS}')
           AS snippet
FROM page p, q
ORDER BY p.rank DESC, p.job_id, p.segment_id
"""
    return sql, params


def render_snippet(headline: str) -> str:
    """HTML-escape the headline, then turn the match markers into `<mark>`."""
    return (
        html.escape(headline, quote=False)
        .replace(_MARK_START, "<mark>")
        .replace(_MARK_STOP, "</mark>")
    )


async def search(
    conn: asyncpg.Connection | PoolConnectionProxy[asyncpg.Record], query: SearchQuery
) -> SearchResult:
    """Run one page of a search: one statement, one round trip."""
    sql, params = build_sql(query)
    rows = await conn.fetch(sql, *params)
    considered = rows[0]["considered"] if rows else 0
    hits = [
        Hit(
            job_id=r["job_id"],
            segment_id=r["segment_id"],
            start=r["start_seconds"],
            end=r["end_seconds"],
            language=r["language"],
            text=r["text"],
            snippet=render_snippet(r["snippet"]),
            rank=float(r["rank"]),
            speaker=r["speaker"],
        )
        for r in rows[: query.limit]
    ]
    return SearchResult(
        hits=hits,
        has_more=len(rows) > query.limit,
        approximate=considered >= query.candidate_limit,
    )
