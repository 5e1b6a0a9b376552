"""RabbitMQ's management HTTP API, read back: every queue, its DLQ, type and arguments.

What an operator sees in the management UI must be what DESIGN.md says: durable quorum
queues named `<service>.<purpose>`, each with a delivery limit and dead-lettering through
`scribe.dlx` to its own quorum `<queue>.dlq`. Checked twice: the topology the services
declare at start-up, and `infra/rabbitmq/definitions.json` as compose loads it.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import httpx
import pytest

from contracts import routing
from scribe_runtime.topology import (
    DELIVERY_LIMIT,
    INDEXER_QUEUE,
    INGEST_DELETIONS_QUEUE,
    QUEUES,
    TRANSCRIBER_QUEUE,
    declare_topology,
    definitions,
)
from tests.support.servers import RabbitServer

pytestmark = pytest.mark.integration

DEFINITIONS_FILE = Path(__file__).parents[2] / "infra" / "rabbitmq" / "definitions.json"
EVERY_JOB_EVENT = {cls.routing_key() for cls in routing.EVENT_CLASSES} - {
    routing.TRANSCRIPTION_DELETED_V1  # the indexer's own announcement, for downstream
} | {
    routing.TRANSCRIPTION_CHUNKED_V1,  # a long job's plan and its chunks' results
    routing.TRANSCRIPTION_CHUNK_TRANSCRIBED_V1,
}


class Management:
    """GETs on one vhost through the management HTTP API, as the UI makes them."""

    def __init__(self, rabbit: RabbitServer, vhost_url: str) -> None:
        if not rabbit.management_available():
            pytest.fail("the RabbitMQ management plugin is not answering (rabbitmq_management)")
        assert rabbit.management_url is not None
        self.base = f"{rabbit.management_url}/api"
        self.auth = rabbit.credentials
        self.vhost = quote(urlsplit(vhost_url).path.lstrip("/"), safe="")

    def get(self, kind: str) -> list[dict[str, Any]]:
        response = httpx.get(f"{self.base}/{kind}/{self.vhost}", auth=self.auth, timeout=30)
        response.raise_for_status()
        result: list[dict[str, Any]] = response.json()
        return result

    def load_definitions(self, document: dict[str, Any]) -> None:
        response = httpx.post(
            f"{self.base}/definitions/{self.vhost}", auth=self.auth, json=document, timeout=30
        )
        response.raise_for_status()


def check_topology_as_designed(api: Management) -> None:
    queues = {q["name"]: q for q in api.get("queues")}
    exchanges = {e["name"]: e for e in api.get("exchanges")}
    bindings = {
        (b["source"], b["destination"], b["routing_key"])
        for b in api.get("bindings")
        if b["source"]  # the default exchange's implicit bindings say nothing
    }

    assert exchanges[routing.EXCHANGE]["type"] == "topic"
    assert exchanges[routing.EXCHANGE]["durable"] is True
    assert exchanges[routing.DEAD_LETTER_EXCHANGE]["type"] == "direct"
    assert exchanges[routing.DEAD_LETTER_EXCHANGE]["durable"] is True

    # Every queue in the vhost is a durable quorum queue the code declares, with exactly
    # the arguments the code gives it: nothing extra, nothing drifted.
    declared = {q["name"]: q["arguments"] for q in definitions()["queues"]}
    assert set(queues) == set(declared)
    for name, queue in queues.items():
        assert queue["type"] == "quorum", name
        assert queue["durable"] is True, name
        assert queue["auto_delete"] is False, name
        assert queue["arguments"] == declared[name], name

    # The consumer queues, as DESIGN.md names and binds them.
    assert (routing.EXCHANGE, TRANSCRIBER_QUEUE.name, routing.AUDIO_UPLOADED_V1) in bindings
    assert {
        key
        for source, dest, key in bindings
        if (source, dest) == (routing.EXCHANGE, INDEXER_QUEUE.name)
    } == EVERY_JOB_EVENT
    assert (routing.EXCHANGE, INGEST_DELETIONS_QUEUE.name, routing.TRANSCRIPTION_DELETED_V1) in (
        bindings
    )
    for spec in QUEUES:
        # `<service>.<purpose>`; a pool's queue is `transcriber.pool.<model>.<purpose>`.
        assert re.fullmatch(r"[a-z]+\.[a-z-]+", spec.name) or re.fullmatch(
            r"transcriber\.pool\.[a-z0-9._-]+\.(audio-uploaded|chunk-requested)", spec.name
        ), spec.name
        arguments = queues[spec.name]["arguments"]
        assert arguments["x-queue-type"] == "quorum"
        assert arguments["x-delivery-limit"] == DELIVERY_LIMIT
        assert arguments["x-dead-letter-exchange"] == routing.DEAD_LETTER_EXCHANGE
        assert arguments["x-dead-letter-routing-key"] == spec.name
        dlq = queues[f"{spec.name}.dlq"]
        assert dlq["type"] == "quorum"
        assert (routing.DEAD_LETTER_EXCHANGE, dlq["name"], spec.name) in bindings
        source = getattr(spec, "exchange", routing.EXCHANGE)
        for key in spec.bindings:
            assert (source, spec.name, key) in bindings


async def test_declared_topology_reads_back_as_designed(
    amqp_url: str, rabbit_server: RabbitServer
) -> None:
    await declare_topology(amqp_url)  # what every service does at start-up
    check_topology_as_designed(Management(rabbit_server, amqp_url))


def test_compose_definitions_load_as_designed(amqp_url: str, rabbit_server: RabbitServer) -> None:
    api = Management(rabbit_server, amqp_url)
    document = json.loads(DEFINITIONS_FILE.read_text())
    # The file targets vhost "/"; the management API imports it into this test's vhost.
    api.load_definitions({k: document[k] for k in ("exchanges", "queues", "bindings")})
    check_topology_as_designed(api)
