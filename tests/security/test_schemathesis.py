"""schemathesis over the ingest OpenAPI schema: generated requests (valid and invalid,
with and without a key) against the real app, broker and database. No 5xx, and every
response matches the schema: documented status, content type, headers and body.

The app runs in this process, served by uvicorn on a thread; the examples per operation
are bounded (`MAX_EXAMPLES`) so the run stays well under two minutes.
"""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from uuid import uuid4

import asyncpg
import httpx
import pytest
import schemathesis
import uvicorn
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Ok
from schemathesis.generation.modes import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from indexer.migrate import prepare_database
from indexer.store import PostgresProjectionStore
from ingest.app import create_app
from ingest.settings import IngestSettings
from scribe_runtime.settings import SharedSettings
from services.indexer.tests import job_events as ev
from tests.security.support import TENANTS, auth, keyring
from tests.support import probes
from tests.support.ports import free_port
from tests.support.servers import READER, as_role
from tests.support.waiting import eventually

pytestmark = pytest.mark.integration

MAX_EXAMPLES = 25
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


async def _seed(database_url: str) -> None:
    await prepare_database(database_url, reader_role=READER, reader_password=None, tenants=TENANTS)
    async with asyncpg.create_pool(database_url, min_size=1, max_size=2) as pool:
        store = PostgresProjectionStore(pool)
        for event in [*ev.completed_job(uuid4(), "acme"), *ev.failed_job(uuid4(), "acme")]:
            await store.apply(event)


@pytest.fixture
def live_api(amqp_url: str, database_url: str, tmp_path: Path) -> Iterator[str]:
    asyncio.run(_seed(database_url))
    app = create_app(
        SharedSettings(amqp_url=amqp_url, media_root=tmp_path / "media", tenants=TENANTS),
        IngestSettings(
            database_url=as_role(database_url, READER),
            api_keys=keyring(),
            max_upload_bytes=1_000_000,
            publish_timeout_seconds=5.0,
        ),
    )
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, port=port, log_config=None, access_log=False))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    eventually(
        lambda: probes.get(f"{base}/readyz", timeout=2).status_code == 200,
        within=30,
        interval=0.1,
        what="ingest answers /readyz",
        ignoring=(httpx.TransportError,),
    )
    try:
        yield base
    finally:
        server.should_exit = True
        thread.join(timeout=15)


def test_the_api_answers_every_generated_request_as_documented(live_api: str) -> None:
    schema = schemathesis.openapi.from_url(f"{live_api}/openapi.json")
    operations = []
    for result in schema.get_all_operations():
        assert isinstance(result, Ok), f"the OpenAPI schema is invalid: {result.err()}"
        operations.append(result.ok())
    assert len(operations) >= 7, [op.label for op in operations]
    failures: dict[str, str] = {}
    statuses: Counter[int] = Counter()
    runs = [(op, mode) for op in operations for mode in GenerationMode]
    for operation, mode in runs:

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(
            max_examples=MAX_EXAMPLES,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            database=None,  # the same examples on every run: CI failures reproduce locally
            derandomize=True,
        )
        def check(case: schemathesis.Case[Any]) -> None:
            response = case.call_and_validate(
                base_url=live_api, headers=auth("acme"), checks=CHECKS, timeout=30
            )
            statuses[response.status_code] += 1

        try:
            check()
        except Unsatisfiable:
            continue  # nothing to negate: an operation without parameters or body
        except Exception as exc:  # collect every operation's failure, then report them all
            failures[f"{operation.label} ({mode})"] = str(exc)[:2000]
    print(f"schemathesis: {sum(statuses.values())} requests, statuses {sorted(statuses.items())}")
    assert failures == {}
    # The run reached the handlers (not only the key check) and their error paths.
    assert sum(statuses.values()) >= len(operations) * 5
    assert any(200 <= s < 300 for s in statuses)
    assert any(400 <= s < 500 and s != 401 for s in statuses)
