"""The indexer's AsyncAPI document, from the broker `build_broker` wires."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import asyncpg

from indexer.main import build_broker
from indexer.settings import IndexerSettings
from indexer.store import PostgresTenants
from scribe_runtime.asyncapi import DOCUMENTED_AMQP_URL, asyncapi_document


def document() -> dict[str, Any]:
    """AsyncAPI 3.0 for `scribe-indexer` (committed as `docs/asyncapi/indexer.json`)."""
    pool = cast(asyncpg.Pool, None)  # wiring only: nothing touches the pool until it consumes
    broker = build_broker(
        DOCUMENTED_AMQP_URL, pool, PostgresTenants(pool), IndexerSettings(), media_root=Path("/")
    )
    return asyncapi_document(
        broker,
        title="Scribe indexer",
        description="The only writer of PostgreSQL. Projects every job event, one "
        "transaction each, idempotently (event ids recorded) and in any arrival order; "
        "logs one `job_event_indexed` line per event with its `job_id` and "
        "`correlation_id`. Events of an unknown tenant go to `indexer.job-events.dlq` "
        "(`unknown_tenant`). Applies cancel and delete requests and announces their "
        "outcome (`transcription.cancelled.v1`, `transcription.deleted.v1`); requests the "
        "deletion of jobs past their tenant's `retain_days` (`reason: retention`). Keeps a "
        "long job's plan and chunk results; publishes from its outbox the job's progress "
        "(with `eta_seconds`) and, once every chunk is in, its `transcript.completed.v1`.",
    )
