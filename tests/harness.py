"""Real RabbitMQ and PostgreSQL for the tests, each test isolated in its own vhost/database.

Where the servers come from, in order:
1. `SCRIBE_TEST_AMQP_URL` / `SCRIBE_TEST_DATABASE_URL` (a server; the vhost/database
   in the URL is only used to connect, the tests make their own);
2. the local servers on their default ports (127.0.0.1:5672, 127.0.0.1:5432);
3. testcontainers, where a Docker engine answers;
4. otherwise the test fails, saying what to start. It never skips.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import asyncpg
import httpx
import pytest

LOCAL_AMQP = "amqp://guest:guest@127.0.0.1:5672/"
LOCAL_POSTGRES = "postgresql://postgres@127.0.0.1:5432/postgres"

HOW_TO_START = (
    "Start them locally (Debian: `rabbitmq-server -detached`, "
    "`rabbitmq-plugins enable rabbitmq_management`, "
    "`pg_ctlcluster 15 main start`), point SCRIBE_TEST_AMQP_URL / "
    "SCRIBE_TEST_DATABASE_URL at running servers, or run a Docker engine for testcontainers. "
    "`bash scripts/bootstrap` does the local set-up."
)


def _reachable(url: str, default_port: int) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection(
            (parts.hostname or "127.0.0.1", parts.port or default_port), 2
        ):
            return True
    except OSError:
        return False


def _docker_available() -> bool:
    docker = shutil.which("docker")
    if docker is None:
        return False
    result = subprocess.run([docker, "info"], capture_output=True, timeout=20, check=False)
    return result.returncode == 0


def with_path(url: str, path: str) -> str:
    """`url` with its path (vhost or database) replaced."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + path, parts.query, parts.fragment))


@dataclass(frozen=True)
class RabbitServer:
    """A RabbitMQ node the tests may create vhosts on."""

    amqp_url: str
    management_url: str | None

    @property
    def credentials(self) -> tuple[str, str]:
        parts = urlsplit(self.amqp_url)
        return parts.username or "guest", parts.password or "guest"

    def _management(self, method: str, path: str, json: Any = None) -> httpx.Response:
        assert self.management_url is not None
        response = httpx.request(
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

    def queue_info(self, vhost_url: str, queue: str) -> dict[str, Any]:
        """The management API's view of a queue (type, arguments, message counts)."""
        vhost = urlsplit(vhost_url).path.lstrip("/")
        response = self._management("GET", f"queues/{vhost}/{quote(queue, safe='')}")
        result: dict[str, Any] = response.json()
        return result


def _is_local(url: str) -> bool:
    return urlsplit(url).hostname in {"127.0.0.1", "localhost", "::1"}


def _management_url_for(amqp_url: str) -> str:
    explicit = os.environ.get("SCRIBE_TEST_AMQP_MANAGEMENT_URL")
    if explicit:
        return explicit.rstrip("/")
    return f"http://{urlsplit(amqp_url).hostname or '127.0.0.1'}:15672"


@pytest.fixture(scope="session")
def rabbit_server() -> Iterator[RabbitServer]:
    """A reachable RabbitMQ node (environment, local, or a container); fails loudly if none."""
    explicit = os.environ.get("SCRIBE_TEST_AMQP_URL")
    if explicit:
        if not _reachable(explicit, 5672):
            pytest.fail(f"SCRIBE_TEST_AMQP_URL={explicit} is not reachable. {HOW_TO_START}")
        yield RabbitServer(explicit, _management_url_for(explicit))
        return
    if _reachable(LOCAL_AMQP, 5672):
        yield RabbitServer(LOCAL_AMQP, _management_url_for(LOCAL_AMQP))
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


@dataclass(frozen=True)
class PostgresServer:
    """A PostgreSQL server the tests may create databases on."""

    admin_url: str

    def database_url(self, name: str) -> str:
        return with_path(self.admin_url, name)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A reachable PostgreSQL server (environment, local, or a container); fails if none."""
    explicit = os.environ.get("SCRIBE_TEST_DATABASE_URL")
    if explicit:
        if not _reachable(explicit, 5432):
            pytest.fail(f"SCRIBE_TEST_DATABASE_URL={explicit} is not reachable. {HOW_TO_START}")
        yield PostgresServer(explicit)
        return
    if _reachable(LOCAL_POSTGRES, 5432):
        yield PostgresServer(LOCAL_POSTGRES)
        return
    if _docker_available():
        from testcontainers.postgres import PostgresContainer

        with PostgresContainer("postgres:16", driver=None) as container:
            yield PostgresServer(container.get_connection_url())
        return
    pytest.fail(f"no PostgreSQL: nothing on 127.0.0.1:5432 and no Docker engine. {HOW_TO_START}")


def _unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:12]}"


@pytest.fixture
def amqp_url(rabbit_server: RabbitServer) -> Iterator[str]:
    """A fresh RabbitMQ vhost for this test, deleted afterwards."""
    vhost = _unique("scribe-test")
    url = rabbit_server.create_vhost(vhost)
    try:
        yield url
    finally:
        rabbit_server.delete_vhost(vhost)


async def _admin(url: str, sql: str) -> None:
    conn = await asyncpg.connect(url, timeout=10)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@pytest.fixture
def database_url(postgres_server: PostgresServer) -> Iterator[str]:
    """A fresh PostgreSQL database for this test, dropped afterwards."""
    name = _unique("scribe_test")
    asyncio.run(_admin(postgres_server.admin_url, f'CREATE DATABASE "{name}"'))
    try:
        yield postgres_server.database_url(name)
    finally:
        asyncio.run(
            _admin(postgres_server.admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        )
