"""API keys and tenant isolation: 401 without a valid key; another tenant's data is 404,
and PostgreSQL itself (row-level security) is what keeps it from the reader role."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import asyncpg
import pytest
from fastapi import FastAPI

from indexer.migrate import prepare_database
from indexer.store import PostgresProjectionStore
from ingest.queries import JobReader
from services.indexer.tests import job_events as ev
from tests.security.support import KEYS, TENANTS, auth, client, running_app
from tests.support.servers import READER, as_role

pytestmark = pytest.mark.integration

TENANT_TABLES = ("tenants", "jobs", "transcripts", "segments", "processed_events")


@pytest.fixture
async def jobs(database_url: str) -> dict[str, UUID]:
    """One completed job per tenant (same words, so a search would match both)."""
    await prepare_database(database_url, reader_role=READER, reader_password=None, tenants=TENANTS)
    made = {tenant: uuid4() for tenant in TENANTS}
    async with asyncpg.create_pool(database_url, min_size=1, max_size=2) as pool:
        store = PostgresProjectionStore(pool)
        for tenant, job in made.items():
            for event in ev.completed_job(job, tenant=tenant):
                await store.apply(event)
    return made


@pytest.fixture
async def app(
    amqp_url: str, database_url: str, jobs: dict[str, UUID], tmp_path: Path
) -> AsyncIterator[FastAPI]:
    async with running_app(amqp_url, as_role(database_url, READER), tmp_path / "media") as app:
        yield app


def v1_requests(app: FastAPI) -> list[tuple[str, str]]:
    """(method, path) of every /v1 operation in the OpenAPI schema, path parameters filled."""
    found = []
    for path, operations in app.openapi()["paths"].items():
        if path.startswith("/v1"):
            concrete = re.sub(r"\{[^}]+\}", str(uuid4()), path)
            found += [(method.upper(), concrete) for method in sorted(operations)]
    return found


WRONG_CREDENTIALS: dict[str, dict[str, str]] = {
    "none": {},
    "unknown": {"Authorization": "Bearer not-a-key"},
    "empty": {"Authorization": "Bearer "},
    "basic-scheme": {"Authorization": f"Basic {KEYS['acme']}"},
    "no-scheme": {"Authorization": KEYS["acme"]},
    "wrong-case": {"Authorization": f"Bearer {KEYS['acme'].upper()}"},
    "extended": {"Authorization": f"Bearer {KEYS['acme']}x"},
    "truncated": {"Authorization": f"Bearer {KEYS['acme'][:-1]}"},
    # Keys are configured, so the public development key no longer opens anything.
    "dev-key": {"Authorization": "Bearer dev-insecure-key"},
    "other-header": {"X-API-Key": KEYS["acme"]},
}


async def test_every_v1_endpoint_refuses_a_missing_or_wrong_key(app: FastAPI) -> None:
    requests = v1_requests(app)
    assert len(requests) >= 5, requests  # submit, list, get, export, search at least
    async with client(app) as http:
        for name, headers in WRONG_CREDENTIALS.items():
            for method, path in requests:
                response = await http.request(method, path, headers=headers)
                assert response.status_code == 401, (name, method, path, response.text)
                body = response.json()
                # The OpenAI-compatible routes word every error in OpenAI's shape.
                openai_shaped = path.startswith(("/v1/audio/", "/v1/models"))
                assert (body["error"] if openai_shaped else body)["code"] == "unauthenticated"
                assert response.headers["www-authenticate"].startswith("Bearer")
        # The right key passes the same door (the job is unknown, so 404, not 401).
        response = await http.get(f"/v1/transcriptions/{uuid4()}", headers=auth("acme"))
        assert response.status_code == 404


async def test_an_unauthenticated_upload_stores_and_publishes_nothing(
    app: FastAPI, tmp_path: Path
) -> None:
    async with client(app) as http:
        response = await http.post(
            "/v1/transcriptions", files={"file": ("a.wav", b"RIFF" + b"\0" * 5000, "audio/wav")}
        )
    assert response.status_code == 401
    media = tmp_path / "media"
    assert not [p for p in media.rglob("*") if p.is_file()]


async def test_health_and_metrics_stay_open(app: FastAPI) -> None:
    async with client(app) as http:
        for path in ("/healthz", "/readyz", "/metrics"):
            response = await http.get(path)
            assert response.status_code in (200, 503), path  # never 401
            assert response.status_code != 401


@pytest.mark.parametrize(
    "suffix", ["", "/transcript.json", "/transcript.txt", "/transcript.srt", "/transcript.vtt"]
)
async def test_another_tenants_job_and_transcript_are_not_found(
    app: FastAPI, jobs: dict[str, UUID], suffix: str
) -> None:
    async with client(app, "acme") as acme, client(app, "globex") as globex:
        own = await globex.get(f"/v1/transcriptions/{jobs['globex']}{suffix}")
        assert own.status_code == 200, own.text  # the job exists: globex sees it
        foreign = await acme.get(f"/v1/transcriptions/{jobs['globex']}{suffix}")
        assert foreign.status_code == 404
        assert foreign.json() == {
            "code": "not_found",
            "message": f"no transcription '{jobs['globex']}'",
        }  # the same answer as for a job that never existed
        never = await acme.get(f"/v1/transcriptions/{uuid4()}{suffix}")
        assert never.status_code == 404


async def test_listing_and_search_show_only_the_callers_tenant(
    app: FastAPI, jobs: dict[str, UUID]
) -> None:
    word = ev.SEGMENT_TEXTS[0].split()[1]
    for tenant in TENANTS:
        async with client(app, tenant) as http:
            listed = (await http.get("/v1/transcriptions")).json()["items"]
            assert [item["id"] for item in listed] == [str(jobs[tenant])]
            hits = (await http.get("/v1/search", params={"q": word})).json()["hits"]
            assert hits, f"{tenant} finds its own transcript"
            assert {hit["job_id"] for hit in hits} == {str(jobs[tenant])}


async def _tenant_rows(conn: asyncpg.Connection) -> dict[str, set[str]]:
    rows: dict[str, set[str]] = {}
    for table in TENANT_TABLES:
        found = await conn.fetch(f"SELECT DISTINCT tenant_id FROM {table}")
        rows[table] = {r["tenant_id"] for r in found}
    return rows


async def test_the_reader_role_sees_only_the_tenant_set_for_its_transaction(
    database_url: str, jobs: dict[str, UUID]
) -> None:
    reader = await asyncpg.connect(as_role(database_url, READER))
    try:
        # No tenant set: nothing at all, not every tenant's rows.
        assert await _tenant_rows(reader) == {table: set() for table in TENANT_TABLES}
        async with reader.transaction(readonly=True):
            await reader.execute("SELECT set_config('scribe.tenant_id', $1, true)", "acme")
            assert await _tenant_rows(reader) == {table: {"acme"} for table in TENANT_TABLES}
            # Asking for globex's rows by name, with acme set, still finds none of them.
            for table in ("jobs", "transcripts", "segments", "processed_events"):
                count = await reader.fetchval(
                    f"SELECT count(*) FROM {table} WHERE tenant_id = 'globex'"
                )
                assert count == 0, table
            assert (
                await reader.fetchval("SELECT count(*) FROM jobs WHERE job_id = $1", jobs["globex"])
                == 0
            )
            hits = await reader.fetchval(
                "SELECT count(*) FROM segments WHERE tsv @@ websearch_to_tsquery('english', $1)",
                ev.SEGMENT_TEXTS[0].split()[1],
            )
            assert hits == 1  # acme's segment only, though globex's has the same words
        # The setting ended with the transaction: a pooled connection forgets the tenant.
        assert await _tenant_rows(reader) == {table: set() for table in TENANT_TABLES}
        # Turning row security off is refused to the reader, not a way around it.
        await reader.execute("SET row_security = off")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await reader.fetchval("SELECT count(*) FROM jobs")
    finally:
        await reader.close()


async def test_every_table_with_a_tenant_column_forces_row_level_security(
    database_url: str, jobs: dict[str, UUID]
) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        tables: list[Any] = await conn.fetch(
            "SELECT c.relname, c.relrowsecurity, c.relforcerowsecurity "
            "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'tenant_id' "
            "WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p')"
        )
        leakproof = await conn.fetchval(
            "SELECT proleakproof FROM pg_proc "
            "WHERE oid = 'pg_catalog.ts_match_vq(tsvector, tsquery)'::regprocedure"
        )
    finally:
        await conn.close()
    assert {t["relname"] for t in tables} >= set(TENANT_TABLES)
    unprotected = [
        t["relname"] for t in tables if not (t["relrowsecurity"] and t["relforcerowsecurity"])
    ]
    assert unprotected == []
    assert leakproof, "search can use its GIN index under row-level security"


async def test_a_pooled_reader_connection_carries_no_tenant_into_the_next_read(
    database_url: str, jobs: dict[str, UUID]
) -> None:
    """One connection, reads of two tenants in turn, one failing half way: each read sees
    only its tenant, and between reads the session holds no tenant and no transaction."""
    async with asyncpg.create_pool(
        as_role(database_url, READER), min_size=1, max_size=1, reset=_no_reset
    ) as pool:
        reader = JobReader(pool, timeout_seconds=5, search_candidate_limit=1000)

        async def left_behind() -> tuple[bool, str | None]:
            async with pool.acquire() as conn:
                open_transaction = conn.is_in_transaction()
                setting = await conn.fetchval("SELECT current_setting('scribe.tenant_id', true)")
                return open_transaction, setting or None

        async def failing_read() -> None:
            async with reader._connection("acme") as conn:
                await conn.fetchval("SELECT 1")
                raise ZeroDivisionError

        word = ev.SEGMENT_TEXTS[0].split()[1]
        for tenant in (*TENANTS, *TENANTS):
            found = await reader.search(tenant, word, limit=20)
            assert {h.job_id for h in found.hits} == {jobs[tenant]}
            assert await left_behind() == (False, None)
        with pytest.raises(ZeroDivisionError):
            await failing_read()
        assert await left_behind() == (False, None)
        assert await reader.job("globex", jobs["acme"]) is None
        with pytest.raises(ValueError, match="not a tenant id"):
            await reader.job("acme'; SET ROLE postgres; --", jobs["acme"])


async def test_a_read_whose_commit_fails_answers_and_leaves_no_session_behind(
    database_url: str, jobs: dict[str, UUID]
) -> None:
    """A read's transaction ends after its answer is in hand (`JobReader._end`): when that
    COMMIT fails (here the backend is killed first), what was read stands, the connection
    is dropped rather than pooled, and the next read gets a clean session."""
    async with asyncpg.create_pool(
        as_role(database_url, READER), min_size=1, max_size=1, reset=_no_reset
    ) as pool:
        reader = JobReader(pool, timeout_seconds=5, search_candidate_limit=1000)
        admin = await asyncpg.connect(database_url)
        try:
            async with reader._connection("acme") as conn:
                pid = conn.get_server_pid()
                seen = await conn.fetchval("SELECT count(*) FROM jobs")
                assert await admin.fetchval("SELECT pg_terminate_backend($1)", pid)
        finally:
            await admin.close()
        assert seen == 1  # acme's one job, read before the backend went
        async with pool.acquire() as conn:
            assert conn.get_server_pid() != pid
            assert not conn.is_in_transaction()
            assert await conn.fetchval("SELECT current_setting('scribe.tenant_id', true)") in (
                None,
                "",
            )
        assert await reader.job("acme", jobs["acme"]) is not None


async def _no_reset(conn: asyncpg.Connection) -> None:
    """As ingest's pool: no session reset on release (`ingest.queries`)."""
