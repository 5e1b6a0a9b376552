"""`scribe up` survives its children's crashes and leaves nothing behind when it dies."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import aio_pika
import httpx
import pytest

from contracts import routing
from contracts.transcription import TranscriptCompletedV1
from ingest.auth import DEV_API_KEY
from scribe_runtime.topology import EVENTS_EXCHANGE
from tests.e2e.test_cli import cli_env
from tests.speech import SCRIPTS, synthesize
from tests.support import probes
from tests.support.stack import BIN
from tests.support.workers import long_speech

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def _processes() -> dict[int, tuple[int, str]]:
    """pid → (parent pid, command line) of every live, non-zombie process."""
    found: dict[int, tuple[int, str]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if fields[0] != "Z":
            found[int(entry.name)] = (int(fields[1]), cmdline)
    return found


def _children(parent: int, needle: str) -> list[int]:
    return sorted(
        pid for pid, (ppid, cmd) in _processes().items() if ppid == parent and needle in cmd
    )


def _descendants(root: int) -> set[int]:
    table = _processes()
    found: set[int] = set()
    frontier = {root}
    while frontier:
        frontier = {pid for pid, (ppid, _cmd) in table.items() if ppid in frontier} - found
        found |= frontier
    return found


def _wait_for(predicate: Callable[[], object], within: float, what: str, log: Path) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}\n{log.read_text(errors='replace')}")


def _answers(url: str) -> bool:
    try:
        return probes.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _healthy(api: str) -> bool:
    return _answers(f"{api}/healthz")


def test_a_killed_service_is_restarted_and_killing_scribe_up_leaves_no_orphan(
    amqp_url: str, database_url: str, tmp_path: Path
) -> None:
    env = {**cli_env(amqp_url, database_url, tmp_path), "SCRIBE_UP_RESTART_INITIAL_SECONDS": "0.5"}
    api = env["SCRIBE_API_URL"]
    log_path = tmp_path / "up.log"
    up = subprocess.Popen(
        [str(BIN / "scribe"), "up", "--transcribers", "2"],
        env=env,
        stdout=log_path.open("wb"),
        stderr=subprocess.STDOUT,
    )
    family: set[int] = set()
    try:
        _wait_for(
            lambda: up.poll() is not None or _answers(f"{api}/readyz"),
            240,
            "readiness",
            log_path,
        )
        assert up.poll() is None, log_path.read_text()
        transcribers = _children(up.pid, "scribe-transcriber")
        assert len(transcribers) == 2, transcribers
        [indexer] = _children(up.pid, "scribe-indexer")

        # One of two transcribers dies like a segfault: the stack keeps serving.
        os.kill(transcribers[0], signal.SIGKILL)
        deadline = time.monotonic() + 60
        while True:
            assert up.poll() is None, log_path.read_text()
            assert _healthy(api), "the API stopped answering after a transcriber died"
            now = _children(up.pid, "scribe-transcriber")
            if len(now) == 2 and transcribers[0] not in now:
                break
            assert time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.3)
        assert transcribers[1] in now  # the healthy one was left alone
        # The indexer too.
        os.kill(indexer, signal.SIGKILL)
        _wait_for(
            lambda: (c := _children(up.pid, "scribe-indexer")) and c != [indexer],
            60,
            "a new indexer",
            log_path,
        )
        assert _healthy(api)

        speech = synthesize(SCRIPTS["weather"], fmt="mp3")
        submitted = subprocess.run(
            [str(BIN / "scribe"), "submit", str(speech), "--wait"],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert submitted.returncode == 0, submitted.stdout + submitted.stderr
        assert "weather" in submitted.stdout.lower()
        output = log_path.read_text(errors="replace")
        assert "transcriber-1 exited with -9 (SIGKILL); restarting in 0.5 s" in output
        assert "indexer exited with -9 (SIGKILL); restarting in 0.5 s" in output

        # The supervisor itself is SIGKILLed: no child may outlive it.
        family = _descendants(up.pid)
        assert len(family) >= 4, family
        up.kill()
        up.wait(10)
        _wait_for(lambda: not (family & set(_processes())), 45, "children to exit", log_path)
    finally:
        if up.poll() is None:
            up.send_signal(signal.SIGINT)
            up.wait(60)
        for pid in family & set(_processes()):
            os.kill(pid, signal.SIGKILL)


def _cpu_ticks(pid: int) -> int:
    fields = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def _ready_transcribers(log: Path) -> set[str]:
    """The transcribers whose `transcriber_ready` line `scribe up` has printed."""
    lines = log.read_text(errors="replace").splitlines()
    return {line.split(" |", 1)[0].strip() for line in lines if "transcriber_ready" in line}


def _busiest(pids: list[int]) -> int:
    """The process that used the most CPU over the next second: the one transcribing."""
    before = {pid: _cpu_ticks(pid) for pid in pids}
    time.sleep(1.0)
    return max(pids, key=lambda pid: _cpu_ticks(pid) - before[pid])


async def _completions_queue(amqp_url: str, name: str) -> None:
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel()
        queue = await channel.declare_queue(name, durable=True)
        await queue.bind(EVENTS_EXCHANGE.name, routing.TRANSCRIPT_COMPLETED_V1)


async def _drain(amqp_url: str, name: str) -> list[TranscriptCompletedV1]:
    connection = await aio_pika.connect(amqp_url)
    heard: list[TranscriptCompletedV1] = []
    async with connection:
        channel = await connection.channel()
        queue = await channel.declare_queue(name, durable=True, passive=True)
        while (message := await queue.get(no_ack=True, fail=False)) is not None:
            heard.append(TranscriptCompletedV1.model_validate_json(message.body))
    return heard


def test_killing_the_busy_transcriber_under_scribe_up_completes_its_job_exactly_once(
    amqp_url: str, database_url: str, tmp_path: Path
) -> None:
    env = {**cli_env(amqp_url, database_url, tmp_path), "SCRIBE_UP_RESTART_INITIAL_SECONDS": "0.5"}
    api = env["SCRIBE_API_URL"]
    headers = {"Authorization": f"Bearer {DEV_API_KEY}"}
    log_path = tmp_path / "up.log"
    up = subprocess.Popen(
        [str(BIN / "scribe"), "up", "--transcribers", "2"],
        env=env,
        stdout=log_path.open("wb"),
        stderr=subprocess.STDOUT,
    )
    try:
        _wait_for(
            lambda: up.poll() is not None or _answers(f"{api}/readyz"), 240, "readiness", log_path
        )
        assert up.poll() is None, log_path.read_text()
        # Both transcribers ready before the upload: one still loading its model is busy
        # too, and `_busiest` would pick it instead of the one transcribing.
        _wait_for(
            lambda: _ready_transcribers(log_path) == {"transcriber-1", "transcriber-2"},
            240,
            "both transcribers ready",
            log_path,
        )
        downstream = f"test.completions.{uuid.uuid4().hex[:8]}"
        asyncio.run(_completions_queue(amqp_url, downstream))
        with long_speech().open("rb") as audio:
            accepted = probes.post(
                f"{api}/v1/transcriptions",
                headers=headers,
                files={"file": ("long.wav", audio, "audio/wav")},
                timeout=60,
            )
        assert accepted.status_code == 202, accepted.text
        job = accepted.json()["id"]

        def status() -> object:
            answer = probes.get(f"{api}/v1/transcriptions/{job}", headers=headers, timeout=5)
            if answer.status_code == 404:
                return None  # accepted, not projected yet: reads are eventually consistent
            assert answer.status_code == 200, answer.text
            return answer.json()["status"]

        _wait_for(lambda: status() == "processing", 120, "the job to start", log_path)
        transcribers = _children(up.pid, "scribe-transcriber")
        assert len(transcribers) == 2, transcribers
        busy = _busiest(transcribers)
        os.kill(busy, signal.SIGKILL)

        deadline = time.monotonic() + 300
        while status() != "completed":
            assert up.poll() is None, log_path.read_text()
            assert _healthy(api), "the API stopped answering after the busy worker died"
            assert status() != "failed", status()
            assert time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.5)
        restarted = _children(up.pid, "scribe-transcriber")
        assert busy not in restarted
        assert len(restarted) == 2, restarted
        time.sleep(3)  # a quiet period: a second completion would have arrived by now
        heard = [e for e in asyncio.run(_drain(amqp_url, downstream)) if str(e.job_id) == job]
        print(f"completions heard downstream for the job: {len(heard)}")
        assert len(heard) == 1, heard
        assert heard[0].attempt == 2  # redelivered to the other worker after the kill
    finally:
        if up.poll() is None:
            up.send_signal(signal.SIGINT)
            up.wait(60)


def test_sigterm_to_scribe_up_stops_every_child_and_exits_zero(
    amqp_url: str, database_url: str, tmp_path: Path
) -> None:
    env = cli_env(amqp_url, database_url, tmp_path)
    log_path = tmp_path / "up.log"
    up = subprocess.Popen(
        [str(BIN / "scribe"), "up"], env=env, stdout=log_path.open("wb"), stderr=subprocess.STDOUT
    )
    family: set[int] = set()
    try:
        _wait_for(
            lambda: up.poll() is not None or _answers(f"{env['SCRIBE_API_URL']}/readyz"),
            240,
            "readiness",
            log_path,
        )
        family = _descendants(up.pid)
        assert len(family) >= 3, family
        up.terminate()  # SIGTERM, as a service manager would
        assert up.wait(60) == 0, log_path.read_text()
        assert not (family & set(_processes()))
        assert "restarting" not in log_path.read_text()  # a stop is not a crash
    finally:
        if up.poll() is None:
            up.kill()
        for pid in family & set(_processes()):
            os.kill(pid, signal.SIGKILL)


def test_scribe_up_with_models_runs_a_pool_per_model_and_routes_by_model(
    amqp_url: str, database_url: str, tmp_path: Path
) -> None:
    env = cli_env(amqp_url, database_url, tmp_path)
    api = env["SCRIBE_API_URL"]
    log_path = tmp_path / "up.log"
    up = subprocess.Popen(
        [str(BIN / "scribe"), "up", "--models", "tiny.en=1,base=1"],
        env=env,
        stdout=log_path.open("wb"),
        stderr=subprocess.STDOUT,
    )
    try:
        _wait_for(
            lambda: up.poll() is not None or _answers(f"{api}/readyz"), 240, "readiness", log_path
        )
        assert up.poll() is None, log_path.read_text()
        models = []
        for pid in _children(up.pid, "scribe-transcriber"):
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
            models += [
                e.split(b"=", 1)[1].decode()
                for e in environ
                if e.startswith(b"SCRIBE_TRANSCRIBER_MODEL=")
            ]
        assert sorted(models) == ["base", "tiny.en"]
        auth = {"Authorization": f"Bearer {DEV_API_KEY}"}
        served = probes.get(f"{api}/v1/models", headers=auth, timeout=10).json()["data"]
        assert [m["id"] for m in served][:2] == ["tiny.en", "base"]

        speech = synthesize(SCRIPTS["weather"])
        jobs = {}
        for model in ("base", None):
            fields = {"model": model} if model else {}
            with speech.open("rb") as audio:
                response = probes.post(
                    f"{api}/v1/transcriptions",
                    headers=auth,
                    data=fields,
                    files={"file": ("weather.wav", audio, "audio/wav")},
                    timeout=60,
                )
            assert response.status_code == 202, response.text
            jobs[model or "tiny.en"] = response.json()["id"]

        def finished() -> bool:
            # .get: an accepted job answers 404 until the indexer has it.
            return all(
                probes.get(f"{api}/v1/transcriptions/{job}", headers=auth, timeout=10)
                .json()
                .get("status")
                == "completed"
                for job in jobs.values()
            )

        _wait_for(finished, 300, "both jobs completed", log_path)
        for model, job in jobs.items():
            body = probes.get(f"{api}/v1/transcriptions/{job}", headers=auth, timeout=10).json()
            assert body["transcript"]["model"] == model, body
    finally:
        up.send_signal(signal.SIGTERM)
        up.wait(120)
