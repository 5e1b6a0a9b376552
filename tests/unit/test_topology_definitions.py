"""`infra/rabbitmq/definitions.json` mirrors the topology declared in code."""

import json
from pathlib import Path

from scribe_runtime.topology import definitions

DEFINITIONS = Path(__file__).resolve().parents[2] / "infra" / "rabbitmq" / "definitions.json"


def test_definitions_file_matches_code() -> None:
    assert json.loads(DEFINITIONS.read_text()) == definitions(), (
        "infra/rabbitmq/definitions.json is stale: run "
        "`uv run python -m scribe_runtime.topology > infra/rabbitmq/definitions.json`"
    )


def test_every_queue_has_a_dead_letter_queue_and_limit() -> None:
    queues = {q["name"]: q for q in definitions()["queues"]}
    for name, queue in queues.items():
        if name.endswith(".dlq"):
            continue
        assert queue["arguments"]["x-queue-type"] == "quorum"
        assert queue["arguments"]["x-delivery-limit"] > 0
        assert f"{name}.dlq" in queues
