"""Fault injection against the real stack: every accepted job ends once, nothing is lost.

Each test prints `jobs accepted=N completed=N failed=N lost=N duplicated=N` and asserts
lost = 0 and duplicated = 0. They run on the fault servers of `conftest.py` (their own
RabbitMQ node and PostgreSQL cluster), never the shared ones.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import random
import shutil
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Mapping

import aio_pika
import asyncpg
import pytest

from contracts import AudioUploadedV1, TranscriptionFailedV1
from contracts.errors import ErrorCode
from scribe_cli import dlq
from scribe_runtime.messaging import make_broker, publish_event
from scribe_runtime.topology import INDEXER_QUEUE, TRANSCRIBER_QUEUE, QueueSpec, pool_queue
from tests.faults.conftest import FaultEnv
from tests.faults.support import (
    Outcomes,
    dead_letter_count,
    fault_stack,
    jobs,
    jobs_in_flight,
    submit,
    tally,
    wait_terminal,
)
from tests.speech import SCRIPTS, synthesize
from tests.support import crashing_transcriber
from tests.support.servers import SeaweedServer
from tests.support.stack import BIN, TRANSCRIBER, Stack
from tests.support.waiting import eventually

DEFAULT_POOL = pool_queue("tiny.en")
"""Where the workers' jobs are (retried, crash-looped, dead-lettered) once routed."""

pytestmark = [pytest.mark.faults, pytest.mark.slow, pytest.mark.timeout(600)]

SHORT = SCRIPTS["numbers"]


def report(line: str) -> None:
    print(f"\n{line}")


def test_two_transcribers_sigkilled_mid_job_five_times(fault_env: FaultEnv) -> None:
    audio = synthesize(SCRIPTS["meeting"])
    with fault_stack(
        fault_env.amqp_url, fault_env.database_url, fault_env.workdir, transcribers=2
    ) as stack:
        accepted = set()
        for _ in range(20):
            status, job = submit(stack, audio)
            assert status == 202
            assert job is not None
            accepted.add(job)
        rng = random.Random(7)
        kills = 0
        deadline = time.monotonic() + 300
        while kills < 5 and time.monotonic() < deadline:
            busy = [n for n in ("transcriber-1", "transcriber-2") if jobs_in_flight(stack, n) >= 1]
            if not busy:
                time.sleep(0.1)
                continue
            victim = rng.choice(busy)
            time.sleep(rng.uniform(0.0, 0.5))  # somewhere inside the job
            stack.processes[victim].send_signal(signal.SIGKILL)
            stack.processes[victim].wait()
            kills += 1
            stack.start_transcriber(victim)
        assert kills == 5, "the jobs ran out before five workers could be killed mid-job"
        rows = wait_terminal(stack.database_url, accepted, timeout=300)
        result = tally(accepted, rows, Outcomes.drain(stack.amqp_url))
    report(result.line() + f" kills={kills}")
    assert result.lost == []
    assert result.duplicated == []
    assert result.completed == 20


def test_rabbitmq_restarted_during_fifty_uploads(fault_env: FaultEnv) -> None:
    audio = synthesize(SHORT)
    answers: list[tuple[int, uuid.UUID | None]] = []
    with fault_stack(fault_env.amqp_url, fault_env.database_url, fault_env.workdir) as stack:

        def upload_stream() -> None:
            for _ in range(50):
                answers.append(submit(stack, audio))
                time.sleep(0.3)

        uploader = threading.Thread(target=upload_stream)
        uploader.start()
        while len(answers) < 10:
            time.sleep(0.1)
        restart_started = time.monotonic()
        fault_env.servers.rabbit.restart()
        restart_seconds = time.monotonic() - restart_started
        uploader.join(timeout=300)
        assert not uploader.is_alive()
        accepted = {job for status, job in answers if status == 202 and job is not None}
        rows = wait_terminal(stack.database_url, accepted, timeout=300)
        result = tally(accepted, rows, Outcomes.drain(stack.amqp_url))
        refused = sum(1 for status, _ in answers if status != 202)
    report(result.line() + f" refused={refused} restart_s={restart_seconds:.1f}")
    statuses = [status for status, _ in answers]
    assert set(statuses) <= {202, 503}, statuses
    # Ingest came back by itself: the uploads after the restart were accepted again.
    assert statuses[-5:] == [202] * 5, statuses
    assert result.lost == []
    assert result.duplicated == []
    assert result.completed == len(accepted)


