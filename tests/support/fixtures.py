"""pytest fixtures over `servers`: a shared server per session, a vhost and a database per test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support import servers
from tests.support.servers import Disposer, PostgresServer, RabbitServer, SeaweedServer


@pytest.fixture(scope="session")
def rabbit_server() -> Iterator[RabbitServer]:
    """A reachable RabbitMQ node (environment, local, or a container); fails loudly if none."""
    with servers.rabbit_server() as server:
        yield server


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A reachable PostgreSQL server (environment, local, or a container); fails if none."""
    with servers.postgres_server() as server:
        yield server


@pytest.fixture(scope="session")
def vhost_disposer(rabbit_server: RabbitServer) -> Iterator[Disposer]:
    """Deletes finished tests' vhosts in the background (set up after the server, so the
    last deletions end before a container server stops)."""
    with Disposer() as disposer:
        yield disposer


@pytest.fixture(scope="session")
def database_disposer(postgres_server: PostgresServer) -> Iterator[Disposer]:
    """Drops finished tests' databases in the background, like `vhost_disposer`."""
    with Disposer() as disposer:
        yield disposer


@pytest.fixture
def amqp_url(rabbit_server: RabbitServer, vhost_disposer: Disposer) -> Iterator[str]:
    """A fresh RabbitMQ vhost for this test, deleted afterwards (while the next test runs)."""
    with rabbit_server.fresh_vhost("scribe-test", disposer=vhost_disposer) as url:
        yield url


@pytest.fixture
def database_url(postgres_server: PostgresServer, database_disposer: Disposer) -> Iterator[str]:
    """A fresh PostgreSQL database for this test, dropped afterwards (while the next runs)."""
    with postgres_server.fresh_database("scribe_test", disposer=database_disposer) as url:
        yield url


@pytest.fixture(scope="session")
def seaweed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedServer]:
    """A SeaweedFS S3 server of this session's own, on spare loopback ports."""
    with servers.seaweed_server(tmp_path_factory.mktemp("seaweedfs")) as server:
        yield server


@pytest.fixture
def s3_bucket(seaweed: SeaweedServer) -> Iterator[str]:
    """A fresh bucket for this test, emptied and deleted afterwards."""
    with seaweed.fresh_bucket() as bucket:
        yield bucket
