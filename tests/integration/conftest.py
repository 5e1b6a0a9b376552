"""Fixtures of the tests that run real `scribe-transcriber` processes."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from scribe_runtime.topology import declare_topology
from tests.support.workers import EventTap, WorkerProcess


@pytest.fixture
def media(tmp_path: Path) -> Path:
    root = tmp_path / "media"
    root.mkdir()
    return root


@pytest.fixture
async def tap(amqp_url: str) -> AsyncIterator[EventTap]:
    """Every job event on the test's vhost, heard as a downstream subscriber would."""
    await declare_topology(amqp_url)
    tap = EventTap(amqp_url)
    await tap.start()
    try:
        yield tap
    finally:
        await tap.close()


@pytest.fixture
def workers() -> Iterator[list[WorkerProcess]]:
    """Worker processes the test starts; each is stopped at the end."""
    started: list[WorkerProcess] = []
    yield started
    for worker in started:
        worker.stop()
