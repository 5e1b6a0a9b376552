"""Search latency over a million segments: the HTTP API versus the bare SQL.

    uv run python -m bench.search                 # 1,000,000 segments (default)
    uv run python -m bench.search --segments 50000 --rounds 5   # a quick check

Loads segments into a throwaway database (created, migrated by the indexer's own
migrations, dropped afterwards unless `--keep`), with words drawn from a Zipf (1/rank)
distribution over a 20,000-word vocabulary whose head is English stop words, like speech.
"Common" terms then match ~3-5 % of all segments (tens of thousands of rows at 1M), "rare"
terms a few dozen. Prints p50/p95 of:

- `sql`: the one statement the API runs for a search (the tenant's text-search
  configurations, bounded candidate ranking, `ts_headline` for the page), executed
  directly with asyncpg as the reader role, on a connection prepared as the API's pool
  prepares its own (`ingest.queries.keep_backend_heap`) and used for nothing else (a
  backend that has run a larger query keeps more heap, and searches ~20 % faster);
- `http`: `GET /v1/search` against the real read router served in a separate process as
  `scribe-ingest serve` serves it (uvicorn with `ingest.server.server_config`), over TCP on
  127.0.0.1 (includes HTTP, validation and JSON), from aiohttp: a
  client whose HTTP parser is compiled, as asyncpg's protocol is on the SQL side;
- `http-httpx` (common terms): the same requests from httpx, whose pure-Python HTTP/1.1
  costs the client ~2 CPU-ms more per request (what `http` measured before);
- `sql-rank-all`: the naive statement ranking every match, for comparison.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import random
import statistics
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, Final
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import asyncpg
import httpx
import uvicorn

from bench.common import API_HEADERS, Result, cpu_seconds, percentile
from indexer.migrate import prepare_database
from ingest.app import create_read_app
from ingest.queries import keep_backend_heap
from ingest.search import SearchQuery, build_sql
from ingest.server import server_config
from ingest.settings import IngestSettings
from tests.support.ports import free_port
from tests.support.waiting import eventually_async

TENANT: Final = "default"
READER: Final = "scribe_reader"
SEGMENTS_PER_JOB: Final = 100
VOCABULARY_SIZE: Final = 20_000
STOP_WORDS: Final = [
    "the",
    "and",
    "of",
    "to",
    "a",
    "in",
    "that",
    "is",
    "it",
    "you",
    "i",
    "was",
    "for",
    "on",
    "are",
    "with",
    "as",
    "be",
    "this",
    "have",
    "at",
    "but",
    "not",
    "they",
    "we",
    "he",
    "or",
    "from",
    "by",
    "so",
    "what",
    "there",
    "all",
    "were",
    "if",
    "one",
    "would",
    "about",
    "can",
    "which",
    "their",
    "do",
]
COMMON_WORDS: Final = [
    "people",
    "time",
    "know",
    "think",
    "really",
    "going",
    "right",
    "like",
    "just",
    "government",
    "country",
    "work",
    "year",
    "world",
    "new",
    "good",
    "way",
    "make",
    "school",
    "water",
    "money",
    "family",
    "question",
    "problem",
    "story",
    "city",
]
_SYLLABLES: Final = [
    "ba",
    "be",
    "bi",
    "bo",
    "bu",
    "ka",
    "ke",
    "ki",
    "ko",
    "ku",
    "la",
    "le",
    "li",
    "lo",
    "lu",
    "ma",
    "me",
    "mi",
    "mo",
    "mu",
    "na",
    "ne",
    "ni",
    "no",
    "nu",
    "ra",
    "re",
    "ri",
    "ro",
    "ru",
    "sa",
    "se",
    "si",
    "so",
    "su",
    "ta",
    "te",
    "ti",
    "to",
    "tu",
    "va",
    "ve",
    "vi",
    "vo",
    "zu",
]


def vocabulary(seed: int = 7) -> list[str]:
    """Stop words first, then common words, then made-up words; index = Zipf rank."""
    rng = random.Random(seed)
    words = list(dict.fromkeys(STOP_WORDS + COMMON_WORDS))
    seen = set(words)
    while len(words) < VOCABULARY_SIZE:
        word = "".join(rng.choice(_SYLLABLES) for _ in range(rng.randint(2, 4)))
        if word not in seen:
            seen.add(word)
            words.append(word)
    return words


def with_database(url: str, name: str, user: str | None = None) -> str:
    parts = urlsplit(url)
    netloc = parts.netloc if user is None else f"{user}@{parts.netloc.rpartition('@')[2]}"
    return urlunsplit((parts.scheme, netloc, f"/{name}", parts.query, parts.fragment))


async def load(url: str, segments: int, vocab: list[str]) -> None:
    """Jobs, transcripts and segments, generated inside PostgreSQL (no client round trips)."""
    jobs = max(segments // SEGMENTS_PER_JOB, 1)
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(
            "INSERT INTO jobs (tenant_id, job_id, status, progress, first_event_at, updated_at, "
            "uploaded_at, language, model, duration_seconds) "
            "SELECT $1, gen_random_uuid(), 'completed', 1, t, t, t, 'en', 'tiny.en', 400 "
            "FROM (SELECT now() - make_interval(secs => i * 60) AS t "
            "      FROM generate_series(1, $2) AS i) AS g",
            TENANT,
            jobs,
        )
        await conn.execute(
            "INSERT INTO transcripts (tenant_id, job_id, event_id, language, "
            "language_probability, duration_seconds, model, text, segment_count, completed_at) "
            "SELECT tenant_id, job_id, gen_random_uuid(), 'en', 1, 400, 'tiny.en', '', $1, "
            "updated_at FROM jobs",
            SEGMENTS_PER_JOB,
        )
        # A GIN index is far cheaper to build once than to maintain row by row.
        await conn.execute("DROP INDEX segments_tsv_idx")
        job_ids = [r["job_id"] for r in await conn.fetch("SELECT job_id FROM jobs ORDER BY 1")]
    finally:
        await conn.close()

    per_job = -(-segments // jobs)
    insert = (
        "INSERT INTO segments (tenant_id, job_id, segment_id, start_seconds, end_seconds, text, "
        "language) "
        "SELECT $1, j, s, s * 4.0, s * 4.0 + 3.5, "
        # Zipf(1) over the vocabulary: a log-uniform rank. `0 * s` ties the subquery to the
        # row so PostgreSQL draws new words for every segment.
        "  (SELECT string_agg(($2::text[])[1 + floor(exp(random() * ln($3::float8 + 1)) - 1)::int],"
        "   ' ') FROM generate_series(1, 6 + floor(random() * 15)::int + 0 * s)), 'en' "
        "FROM unnest($4::uuid[]) AS j, generate_series(0, $5 - 1) AS s"
    )
    batches = [job_ids[i : i + 200] for i in range(0, len(job_ids), 200)]
    queue: asyncio.Queue[list[uuid.UUID]] = asyncio.Queue()
    for batch in batches:
        queue.put_nowait(batch)

    async def worker() -> None:
        c = await asyncpg.connect(url)
        try:
            while not queue.empty():
                batch = queue.get_nowait()
                await c.execute(insert, TENANT, vocab, len(vocab), batch, per_job)
        finally:
            await c.close()

    await asyncio.gather(*(worker() for _ in range(2)))
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("SET maintenance_work_mem = '512MB'")
        await conn.execute("CREATE INDEX segments_tsv_idx ON segments USING gin (tsv)")
        await conn.execute("VACUUM ANALYZE segments")
        await conn.execute("ANALYZE jobs")
    finally:
        await conn.close()


async def timed(
    rounds: int, terms: list[str], call: Callable[[str], Awaitable[object]]
) -> list[float]:
    return (await timed_together(rounds, terms, {"": call}))[""]


async def timed_together(
    rounds: int, terms: list[str], calls: dict[str, Callable[[str], Awaitable[object]]]
) -> dict[str, list[float]]:
    """Latency samples of each path, taken side by side: every term is asked on every path
    back to back, the path that goes first rotating from one ask to the next. Timing one
    path through all its rounds and then the other would put whatever the machine did in
    between (another process, PostgreSQL's own work, a slower minute) into the ratio: the
    same statement's p50 moved between 3.3 and 6.0 ms from one run to the next here."""
    names = list(calls)
    for term in terms:  # warm caches and prepared statements; not measured
        for name in names:
            await calls[name](term)
    samples: dict[str, list[float]] = {name: [] for name in names}
    turn = 0
    for _ in range(rounds):
        for term in terms:
            first = turn % len(names)
            turn += 1
            for name in names[first:] + names[:first]:
                started = time.perf_counter()
                await calls[name](term)
                samples[name].append((time.perf_counter() - started) * 1000)
    return samples


def serve(port: int) -> None:
    """The real read router, served as `scribe-ingest serve` serves ingest: uvicorn with
    `ingest.server.server_config` (its header-limited httptools protocol, one write per
    response, no proxy headers, no access log), on 127.0.0.1."""
    settings = IngestSettings()
    app = create_read_app(settings)
    config = server_config(app, settings, host="127.0.0.1", port=port, log_level="warning")
    uvicorn.Server(config).run()


async def measure(
    reader_url: str,
    terms: dict[str, list[str]],
    rounds: int,
    languages: tuple[str, ...] = ("en",),
) -> list[dict[str, Any]]:
    settings = IngestSettings(database_url=reader_url)
    figures: list[dict[str, Any]] = []
    conn = await asyncpg.connect(reader_url)
    await keep_backend_heap(conn)
    # Row-level security shows the reader only the tenant set for its session, as the API
    # sets it per transaction; set for the whole session here (a no-op without RLS).
    await conn.execute("SELECT set_config('scribe.tenant_id', $1, false)", TENANT)
    # Counting the matches scans them all: on its own connection, so that the one timed
    # as `sql` has run nothing the API's connections do not run. (Once it counted here,
    # and its backend, left with the heap of that larger query, ran the search ~2 ms
    # faster than a fresh one: 1.44-1.55 x where the same paths on equal backends gave
    # 1.18-1.23 x.)
    counter = await asyncpg.connect(reader_url)
    await counter.execute("SELECT set_config('scribe.tenant_id', $1, false)", TENANT)
    # What the API parses each query with: one configuration per language of the tenant.
    configs = sorted(
        {
            await conn.fetchval("SELECT scribe_text_search_config($1)::text", language)
            for language in languages
        }
    )
    label = "+".join(languages)
    port = free_port()
    env = os.environ | {
        "SCRIBE_INGEST_DATABASE_URL": reader_url,
        "SCRIBE_LOG_LEVEL": "WARNING",
    }
    server = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.search", "--serve", str(port), env=env
    )
    try:
        async with (
            httpx.AsyncClient(
                base_url=f"http://127.0.0.1:{port}", timeout=30, headers=API_HEADERS
            ) as client,
            aiohttp.ClientSession(
                f"http://127.0.0.1:{port}",
                headers=API_HEADERS,
                timeout=aiohttp.ClientTimeout(total=30),
            ) as session,
        ):

            async def ready() -> bool:
                return (await client.get("/v1/search", params={"q": "x"})).status_code == 200

            await eventually_async(
                ready, within=60, interval=0.1, what="the search app answering",
                ignoring=(httpx.TransportError,),
            )  # fmt: skip

            async def sql(term: str, limit: int = settings.search_candidate_limit) -> object:
                query = SearchQuery(tenant_id=TENANT, text=term, limit=20, candidate_limit=limit)
                statement, params = build_sql(query)
                return await conn.fetch(statement, *params)

            async def sql_rank_all(term: str) -> object:
                return await sql(term, 2**31 - 1)

            async def http(term: str) -> object:
                params = {"q": term, "limit": "20"}
                async with session.get("/v1/search", params=params) as response:
                    response.raise_for_status()
                    return await response.read()

            async def http_httpx(term: str) -> object:
                response = await client.get("/v1/search", params={"q": term, "limit": 20})
                response.raise_for_status()
                return response

            print(f"tenant languages: {label} (query parsed with {', '.join(configs)})")
            print(f"{'terms':<8} {'path':<13} {'p50 ms':>8} {'p95 ms':>8} {'matches':>9}")
            for kind, words in terms.items():
                counts = [
                    await counter.fetchval(
                        "SELECT count(*) FROM segments "
                        "WHERE tsv @@ websearch_to_tsquery('english', $1)",
                        w,
                    )
                    for w in words
                ]
                paths: dict[str, Callable[[str], Awaitable[object]]] = {"sql": sql, "http": http}
                if kind == "common":
                    paths["http-httpx"] = http_httpx
                # The API process's own CPU per request: its fixed cost, which a busy
                # machine's wall-clock latencies hide (warm-up calls included).
                cpu_before = cpu_seconds(server.pid)
                together = await timed_together(rounds, words, paths)
                server_cpu = cpu_seconds(server.pid) - cpu_before
                requests = sum(len(v) + len(words) for k, v in together.items() if k != "sql")
                if kind == "common":
                    # Ranking every match takes ~10x as long; timed on its own afterwards,
                    # so that it does not stand between the paths compared above.
                    together["sql-rank-all"] = await timed(rounds, words, sql_rank_all)
                for name, samples in together.items():
                    figures.append(
                        {
                            "terms": kind,
                            "path": name,
                            "languages": label,
                            "p50_ms": statistics.median(samples),
                            "p95_ms": percentile(samples, 95),
                            "matches": round(statistics.mean(counts)),
                            "samples": len(samples),
                            "api_cpu_ms_per_request": (
                                1000 * server_cpu / requests if name.startswith("http") else None
                            ),
                        }
                    )
                    print(
                        f"{kind:<8} {name:<13} {statistics.median(samples):>8.1f} "
                        f"{percentile(samples, 95):>8.1f} {round(statistics.mean(counts)):>9}"
                    )
    finally:
        server.terminate()
        await asyncio.wait_for(server.wait(), timeout=10)
        await conn.close()
        await counter.close()
    return figures


