"""The filesystem media store: atomic, content-addressed, and never removes a shared file."""

from __future__ import annotations

import asyncio
import hashlib
import os
from pathlib import Path

import pytest

from ingest.media import FilesystemMediaStore, UploadTooLargeError


def _files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


async def test_streamed_bytes_land_at_their_content_address(tmp_path: Path) -> None:
    store = FilesystemMediaStore(tmp_path)
    upload = store.begin(max_bytes=10 * 1024 * 1024)
    chunks = [bytes([i]) * 300_000 for i in range(7)]  # crosses the flush size
    for chunk in chunks:
        await upload.write(chunk)

    stored = await upload.commit("acme")
    store.keep(stored)

    data = b"".join(chunks)
    sha = hashlib.sha256(data).hexdigest()
    assert (stored.sha256, stored.size_bytes, stored.created) == (sha, len(data), True)
    assert stored.path == store.root / "acme" / sha[:2] / sha
    assert _files(tmp_path) == [stored.path]
    assert stored.path.read_bytes() == data


async def test_size_limit_is_enforced_while_streaming(tmp_path: Path) -> None:
    store = FilesystemMediaStore(tmp_path)
    upload = store.begin(max_bytes=1000)
    await upload.write(b"x" * 1000)
    with pytest.raises(UploadTooLargeError):
        await upload.write(b"x")
    await upload.discard()
    assert _files(tmp_path) == []


async def test_a_failed_job_does_not_remove_the_file_a_concurrent_job_uses(
    tmp_path: Path,
) -> None:
    store = FilesystemMediaStore(tmp_path)
    first, second = store.begin(1000), store.begin(1000)
    for upload in (first, second):
        await upload.write(b"same bytes")
    stored_first = await first.commit("acme")
    # The second commit waits until the first job is settled either way.
    second_commit = asyncio.create_task(second.commit("acme"))
    await asyncio.sleep(0.05)
    assert not second_commit.done()

    await store.release(stored_first)  # the first job's publish failed
    stored_second = await second_commit
    store.keep(stored_second)

    assert stored_second.created  # re-created, not a reference to a removed file
    assert _files(tmp_path) == [stored_second.path]


async def test_stale_temp_uploads_are_swept_fresh_ones_kept(tmp_path: Path) -> None:
    store = FilesystemMediaStore(tmp_path)
    store.tmp.mkdir(parents=True)
    stale, fresh = store.tmp / "stale", store.tmp / "fresh"
    stale.write_bytes(b"a")
    fresh.write_bytes(b"b")
    os.utime(stale, (0, 0))

    assert await store.sweep_stale_uploads(3600) == 1
    assert _files(tmp_path) == [fresh]
