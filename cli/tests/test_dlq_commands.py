"""`scribe dlq list|replay` as an operator reads them (the broker faked at scribe_cli.dlq)."""

from __future__ import annotations

from collections.abc import Iterable

import pytest
from typer.testing import CliRunner, Result

from scribe_cli import dlq
from scribe_cli.dlq import DeadLetter
from scribe_cli.main import app
from scribe_runtime.topology import INDEXER_QUEUE, QUEUES, TRANSCRIBER_QUEUE, QueueSpec

pytestmark = pytest.mark.usefixtures("narrow_consoles")  # see the root conftest

JOB = "3f2b8c1e-9d4a-4e57-a1c2-7b6d5e4f3a21"


def letter(queue: str, job: str | None, code: str, reason: str) -> DeadLetter:
    return DeadLetter(
        queue=queue,
        message_id="m-1",
        message_type="audio.uploaded.v1",
        job_id=job,
        routing_key="audio.uploaded.v1",
        code=code,
        reason=reason,
        count=1,
    )


def scribe(*args: str) -> Result:
    return CliRunner().invoke(app, list(args))


@pytest.fixture
def asked(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, ...]]:
    calls: list[tuple[str, ...]] = []

    async def list_dead_letters(amqp_url: str, queues: Iterable[QueueSpec]) -> list[DeadLetter]:
        calls.append(("list", *(q.name for q in queues)))
        return [
            letter(TRANSCRIBER_QUEUE.name, JOB, "rabbitmq_delivery_limit", "delivery_limit"),
            letter(TRANSCRIBER_QUEUE.name, None, "malformed_event", "not json"),
        ]

    async def replay(
        amqp_url: str, queues: Iterable[QueueSpec], job_ids: set[str] | None = None
    ) -> list[DeadLetter]:
        calls.append(("replay", *(q.name for q in queues), *sorted(job_ids or ())))
        return [letter(TRANSCRIBER_QUEUE.name, JOB, "rabbitmq_delivery_limit", "delivery_limit")]

    monkeypatch.setattr(dlq, "list_dead_letters", list_dead_letters)
    monkeypatch.setattr(dlq, "replay", replay)
    return calls


def test_list_counts_each_dlq_and_shows_whole_job_ids(asked: list[tuple[str, ...]]) -> None:
    result = scribe("dlq", "list")
    assert result.exit_code == 0, result.output
    assert asked == [("list", *(q.name for q in QUEUES))]
    assert f"{TRANSCRIBER_QUEUE.dead_letter_queue}: 2 message(s)" in result.stdout
    assert f"{INDEXER_QUEUE.dead_letter_queue}: 0 message(s)" in result.stdout
    # One whole line a letter, however narrow the console: the job id is what
    # `dlq replay --job` takes, and the code is what an operator greps for.
    lines = result.stdout.splitlines()
    assert lines[1].split() == ["job", "type", "code", "reason"]
    first = [JOB, "audio.uploaded.v1", "rabbitmq_delivery_limit", "delivery_limit"]
    assert lines[2].split() == first
    assert lines[3].split() == ["-", "audio.uploaded.v1", "malformed_event", "not", "json"]
    assert lines[2].index("rabbitmq") == lines[3].index("malformed") == lines[1].index("code")


def test_list_takes_a_queue_by_its_name_or_its_dlq(asked: list[tuple[str, ...]]) -> None:
    assert scribe("dlq", "list", "--queue", TRANSCRIBER_QUEUE.dead_letter_queue).exit_code == 0
    assert scribe("dlq", "list", "--queue", TRANSCRIBER_QUEUE.name).exit_code == 0
    assert asked == [("list", TRANSCRIBER_QUEUE.name)] * 2


def test_replay_sends_back_only_the_jobs_named(asked: list[tuple[str, ...]]) -> None:
    result = scribe("dlq", "replay", "--queue", TRANSCRIBER_QUEUE.name, "--job", JOB)
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "replayed 1 message(s)"
    assert asked == [("replay", TRANSCRIBER_QUEUE.name, JOB)]


def test_an_unknown_queue_is_a_usage_error_naming_the_known_ones(
    asked: list[tuple[str, ...]],
) -> None:
    result = scribe("dlq", "replay", "--queue", "nope")
    assert result.exit_code == 2
    assert result.stderr.startswith("error: unknown queue 'nope'; known: ")
    assert asked == []


def test_a_publishers_headers_cannot_break_or_restyle_the_listing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Whoever publishes to the exchange writes a dead letter's type, code and reason.
    hostile = letter(
        TRANSCRIBER_QUEUE.name, JOB, "bad\x1b[2Jcode", "line one\nfake_queue.dlq: 0\u202e"
    )

    async def list_dead_letters(amqp_url: str, queues: Iterable[QueueSpec]) -> list[DeadLetter]:
        return [hostile]

    monkeypatch.setattr(dlq, "list_dead_letters", list_dead_letters)
    result = scribe("dlq", "list", "--queue", TRANSCRIBER_QUEUE.name)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert len(lines) == 3  # the count, the header, one line for the one letter
    assert lines[2].split() == [
        JOB,
        "audio.uploaded.v1",
        "bad\\x1b[2Jcode",
        "line",
        "one",
        "fake_queue.dlq:",
        "0\\u202e",
    ]
    assert "\x1b" not in result.stdout
