"""A full media root: uploads answer 507 `insufficient_storage` and leave nothing behind,
and `/readyz` turns not-ready below the free-space floor, before uploads start failing."""

from __future__ import annotations

import errno
import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from prometheus_client import REGISTRY

from ingest.media import FilesystemMediaStore, FilesystemUpload
from ingest.settings import IngestSettings
from services.ingest.tests import samples
from services.ingest.tests.test_api import DEV_AUTH, FakePublisher, fake_app


class FillingUpload(FilesystemUpload):
    """The real upload, on a filesystem that fills up after `room` bytes."""

    room = 64 * 1024

    def _write_chunk(self, chunk: bytes) -> None:
        if self.size_bytes > self.room:
            # What os.write raises on a full disk; the real write path sees nothing else.
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        super()._write_chunk(chunk)


class FullMediaStore(FilesystemMediaStore):
    def begin(self, max_bytes: int) -> FilesystemUpload:
        return FillingUpload(self, max_bytes)


async def app_client(
    media: FilesystemMediaStore, media_root: Path
) -> AsyncIterator[httpx.AsyncClient]:
    settings = IngestSettings(max_upload_bytes=10_000_000)
    async with fake_app(
        settings, media_root, FakePublisher(), media=media, max_duration_seconds=60.0
    ) as app:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://ingest", headers=DEV_AUTH
        ) as client:
            yield client


@pytest.fixture
async def full(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    async for client in app_client(FullMediaStore(tmp_path / "media"), tmp_path / "media"):
        yield client


def refused(code: str) -> float:
    return (
        REGISTRY.get_sample_value("scribe_ingest_submissions_rejected_total", {"code": code}) or 0
    )


async def test_an_upload_onto_a_full_disk_is_507_and_leaves_nothing(
    full: httpx.AsyncClient, tmp_path: Path
) -> None:
    before = refused("insufficient_storage")
    audio = samples.wav_bytes(10.0)  # 320 KB: several flushes, the second one fails
    for _ in range(2):
        response = await full.post(
            "/v1/transcriptions", files={"file": ("a.wav", audio, "audio/wav")}
        )
        assert response.status_code == 507, response.text
        assert response.json()["code"] == "insufficient_storage"
        assert int(response.headers["retry-after"]) > 0
    assert [p for p in (tmp_path / "media").rglob("*") if p.is_file()] == []
    assert refused("insufficient_storage") == before + 2


async def test_readyz_is_not_ready_below_the_free_space_floor(tmp_path: Path) -> None:
    root = tmp_path / "media"
    free = shutil.disk_usage(tmp_path).free
    async for client in app_client(FilesystemMediaStore(root, min_free_bytes=free * 2), root):
        response = await client.get("/readyz")
        assert response.status_code == 503
        body = response.json()
        assert body["checks"]["media_root"]["ok"] is False
        assert "bytes free" in body["checks"]["media_root"]["message"]
        assert str(root) not in response.text
        gauge = REGISTRY.get_sample_value("scribe_ingest_media_free_bytes")
        assert gauge is not None
        assert gauge > 0
    async for client in app_client(FilesystemMediaStore(root, min_free_bytes=1024), root):
        assert (await client.get("/readyz")).status_code == 200
