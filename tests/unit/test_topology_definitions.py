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
        if name.endswith(".dlq") or ".retry." in name:
            continue
        assert queue["arguments"]["x-queue-type"] == "quorum"
        assert queue["arguments"]["x-delivery-limit"] > 0
        assert f"{name}.dlq" in queues


def test_retry_stages_back_off_and_return_to_their_queue() -> None:
    queues = {q["name"]: q["arguments"] for q in definitions()["queues"]}
    for consumer in ("transcriber.audio-uploaded", "indexer.job-events"):
        stages = sorted(
            (name for name in queues if name.startswith(f"{consumer}.retry.")),
            key=lambda name: int(name.rsplit(".", 1)[1]),
        )
        assert len(stages) >= 3
        ttls = [queues[name]["x-message-ttl"] for name in stages]
        assert ttls == sorted(ttls), ttls
        assert ttls[0] < ttls[-1], ttls
        for name in stages:
            assert queues[name]["x-dead-letter-exchange"] == ""
            assert queues[name]["x-dead-letter-routing-key"] == consumer
            # At-least-once dead-lettering: a retry is never dropped on its way back.
            assert queues[name]["x-dead-letter-strategy"] == "at-least-once"


def test_transcriber_dead_letters_also_reach_the_watcher() -> None:
    bindings = definitions()["bindings"]
    targets = {
        b["destination"]
        for b in bindings
        if b["source"] == "scribe.dlx" and b["routing_key"] == "transcriber.audio-uploaded"
    }
    assert targets == {"transcriber.audio-uploaded.dlq", "indexer.dead-letters"}