def test_postgresql_stopped_for_twenty_seconds(fault_env: FaultEnv) -> None:
    audio = synthesize(SHORT)
    with fault_stack(fault_env.amqp_url, fault_env.database_url, fault_env.workdir) as stack:
        accepted = set()
        for _ in range(10):
            status, job = submit(stack, audio)
            assert status == 202
            assert job is not None
            accepted.add(job)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            done = [r for r in jobs(stack.database_url).values() if r["status"] == "completed"]
            if done:
                break
            time.sleep(0.2)
        indexed_before = len(done)
        fault_env.servers.postgres.stop()
        time.sleep(20)
        fault_env.servers.postgres.start()
        rows = wait_terminal(stack.database_url, accepted, timeout=300)
        result = tally(accepted, rows, Outcomes.drain(stack.amqp_url))
        retried = stack.log("indexer").count('"message_retry_scheduled"')
        dlq_depth = asyncio.run(dead_letter_count(stack.amqp_url, INDEXER_QUEUE.dead_letter_queue))
    report(result.line() + f" indexed_before_stop={indexed_before} retry_stages_used={retried}")
    assert result.lost == []
    assert result.duplicated == []
    assert result.completed == 10
    assert dlq_depth == 0


def test_object_store_stopped_for_thirty_seconds(fault_env: FaultEnv) -> None:
    audio = synthesize(SHORT)
    # A store of this test's own: stopping it harms no other test.
    store = SeaweedServer.create(fault_env.workdir / "s3")
    store.start()
    try:
        bucket = store.create_bucket()
        with fault_stack(
            fault_env.amqp_url,
            fault_env.database_url,
            fault_env.workdir,
            env={"SCRIBE_MEDIA_URL": f"s3://{bucket}/media", **store.env()},
        ) as stack:
            accepted = set()
            for _ in range(10):
                status, job = submit(stack, audio)
                assert status == 202
                assert job is not None
                accepted.add(job)
            eventually(
                lambda: any(r["status"] == "completed" for r in jobs(stack.database_url).values()),
                within=120,
                what="a first job completed before the store stops",
            )
            store.stop()
            time.sleep(30)
            store.start()
            rows = wait_terminal(stack.database_url, accepted, timeout=300)
            result = tally(accepted, rows, Outcomes.drain(stack.amqp_url))
            retried = stack.log("transcriber-1").count('"message_retry_scheduled"')
            dlq_depth = asyncio.run(
                dead_letter_count(stack.amqp_url, DEFAULT_POOL.dead_letter_queue)
            )
    finally:
        store.stop()
    report(result.line() + f" retry_stages_used={retried}")
    assert result.lost == []
    assert result.duplicated == []
    assert result.completed == 10
    assert retried > 0  # the outage took the transient path, not a failed job
    assert dlq_depth == 0


