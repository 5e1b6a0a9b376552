"""The committed AsyncAPI documents match what the services' brokers generate.

Regenerate after changing a subscriber, a publisher or an event model:
`uv run python -m tests.unit.test_asyncapi` (writes `docs/asyncapi/<service>.json`).
"""

from __future__ import annotations

import ast
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from contracts import routing
from indexer.asyncapi import document as indexer_document
from ingest.asyncapi import document as ingest_document
from transcriber.asyncapi import document as transcriber_document
from webhooks.asyncapi import document as webhooks_document

ROOT = Path(__file__).resolve().parents[2]
DOCS_DIR = ROOT / "docs" / "asyncapi"
SERVICES: dict[str, Callable[[], dict[str, Any]]] = {
    "ingest": ingest_document,
    "transcriber": transcriber_document,
    "indexer": indexer_document,
    "webhooks": webhooks_document,
}
REGENERATE = "uv run python -m tests.unit.test_asyncapi"


def render(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2, ensure_ascii=False, sort_keys=True) + "\n"


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_committed_document_is_current(service: str) -> None:
    path = DOCS_DIR / f"{service}.json"
    assert path.exists(), f"{path} is missing; run `{REGENERATE}`"
    committed = json.loads(path.read_text())
    assert committed == SERVICES[service](), f"{path} is stale; run `{REGENERATE}`"


def _operations(document: dict[str, Any], action: str) -> dict[str, Any]:
    return {k: v for k, v in document["operations"].items() if v["action"] == action}


def test_documents_say_who_publishes_and_consumes_which_event() -> None:
    docs = {name: build() for name, build in SERVICES.items()}
    sent = {name: set(_operations(doc, "send")) for name, doc in docs.items()}
    assert sent["ingest"] == {
        routing.AUDIO_UPLOADED_V1,
        routing.TRANSCRIPTION_CANCEL_REQUESTED_V1,
        routing.TRANSCRIPTION_DELETE_REQUESTED_V1,
        "webhook.endpoint.registered.v1",
        "webhook.endpoint.secret_rotated.v1",
        "webhook.endpoint.deleted.v1",
        routing.WEBHOOK_DELIVERY_REQUESTED_V1,  # a replay
    }
    assert sent["webhooks"] == {
        routing.WEBHOOK_DELIVERY_REQUESTED_V1,
        routing.WEBHOOK_DELIVERY_ATTEMPTED_V1,
    }
    assert sent["indexer"] == {
        routing.TRANSCRIPT_COMPLETED_V1,  # a long job's, assembled from its chunks (outbox)
        routing.TRANSCRIPTION_PROGRESS_V1,  # a long job's, with its ETA (outbox)
        routing.TRANSCRIPTION_FAILED_V1,  # for dead-lettered jobs
        routing.TRANSCRIPTION_CANCELLED_V1,  # the outcome of a cancel request
        routing.TRANSCRIPTION_DELETED_V1,  # the outcome of a delete request
        routing.TRANSCRIPTION_DELETE_REQUESTED_V1,  # retention
    }
    assert sent["transcriber"] == {
        routing.TRANSCRIPTION_STARTED_V1,
        routing.TRANSCRIPTION_PROGRESS_V1,
        routing.TRANSCRIPT_COMPLETED_V1,
        routing.TRANSCRIPTION_FAILED_V1,
        routing.TRANSCRIPTION_CHUNK_REQUESTED_V1,  # a long job's work items (the planner)
        routing.TRANSCRIPTION_CHUNKED_V1,  # its plan
        routing.TRANSCRIPTION_CHUNK_TRANSCRIBED_V1,  # one chunk's result
    }
    # A consumer's message is the contract's events, not FastStream's empty payload.
    for doc, queue, consumed in (
        (docs["transcriber"], "transcriber.audio-uploaded", {"AudioUploadedV1"}),
        (
            docs["indexer"],
            "indexer.job-events",
            {c.__name__ for c in routing.EVENT_CLASSES}
            | {"TranscriptionChunkedV1", "TranscriptionChunkTranscribedV1"},
        ),
        (
            docs["transcriber"],
            "transcriber.pool.tiny.en.chunk-requested",
            {"TranscriptionChunkRequestedV1"},
        ),
    ):
        (reference,) = doc["channels"][queue]["messages"].values()
        message = doc["components"]["messages"][reference["$ref"].rsplit("/", 1)[-1]]
        refs = {r["$ref"].rsplit("/", 1)[-1] for r in message["payload"]["oneOf"]}
        assert refs == consumed
        for name in refs:
            schema = doc["components"]["schemas"][name]
            assert {"event_id", "job_id", "correlation_id", "occurred_at"} <= set(
                schema["properties"]
            )


def _events_built_in(package: Path) -> set[str]:
    """Routing keys of the events a package's code constructs: a service builds only the
    events it publishes (a consumer decodes, it never constructs). `Event(...)` builds one,
    and so does `Event.model_validate(fields, context=...)` (a constructor with context)."""
    names = {cls.__name__: cls.routing_key() for cls in routing.ALL_EVENT_CLASSES}
    found: set[str] = set()
    for path in package.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            if isinstance(func, ast.Name) and func.id in names:
                found.add(names[func.id])
            elif (
                isinstance(func, ast.Attribute)
                and func.attr == "model_validate"
                and isinstance(func.value, ast.Name)
                and func.value.id in names
            ):
                found.add(names[func.value.id])
    return found


def _calls_undeclared_publish(package: Path) -> list[str]:
    """Modules that publish around the declared publishers (so around the document)."""
    return [
        str(path.relative_to(ROOT))
        for path in package.rglob("*.py")
        if "publish_event" in path.read_text() or "broker.publish(" in path.read_text()
    ]


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_every_event_a_service_publishes_is_in_its_document(service: str) -> None:
    package = ROOT / "services" / service / "src" / service
    sent = set(_operations(SERVICES[service](), "send"))
    assert sent == _events_built_in(package), (
        f"{service} builds events its AsyncAPI document does not list (or lists events it "
        "never builds): declare each published event in its EventPublisher"
    )
    assert _calls_undeclared_publish(package) == []


if __name__ == "__main__":
    DOCS_DIR.mkdir(parents=True, exist_ok=True)
    for name, build in SERVICES.items():
        (DOCS_DIR / f"{name}.json").write_text(render(build()))
        print(f"wrote docs/asyncapi/{name}.json")
