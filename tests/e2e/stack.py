"""The three services as real processes against an isolated vhost and database."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def as_user(url: str, user: str) -> str:
    """`url` with its user replaced (and no password)."""
    parts = urlsplit(url)
    host = parts.hostname or "127.0.0.1"
    netloc = f"{user}@{host}:{parts.port}" if parts.port else f"{user}@{host}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


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
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def log(self, name: str) -> str:
        return (self.log_dir / f"{name}.log").read_text(errors="replace")

    def start(self, name: str, argv: list[str], extra_env: dict[str, str] | None = None) -> None:
        handle = (self.log_dir / f"{name}.log").open("ab")
        self.processes[name] = subprocess.Popen(
            argv,
            env={**self.env, **(extra_env or {})},
            stdout=handle,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )

    def stop(self, timeout: float = 40.0) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for process in self.processes.values():
            try:
                process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def wait_ready(self, timeout: float = 120.0) -> None:
        """Until ingest and both workers answer /readyz; fail with their logs if not."""
        urls = {"ingest": f"{self.api}/readyz"} | {
            name: f"http://127.0.0.1:{port}/readyz" for name, port in self.health.items()
        }
        deadline = time.monotonic() + timeout
        pending = dict(urls)
        while pending and time.monotonic() < deadline:
            for name, url in list(pending.items()):
                process = self.processes[name]
                if process.poll() is not None:
                    raise AssertionError(
                        f"{name} exited with {process.returncode}:\n{self.log(name)}"
                    )
                try:
                    if httpx.get(url, timeout=2).status_code == 200:
                        del pending[name]
                except httpx.HTTPError:
                    pass
            time.sleep(0.3)
        if pending:
            logs = "\n".join(f"--- {n}\n{self.log(n)[-3000:]}" for n in pending)
            raise AssertionError(f"not ready after {timeout} s: {sorted(pending)}\n{logs}")


@contextmanager
def running_stack(
    amqp_url: str,
    database_url: str,
    workdir: Path,
    *,
    transcribers: int = 1,
    transcriber_argv: list[str] | None = None,
    env: dict[str, str] | None = None,
) -> Iterator[Stack]:
    """Migrate, start indexer, transcriber(s) and ingest; stop them all afterwards.

    The keywords serve the benchmarks: several transcriber processes (named `transcriber`,
    `transcriber-2`, ...), another transcriber command, and environment overrides.
    """
    media_root = workdir / "media"
    log_dir = workdir / "logs"
    media_root.mkdir()
    log_dir.mkdir()
    port = free_port()
    names = ["transcriber"] + [f"transcriber-{i}" for i in range(2, transcribers + 1)]
    health = {"indexer": free_port()} | {name: free_port() for name in names}
    base_env = {
        **os.environ,
        "SCRIBE_AMQP_URL": amqp_url,
        "SCRIBE_DATABASE_URL": database_url,
        "SCRIBE_MEDIA_ROOT": str(media_root),
        "SCRIBE_LOG_FORMAT": "json",
        "SCRIBE_LOG_LEVEL": "INFO",
        "SCRIBE_INGEST_PORT": str(port),
        "SCRIBE_INGEST_DATABASE_URL": as_user(database_url, "scribe_reader"),
        "SCRIBE_INDEXER_HEALTH_PORT": str(health["indexer"]),
        "SCRIBE_TRANSCRIBER_HEALTH_PORT": str(health["transcriber"]),
        "SCRIBE_TRANSCRIBER_CPU_THREADS": "2",
        "HF_HUB_OFFLINE": "1",
    }
    env = base_env | (env or {})
    stack = Stack(
        api=f"http://127.0.0.1:{port}",
        amqp_url=amqp_url,
        database_url=database_url,
        media_root=media_root,
        log_dir=log_dir,
        env=env,
        health=health,
    )
    migrate = subprocess.run(
        [str(BIN / "scribe-indexer"), "migrate"], env=env, capture_output=True, timeout=120
    )
    assert migrate.returncode == 0, migrate.stdout.decode() + migrate.stderr.decode()
    try:
        stack.start("indexer", [str(BIN / "scribe-indexer"), "run"])
        for name in names:
            stack.start(
                name,
                transcriber_argv or [str(BIN / "scribe-transcriber")],
                {"SCRIBE_TRANSCRIBER_HEALTH_PORT": str(health[name])},
            )
        stack.start("ingest", [str(BIN / "scribe-ingest")])
        stack.wait_ready()
        yield stack
    finally:
        stack.stop()