def test_a_file_that_kills_the_worker_ends_in_the_dlq_and_can_be_replayed(
    fault_env: FaultEnv,
) -> None:
    crash = synthesize("This recording makes the speech worker crash every single time.")
    normal = synthesize(SHORT)
    digest = hashlib.sha256(crash.read_bytes()).hexdigest()
    with fault_stack(
        fault_env.amqp_url,
        fault_env.database_url,
        fault_env.workdir,
        transcribers=2,
        transcriber_argv=crashing_transcriber.command([digest]),
    ) as stack:
        status, crash_job = submit(stack, crash)
        assert status == 202
        assert crash_job is not None
        accepted = {crash_job}
        for _ in range(4):
            status, job = submit(stack, normal)
            assert status == 202
            assert job is not None
            accepted.add(job)
        restarts = 0
        deadline = time.monotonic() + 300
        rows = jobs(stack.database_url)
        while time.monotonic() < deadline:
            for name in ("transcriber-1", "transcriber-2"):
                if stack.processes[name].poll() is not None:  # died on the file: restart
                    restarts += 1
                    stack.start_transcriber(name)
            rows = jobs(stack.database_url)
            if all(j in rows and rows[j]["status"] in {"completed", "failed"} for j in accepted):
                break
            time.sleep(0.5)
        result = tally(accepted, rows, Outcomes.drain(stack.amqp_url))
        report(result.line() + f" worker_restarts={restarts}")
        assert result.lost == []
        assert result.duplicated == []
        assert rows[crash_job]["status"] == "failed"
        assert rows[crash_job]["error_code"] == ErrorCode.DEAD_LETTERED
        assert "delivery_limit" in rows[crash_job]["error_message"]
        assert result.completed == 4
        assert restarts >= DEFAULT_POOL.delivery_limit  # it really did die every time

        letters = asyncio.run(dlq.list_dead_letters(stack.amqp_url, [DEFAULT_POOL]))
        assert [(letter.job_id, letter.code) for letter in letters] == [
            (str(crash_job), "rabbitmq_delivery_limit")
        ]
        listed = subprocess.run(
            [str(BIN / "scribe"), "dlq", "list", "--queue", DEFAULT_POOL.name],
            env=stack.env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert listed.returncode == 0, listed.stderr
        assert "1 message(s)" in listed.stdout
        assert str(crash_job) in listed.stdout

        # The cause is fixed (workers without the crash); the operator replays the job.
        stack.transcriber_argv = list(TRANSCRIBER)
        for name in ("transcriber-1", "transcriber-2"):
            stack.processes[name].send_signal(signal.SIGTERM)
            stack.processes[name].wait(60)
            stack.start_transcriber(name)
        replayed = subprocess.run(
            [str(BIN / "scribe"), "dlq", "replay", "--queue", DEFAULT_POOL.name,
             "--job", str(crash_job)],
            env=stack.env,
            capture_output=True,
            text=True,
            timeout=60,
        )  # fmt: skip
        assert replayed.returncode == 0, replayed.stderr
        assert "replayed 1 message(s)" in replayed.stdout
        rows = wait_terminal_status(stack.database_url, crash_job, "completed", timeout=120)
        assert rows[crash_job]["status"] == "completed"
        assert asyncio.run(dead_letter_count(stack.amqp_url, DEFAULT_POOL.dead_letter_queue)) == 0


def wait_terminal_status(
    database_url: str, job: uuid.UUID, status: str, timeout: float
) -> dict[uuid.UUID, asyncpg.Record]:
    latest: dict[uuid.UUID, asyncpg.Record] = {}

    def reached() -> bool:
        nonlocal latest
        latest = jobs(database_url)
        row = latest.get(job)
        return row is not None and row["status"] == status

    eventually(reached, within=timeout, interval=0.5, what=lambda: f"job {job} {status}: {latest}")
    return latest


def malformed_bodies() -> list[tuple[str, bytes, str | None]]:
    """(label, body, AMQP type) of at least 30 messages no consumer may accept."""
    job = str(uuid.uuid4())
    valid: dict[str, object] = json.loads(
        AudioUploadedV1(
            job_id=uuid.UUID(job),
            tenant_id="default",
            producer="faults",
            audio_uri="file:///nowhere.wav",  # type: ignore[arg-type]
        ).model_dump_json()
    )

    def variant(**changes: object) -> bytes:
        body = {k: v for k, v in valid.items() if k not in changes or changes[k] is not ...}
        body.update({k: v for k, v in changes.items() if v is not ...})
        return json.dumps(body).encode()

    t = "audio.uploaded.v1"
    return [
        ("not json", b"this is not json", t),
        ("truncated json", b'{"type": "audio.uploaded", "version": 1', t),
        ("empty body", b"", t),
        ("json null", b"null", t),
        ("json array", b"[1, 2, 3]", t),
        ("json string", b'"audio.uploaded"', t),
        ("json number", b"42", t),
        ("non-utf8", b"\xff\xfe\xfa not utf-8 \x80", t),
        ("utf-16", json.dumps(valid).encode("utf-16"), t),
        ("latin-1 in json", b'{"type": "audio.uploaded", "caf\xe9": 1}', t),
        ("missing tenant", variant(tenant_id=...), t),
        ("empty tenant", variant(tenant_id=""), t),
        ("missing job_id", variant(job_id=...), t),
        ("job_id not a uuid", variant(job_id="job-1"), t),
        ("job_id a number", variant(job_id=12), t),
        ("missing audio_uri", variant(audio_uri=...), t),
        ("audio_uri a number", variant(audio_uri=5), t),
        ("event_id a list", variant(event_id=[1]), t),
        ("event_id garbage", variant(event_id="x"), t),
        ("occurred_at naive", variant(occurred_at="2024-01-01T00:00:00"), t),
        ("occurred_at garbage", variant(occurred_at="yesterday"), t),
        ("missing producer", variant(producer=...), t),
        ("options a list", variant(options=[1]), t),
        ("version a string", variant(version="1"), t),
        ("version a bool", variant(version=True), t),
        ("unknown version", variant(version=99), "audio.uploaded.v99"),
        ("missing version", variant(version=...), t),
        ("unknown type", variant(type="audio.deleted"), "audio.deleted.v1"),
        ("missing type", variant(type=...), t),
        ("type a number", variant(type=7), t),
        ("amqp type disagrees", variant(), "transcript.completed.v1"),
        ("ten megabytes", variant(job_id=..., padding="x" * (10 * 1024 * 1024)), t),
        ("size_bytes negative", variant(size_bytes=-1), t),
    ]


async def _publish_straight(
    amqp_url: str, queue: str, items: list[tuple[bytes, str | None]]
) -> None:
    connection = await aio_pika.connect(amqp_url, timeout=10)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        for body, message_type in items:
            await channel.default_exchange.publish(
                aio_pika.Message(
                    body,
                    type=message_type,
                    message_id=str(uuid.uuid4()),
                    content_type="application/json",
                    delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                ),
                routing_key=queue,
                mandatory=True,
            )


async def _dead_letter_headers(amqp_url: str, queue: str) -> list[dict[str, object]]:
    found: list[dict[str, object]] = []
    connection = await aio_pika.connect(amqp_url, timeout=10)
    async with connection:
        channel = await connection.channel()
        declared = await channel.declare_queue(queue, passive=True)
        while (message := await declared.get(no_ack=False, fail=False)) is not None:
            found.append(dict(message.headers or {}))
    return found


def _await_dead_letters(
    amqp_url: str,
    want: int,
    within: float = 60.0,
    queues: Mapping[QueueSpec, int] | None = None,
) -> dict[str, list[dict[str, object]]]:
    """Both DLQs' headers, once each holds `want` (or the time is up); or those of
    `queues`, once each holds its own count.

    Bad messages queued behind the last valid job are still being refused when that job
    ends, so the DLQs fill a moment after the jobs are terminal.
    """
    dead: dict[str, list[dict[str, object]]] = {}
    wants = dict(queues) if queues is not None else {TRANSCRIBER_QUEUE: want, INDEXER_QUEUE: want}

    def full() -> bool:
        nonlocal dead
        dead = {
            q.name: asyncio.run(_dead_letter_headers(amqp_url, q.dead_letter_queue)) for q in wants
        }
        return all(len(dead[q.name]) >= n for q, n in wants.items())

    # No failure of its own: the test's per-queue assertions say which DLQ fell short.
    with contextlib.suppress(AssertionError):
        eventually(full, within=within, interval=0.5, what=f"{want} letters in each DLQ")
    return dead


def test_malformed_messages_are_dead_lettered_with_reasons_and_valid_ones_processed(
    fault_env: FaultEnv,
) -> None:
    bad = malformed_bodies()
    assert len(bad) >= 30
    audio = synthesize(SHORT)
    with fault_stack(fault_env.amqp_url, fault_env.database_url, fault_env.workdir) as stack:
        pids = {name: p.pid for name, p in stack.processes.items()}
        clip = stack.media_root / "default" / "faults-clip.wav"
        clip.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(audio, clip)
        transcribe = [
            AudioUploadedV1(
                job_id=uuid.uuid4(), tenant_id="default", producer="faults",
                audio_uri=clip.as_uri(),  # type: ignore[arg-type]
            )
            for _ in range(5)
        ]  # fmt: skip
        index = [
            TranscriptionFailedV1(
                job_id=uuid.uuid4(), tenant_id="default", producer="faults",
                code=ErrorCode.SOURCE_NOT_FOUND, message="fixture",
            )
            for _ in range(5)
        ]  # fmt: skip

        def interleave(
            valid: list[AudioUploadedV1] | list[TranscriptionFailedV1],
        ) -> list[tuple[bytes, str | None]]:
            items: list[tuple[bytes, str | None]] = [(b, t) for _, b, t in bad]
            for n, event in enumerate(valid):
                items.insert(n * 7, (event.model_dump_json().encode(), event.message_type))
            return items

        asyncio.run(
            _publish_straight(stack.amqp_url, TRANSCRIBER_QUEUE.name, interleave(transcribe))
        )
        asyncio.run(_publish_straight(stack.amqp_url, INDEXER_QUEUE.name, interleave(index)))
        accepted = {e.job_id for e in transcribe} | {e.job_id for e in index}
        rows = wait_terminal(stack.database_url, accepted, timeout=240)
        # The straight-to-the-indexer failures were never on the events exchange.
        result = tally(
            accepted, rows, Outcomes.drain(stack.amqp_url), silent={e.job_id for e in index}
        )
        dead = _await_dead_letters(stack.amqp_url, want=len(bad))
        alive = {
            name: p.poll() is None and p.pid == pids[name] for name, p in stack.processes.items()
        }
        starts = stack.log("transcriber-1").count('"transcriber_ready"')
    report(
        result.line()
        + f" malformed_per_queue={len(bad)}"
        + "".join(f" dlq[{q}]={len(h)}" for q, h in dead.items())
    )
    assert result.lost == []
    assert result.duplicated == []
    assert result.completed == 5
    assert result.failed == 5
    for queue, headers in dead.items():
        assert len(headers) == len(bad), queue
        for h in headers:
            assert h.get("x-scribe-dead-letter-code") in {
                "malformed_event", "unknown_event_type", "unsupported_event_version"
            }, h  # fmt: skip
            assert h.get("x-scribe-dead-letter-reason"), h
    assert all(alive.values()), alive
    assert starts == 1


async def _publish_events(amqp_url: str, events: list[AudioUploadedV1]) -> None:
    """Publish to `scribe.events` as an external producer would (every consumer hears it)."""
    broker = make_broker(amqp_url, service="faults")
    async with broker:
        await broker.start()
        for event in events:
            await publish_event(broker, event)


async def _definition(database_url: str, job_id: uuid.UUID) -> dict[str, object]:
    conn = await asyncpg.connect(database_url, timeout=10)
    try:
        row = await conn.fetchrow(
            "SELECT j.audio_uri, j.sha256, j.completed_event_id, t.text FROM jobs j "
            "JOIN transcripts t USING (tenant_id, job_id) WHERE j.job_id = $1",
            job_id,
        )
    finally:
        await conn.close()
    assert row is not None
    return dict(row)


def _transcriptions(stack: Stack, job_id: uuid.UUID) -> int:
    """How many times the worker transcribed `job_id`, from its one line per transcription."""
    return sum(
        1
        for line in stack.log("transcriber-1").splitlines()
        if '"transcript_completed"' in line and str(job_id) in line
    )


def test_a_conflicting_reupload_and_an_unknown_tenant_change_nothing(fault_env: FaultEnv) -> None:
    audio = synthesize(SHORT)
    with fault_stack(fault_env.amqp_url, fault_env.database_url, fault_env.workdir) as stack:
        status, job = submit(stack, audio)
        assert status == 202
        assert job is not None
        before = wait_terminal(stack.database_url, {job}, timeout=240)[job]
        assert before["status"] == "completed"
        definition_before = asyncio.run(_definition(stack.database_url, job))
        other = stack.media_root / "default" / "other.wav"
        stranger_file = stack.media_root / "mallory" / "clip.wav"
        for path in (other, stranger_file):
            path.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(synthesize(SCRIPTS["weather"]), path)
        conflict = AudioUploadedV1(
            job_id=job, tenant_id="default", producer="faults",
            audio_uri=other.as_uri(),  # type: ignore[arg-type]
        )  # fmt: skip
        stranger = AudioUploadedV1(
            job_id=uuid.uuid4(), tenant_id="mallory", producer="faults",
            audio_uri=stranger_file.as_uri(),  # type: ignore[arg-type]
        )  # fmt: skip
        # After both on the one worker's queue: once it is done, so are they.
        sentinel = AudioUploadedV1(
            job_id=uuid.uuid4(), tenant_id="default", producer="faults",
            audio_uri=other.as_uri(),  # type: ignore[arg-type]
        )  # fmt: skip
        asyncio.run(_publish_events(stack.amqp_url, [conflict, stranger, sentinel]))
        accepted = {job, sentinel.job_id}
        rows = wait_terminal(stack.database_url, accepted, timeout=240)
        # The router refuses the stranger at the intake; the pool's worker, which knows the
        # job, refuses the conflicting re-upload; the indexer refuses both.
        pool = DEFAULT_POOL
        dead = _await_dead_letters(
            stack.amqp_url,
            want=2,
            within=60,
            queues={TRANSCRIBER_QUEUE: 1, pool: 1, INDEXER_QUEUE: 2},
        )
        result = tally(accepted, rows, Outcomes.drain(stack.amqp_url))
        after = jobs(stack.database_url)
        transcribed = {
            "job": _transcriptions(stack, job),
            "unknown_tenant": _transcriptions(stack, stranger.job_id),
        }
        definition_after = asyncio.run(_definition(stack.database_url, job))
    codes = {
        q: sorted(str(h.get("x-scribe-dead-letter-code")) for h in hs) for q, hs in dead.items()
    }
    report(
        result.line()
        + f" transcriptions[job]={transcribed['job']}"
        + f" transcriptions[unknown_tenant]={transcribed['unknown_tenant']}"
        + "".join(f" dlq[{q}]={c}" for q, c in codes.items())
    )
    assert result.lost == []
    assert result.duplicated == []
    assert result.completed == 2
    assert transcribed["job"] == 1  # the conflicting upload was not transcribed
    assert transcribed["unknown_tenant"] == 0
    assert codes == {
        TRANSCRIBER_QUEUE.name: ["unknown_tenant"],
        pool.name: ["conflicting_job"],
        INDEXER_QUEUE.name: ["conflicting_job", "unknown_tenant"],
    }, codes
    assert dict(after[job]) == dict(before)  # status, error: as before the re-upload
    assert definition_after == definition_before  # same audio, same transcript
    assert stranger.job_id not in after
