"""A RabbitMQ node and a PostgreSQL cluster of the fault tests' own, on spare ports.

The fault tests stop, restart and starve these servers; the shared local servers the
other tests use are never touched. Both live in a temporary directory removed afterwards.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

RABBIT_LIBEXEC = Path("/usr/lib/rabbitmq/bin")
PG_BIN_CANDIDATES = sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_port(port: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
            return True
        time.sleep(0.2)
    return False


def _chown_tree(path: Path, user: str) -> None:
    entry = pwd.getpwnam(user)
    for root, dirs, files in os.walk(path):
        os.chown(root, entry.pw_uid, entry.pw_gid)
        for name in dirs + files:
            os.chown(Path(root) / name, entry.pw_uid, entry.pw_gid)


@dataclass
class RabbitNode:
    """`rabbitmq-server -detached` with its own node name, ports and data directory."""

    base: Path
    port: int
    dist_port: int
    node: str

    @classmethod
    def create(cls, base: Path) -> RabbitNode:
        port = free_port()
        node = cls(
            base=base, port=port, dist_port=free_port(), node=f"scribe-faults-{port}@localhost"
        )
        (base / "mnesia").mkdir(parents=True)
        (base / "log").mkdir()
        (base / "enabled_plugins").write_text("[].\n")  # no management: its port is taken
        (base / "rabbitmq.conf").write_text(
            "loopback_users = none\nconsumer_timeout = 10800000\nheartbeat = 10\n"
        )
        if os.geteuid() == 0:
            _chown_tree(base, "rabbitmq")
        return node

    @property
    def amqp_url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}/"

    def _env(self) -> dict[str, str]:
        return {
            **os.environ,
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_MNESIA_BASE": str(self.base / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.base / "log"),
            "RABBITMQ_CONFIG_FILE": str(self.base / "rabbitmq"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.base / "enabled_plugins"),
            "RABBITMQ_PID_FILE": str(self.base / "node.pid"),
        }

    def _server(self) -> list[str]:
        # As root, the Debian wrapper switches to the rabbitmq user (environment kept).
        if os.geteuid() != 0 and (RABBIT_LIBEXEC / "rabbitmq-server").exists():
            return [str(RABBIT_LIBEXEC / "rabbitmq-server")]
        return ["rabbitmq-server"]

    def ctl(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["rabbitmqctl", "-n", self.node, *args],
            env=self._env(),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def start(self, timeout: float = 90) -> None:
        subprocess.run([*self._server(), "-detached"], env=self._env(), check=True, timeout=60)
        # `-detached` returns before the node registers with epmd; await_startup fails
        # fast until it has, so ask again until the deadline.
        deadline = time.monotonic() + timeout
        while True:
            done = self.ctl("await_startup", "--timeout", "30", timeout=45)
            if done.returncode == 0 and _wait_port(self.port, 10):
                return
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"RabbitMQ node {self.node} did not start: {done.stderr}\n{self.logs()}"
                )
            time.sleep(0.5)

    def stop(self) -> None:
        self.ctl("stop", timeout=120)

    def restart(self) -> None:
        self.stop()
        self.start()

    def logs(self) -> str:
        return "\n".join(
            p.read_text(errors="replace")[-3000:] for p in (self.base / "log").glob("*.log")
        )

    def add_vhost(self, vhost: str) -> str:
        for args in (
            ("add_vhost", vhost),
            ("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*"),
        ):
            done = self.ctl(*args)
            assert done.returncode == 0, done.stderr
        return f"{self.amqp_url}{vhost}"


@dataclass
class PostgresCluster:
    """`initdb` + `pg_ctl` on a spare port, as the `postgres` user when run as root."""

    data: Path
    socket_dir: Path
    port: int
    bin: Path

    @classmethod
    def create(cls, base: Path) -> PostgresCluster:
        bin_dir = next((b for b in PG_BIN_CANDIDATES if (b / "initdb").exists()), None)
        if bin_dir is None:
            found = shutil.which("initdb")
            assert found, "PostgreSQL server binaries (initdb, pg_ctl) are not installed"
            bin_dir = Path(found).parent
        base.mkdir(parents=True, exist_ok=True)
        cluster = cls(data=base / "data", socket_dir=base / "sock", port=free_port(), bin=bin_dir)
        cluster.socket_dir.mkdir()
        if os.geteuid() == 0:
            _chown_tree(base, "postgres")
        cluster._run(
            "initdb", "-D", str(cluster.data), "-A", "trust", "-U", "postgres", "--no-sync"
        )
        return cluster

    def _run(self, tool: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        argv = [str(self.bin / tool), *args]
        if os.geteuid() == 0:
            argv = ["runuser", "-u", "postgres", "--", *argv]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
        assert done.returncode == 0, f"{tool} failed: {done.stdout}\n{done.stderr}"
        return done

    @property
    def admin_url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def database_url(self, name: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{name}"

    def start(self) -> None:
        options = f"-p {self.port} -k {self.socket_dir} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run(
            "pg_ctl",
            "-D",
            str(self.data),
            "-o",
            options,
            "-l",
            str(self.data.parent / "pg.log"),
            "-w",
            "start",
        )

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")
