"""Fixtures of the fault tests: their own RabbitMQ node and PostgreSQL cluster, per session.

Killing, restarting and starving these harms nothing else: the other tests use the shared
local servers. Each test still gets its own vhost and database on them.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.servers import PostgresCluster, RabbitNode, unique_name


@dataclass
class FaultServers:
    rabbit: RabbitNode
    postgres: PostgresCluster


@dataclass
class FaultEnv:
    """One test's vhost and database on the fault servers, and where its files go."""

    servers: FaultServers
    amqp_url: str
    database_url: str
    workdir: Path


@pytest.fixture(scope="session")
def fault_servers() -> Iterator[FaultServers]:
    # Not pytest's tmp_path: its directories are private to this user, and the servers run
    # as the rabbitmq and postgres users when the tests run as root.
    base = Path(tempfile.mkdtemp(prefix="scribe-faults-"))
    base.chmod(0o755)
    with contextlib.ExitStack() as cleanup:
        cleanup.callback(shutil.rmtree, base, ignore_errors=True)
        rabbit = RabbitNode.create(base / "rabbit")
        cleanup.callback(rabbit.stop)
        # The node boots (mostly waiting) while initdb and PostgreSQL start.
        with ThreadPoolExecutor(max_workers=1) as pool:
            booting = pool.submit(rabbit.start)
            try:
                postgres = PostgresCluster.create(base / "postgres")
                postgres.start()
                cleanup.callback(postgres.stop)
            finally:
                boot_failure = booting.exception()  # waits for the node either way
        if boot_failure is not None:
            raise boot_failure
        yield FaultServers(rabbit, postgres)


@pytest.fixture
def fault_env(fault_servers: FaultServers, tmp_path: Path) -> Iterator[FaultEnv]:
    name = unique_name("faults")
    amqp_url = fault_servers.rabbit.add_vhost(name)
    try:
        with fault_servers.postgres.server.fresh_database("faults") as database_url:
            yield FaultEnv(fault_servers, amqp_url, database_url, tmp_path)
    finally:
        fault_servers.rabbit.ctl("delete_vhost", name)