async def _run(args: argparse.Namespace) -> dict[str, Any]:
    name = f"scribe_bench_{uuid.uuid4().hex[:8]}"
    url = with_database(args.admin_url, name)
    vocab = vocabulary()
    await prepare_database(url, reader_role=READER, reader_password=None, tenants=(TENANT,))
    try:
        started = time.perf_counter()
        await load(url, args.segments, vocab)
        conn = await asyncpg.connect(url)
        try:
            count = await conn.fetchval("SELECT count(*) FROM segments")
        finally:
            await conn.close()
        loaded = time.perf_counter() - started
        print(f"loaded {count:,} segments in {loaded:.0f} s ({name})")
        rare_start = VOCABULARY_SIZE - 10
        terms = {
            "common": COMMON_WORDS[:8],
            "rare": vocab[rare_start : rare_start + 8],
            "two": [f"{a} {b}" for a, b in zip(COMMON_WORDS[:8], COMMON_WORDS[8:16], strict=True)],
            "phrase": [f'"{a} {b}"' for a, b in itertools.pairwise(COMMON_WORDS[:9])],
        }
        reader = with_database(url, name, READER)
        rows = await measure(reader, terms, args.rounds)
        if args.mixed:
            # The same English segments, searched as by a tenant whose transcripts are also
            # in German, French and Spanish: each query is parsed in four configurations.
            mixed = ("en", "de", "fr", "es")
            conn = await asyncpg.connect(url)
            try:
                await conn.executemany(
                    "INSERT INTO search_languages VALUES ($1, $2) ON CONFLICT DO NOTHING",
                    [(TENANT, language) for language in mixed],
                )
            finally:
                await conn.close()
            rows += await measure(reader, terms, args.rounds, mixed)
        return {"segments": count, "load_s": loaded, "terms": terms, "rows": rows}
    finally:
        if not args.keep:
            admin = await asyncpg.connect(args.admin_url)
            try:
                await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            finally:
                await admin.close()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--segments", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=20, help="passes over each term list")
    parser.add_argument(
        "--admin-url",
        default=os.environ.get(
            "SCRIBE_BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
        ),
        help="a role that may create databases; the benchmark's own database is dropped after",
    )
    parser.add_argument("--keep", action="store_true", help="keep the loaded database")
    # The API's own process, started by `measure` (not for use by hand).
    parser.add_argument("--serve", type=int, metavar="PORT", help=argparse.SUPPRESS)
    parser.add_argument(
        "--mixed",
        action="store_true",
        help="measure again as a tenant with en+de+fr+es transcripts (search per language)",
    )
    return parser


