"""Erasing a deleted job's media: idempotent, confined to the media root, honest about s3."""

from __future__ import annotations

from pathlib import Path
from uuid import uuid4

import pytest

from indexer.media import LocalMediaEraser, UnerasableMediaError


async def test_a_stored_file_is_erased_and_erasing_again_is_fine(tmp_path: Path) -> None:
    audio = tmp_path / "acme" / "ab" / "abcd"
    audio.parent.mkdir(parents=True)
    audio.write_bytes(b"RIFF")
    eraser = LocalMediaEraser(tmp_path)
    await eraser.delete_media(audio.as_uri())
    assert not audio.exists()
    await eraser.delete_media(audio.as_uri())  # a retried request finds it gone


async def test_a_file_outside_the_media_root_is_never_touched(tmp_path: Path) -> None:
    root, outside = tmp_path / "media", tmp_path / "elsewhere.wav"
    root.mkdir()
    outside.write_bytes(b"RIFF")
    eraser = LocalMediaEraser(root)
    await eraser.delete_media(outside.as_uri())
    await eraser.delete_media(f"{root.as_uri()}/../elsewhere.wav")
    assert outside.exists()


async def test_someone_elses_url_is_not_ours_and_s3_is_refused(tmp_path: Path) -> None:
    eraser = LocalMediaEraser(tmp_path)
    await eraser.delete_media("https://example.com/talk.mp3")
    with pytest.raises(UnerasableMediaError, match="s3"):
        await eraser.delete_media("s3://bucket/acme/ab/abcd")


async def test_a_long_jobs_chunks_are_erased_and_another_jobs_are_kept(tmp_path: Path) -> None:
    job, other = uuid4(), uuid4()
    for j in (job, other):
        folder = tmp_path / "acme" / "chunks" / str(j)
        folder.mkdir(parents=True)
        (folder / "0000.wav").write_bytes(b"RIFF")
    eraser = LocalMediaEraser(tmp_path)
    await eraser.delete_chunks("acme", job)
    await eraser.delete_chunks("acme", job)  # a retried request finds them gone
    await eraser.delete_chunks("acme", uuid4())  # a short job has none
    assert not (tmp_path / "acme" / "chunks" / str(job)).exists()
    assert (tmp_path / "acme" / "chunks" / str(other) / "0000.wav").exists()
