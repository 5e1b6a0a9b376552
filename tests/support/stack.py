"""Scribe's services as real processes against an isolated vhost and database.

The one launcher of the end-to-end tests, the fault suite and the benchmarks: migrate,
then the indexer, the transcriber(s), the webhook dispatcher and ingest, each with its
log file; wait until all answer /readyz; stop them all (SIGTERM, then SIGKILL) afterwards.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.support import probes
from tests.support.ports import free_port
from tests.support.servers import READER, as_role
from tests.support.waiting import eventually

BIN = Path(sys.executable).parent
REPO = Path(__file__).resolve().parents[2]
TRANSCRIBER = [str(BIN / "scribe-transcriber")]


def python_module(module: str) -> list[str]:
    """The command running `module` of this repository with this interpreter."""
    return [sys.executable, "-m", module]


def start_process(
    argv: Sequence[str], env: dict[str, str], log_path: Path
) -> subprocess.Popen[bytes]:
    """Start `argv` with its output appended to `log_path`."""
    with log_path.open("ab") as handle:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(
            list(argv), env=env, stdout=handle, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )


def stop_processes(processes: Iterable[subprocess.Popen[bytes]], timeout: float) -> None:
    """SIGTERM every process, then SIGKILL whichever has not exited within `timeout` in all."""
    processes = list(processes)
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for process in processes:
        try:
            process.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def transcriber_names(count: int) -> list[str]:
    """`transcriber`, `transcriber-2`, ...: the first keeps the plain name logs are read by."""
    return ["transcriber"] + [f"transcriber-{n}" for n in range(2, count + 1)]


@dataclass
class Stack:
    """A running Scribe: where its API is, what it talks to, where its logs go."""

    api: str
    amqp_url: str
    database_url: str
    media_root: Path
    log_dir: Path
    env: dict[str, str]
    health: dict[str, int]
    transcriber_argv: list[str] = field(default_factory=lambda: list(TRANSCRIBER))
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def log(self, name: str) -> str:
        return (self.log_dir / f"{name}.log").read_text(errors="replace")

    def start(self, name: str, argv: list[str], extra_env: dict[str, str] | None = None) -> None:
        env = {**self.env, **(extra_env or {})}
        self.processes[name] = start_process(argv, env, self.log_dir / f"{name}.log")

    def start_transcriber(self, name: str) -> None:
        """(Re)start the transcriber `name` with `transcriber_argv`, on its own health port."""
        self.start(
            name,
            self.transcriber_argv,
            {
                "SCRIBE_TRANSCRIBER_HEALTH_PORT": str(self.health[name]),
                "SCRIBE_TRANSCRIBER_WORKER_NAME": name,
            },
        )

    def stop(self, timeout: float = 40.0) -> None:
        stop_processes(self.processes.values(), timeout)

    def wait_ready(self, timeout: float = 120.0) -> None:
        """Until ingest and the workers answer /readyz; fail with their logs if not."""
        urls = {"ingest": f"{self.api}/readyz"} | {
            name: f"http://127.0.0.1:{port}/readyz" for name, port in self.health.items()
        }
        pending = dict(urls)

        def all_ready() -> bool:
            for name, url in list(pending.items()):
                process = self.processes[name]
                if process.poll() is not None:
                    raise AssertionError(
                        f"{name} exited with {process.returncode}:\n{self.log(name)}"
                    )
                try:
                    if probes.get(url, timeout=2).status_code == 200:
                        del pending[name]
                except httpx.HTTPError:
                    pass
            return not pending

        def not_ready() -> str:
            logs = "\n".join(f"--- {n}\n{self.log(n)[-3000:]}" for n in pending)
            return f"{sorted(pending)} ready\n{logs}"

        eventually(all_ready, within=timeout, interval=0.3, what=not_ready)


@contextmanager
def running_stack(
    amqp_url: str,
    database_url: str,
    workdir: Path,
    *,
    transcribers: int | Sequence[str] = 1,
    transcriber_argv: list[str] | None = None,
    env: dict[str, str] | None = None,
    ready_timeout: float = 120.0,
) -> Iterator[Stack]:
    """Migrate, start indexer, transcriber(s), webhooks and ingest; stop them all afterwards.

    `transcribers` is a count (named by `transcriber_names`) or the workers' names;
    `transcriber_argv` another transcriber command (the benchmarks' instant engine, the
    fault suite's crashing one); `env` overrides any variable given to every process.
    """
    media_root = workdir / "media"
    log_dir = workdir / "logs"
    media_root.mkdir(parents=True, exist_ok=True)
    log_dir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    names = transcriber_names(transcribers) if isinstance(transcribers, int) else list(transcribers)
    health = {"indexer": free_port(), "webhooks": free_port()} | {
        name: free_port() for name in names
    }
    base_env = {
        **os.environ,
        "SCRIBE_AMQP_URL": amqp_url,
        "SCRIBE_DATABASE_URL": database_url,
        "SCRIBE_MEDIA_ROOT": str(media_root),
        "SCRIBE_LOG_FORMAT": "json",
        "SCRIBE_LOG_LEVEL": "INFO",
        "SCRIBE_INGEST_PORT": str(port),
        "SCRIBE_INGEST_DATABASE_URL": as_role(database_url, READER),
        "SCRIBE_INDEXER_HEALTH_PORT": str(health["indexer"]),
        "SCRIBE_WEBHOOKS_DATABASE_URL": as_role(database_url, READER),
        "SCRIBE_WEBHOOKS_HEALTH_PORT": str(health["webhooks"]),
        "SCRIBE_TRANSCRIBER_CPU_THREADS": "2",
        "HF_HUB_OFFLINE": "1",
        # So that `python -m tests.support...` / `python -m bench...` commands import.
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
    }
    stack = Stack(
        api=f"http://127.0.0.1:{port}",
        amqp_url=amqp_url,
        database_url=database_url,
        media_root=media_root,
        log_dir=log_dir,
        env=base_env | (env or {}),
        health=health,
        transcriber_argv=transcriber_argv or list(TRANSCRIBER),
    )
    migrate = subprocess.run(
        [str(BIN / "scribe-indexer"), "migrate"], env=stack.env, capture_output=True, timeout=120
    )
    assert migrate.returncode == 0, migrate.stdout.decode() + migrate.stderr.decode()
    try:
        stack.start("indexer", [str(BIN / "scribe-indexer"), "run"])
        stack.start("webhooks", [str(BIN / "scribe-webhooks")])
        for name in names:
            stack.start_transcriber(name)
        stack.start("ingest", [str(BIN / "scribe-ingest")])
        stack.wait_ready(ready_timeout)
        yield stack
    finally:
        stack.stop()


def wait_for_job(
    client: httpx.Client, job_id: str, want: str = "completed", within: float = 240.0
) -> dict[str, Any]:
    """The job once it has ended (completed or failed); fails unless it ended as `want`."""
    last: dict[str, Any] = {}

    def ended() -> bool:
        nonlocal last
        response = client.get(f"/v1/transcriptions/{job_id}")
        if response.status_code == 200:  # 404 until the indexer has heard of it
            last = response.json()
        return last.get("status") in {"completed", "failed"}

    eventually(ended, within=within, interval=0.5, what=lambda: f"job {job_id} ended ({last})")
    assert last["status"] == want, f"job {job_id} ended as {last}"
    return last