def run(quick: bool = False) -> Result:
    """`python -m bench search`: 1M segments, 20 rounds (quick: 50k segments, 3 rounds)."""
    argv = ["--segments", "50000", "--rounds", "3"] if quick else ["--rounds", "20"]
    argv.append("--mixed")
    args = _parser().parse_args(argv)
    figures = asyncio.run(_run(args))
    result = Result(
        name="search",
        title=f"search latency over {figures['segments']:,} segments: HTTP API vs bare SQL",
        columns=["terms", "languages", "path", "p50 ms", "p95 ms", "matches", "API CPU-ms/req"],
        settings={"segments": args.segments, "rounds": args.rounds, "terms": figures["terms"]},
        figures=figures,
    )
    for row in figures["rows"]:
        result.rows.append(
            [
                row["terms"],
                row["languages"],
                row["path"],
                round(row["p50_ms"], 1),
                round(row["p95_ms"], 1),
                row["matches"],
                None
                if row.get("api_cpu_ms_per_request") is None
                else round(row["api_cpu_ms_per_request"], 2),
            ]
        )
    # The target is English search: the rows of the English-only tenant.
    p95 = {(r["terms"], r["path"]): r["p95_ms"] for r in figures["rows"] if r["languages"] == "en"}
    ratios = {
        kind: p95[(kind, "http")] / p95[(kind, "sql")]
        for kind in figures["terms"]
        if (kind, "http") in p95 and (kind, "sql") in p95
    }
    figures["http_over_sql_p95"] = ratios
    httpx_ratio = p95[("common", "http-httpx")] / p95[("common", "sql")]
    figures["http_httpx_over_sql_p95_common"] = httpx_ratio
    result.notes = [
        "HTTP p95 / SQL p95: " + ", ".join(f"{k} {v:.2f}" for k, v in ratios.items()),
        f"from httpx instead of aiohttp: common {httpx_ratio:.2f}",
        f"loaded in {figures['load_s']:.0f} s; targets (DESIGN.md): p95 < 50 ms with ranked "
        "snippets, common words included; HTTP within 1.3 x the bare SQL",
        "sql-rank-all: the naive statement ranking every match, for comparison",
    ]
    return result


def main() -> None:
    args = _parser().parse_args()
    if args.serve is not None:
        serve(args.serve)
        return
    asyncio.run(_run(args))


if __name__ == "__main__":
    main()
