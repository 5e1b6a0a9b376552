"""Cancel marks: how a transcriber, which has no database, learns that a job was cancelled.

Ingest writes a mark (an empty file `<media root>/<tenant>/.cancelled/<job id>`) before it
publishes `transcription.cancel_requested.v1` or `transcription.delete_requested.v1`, and
answers the client only once the mark is on disk. A transcriber looks for the mark when a
job is handed to it (so a job cancelled while queued never runs, whichever worker gets
it and however long after, a worker started later included) and every
`cancel_poll_seconds` while the job runs (so it stops at the next segment). The media
volume is the one store both already share; looking costs one `stat`.

The mark is a signal to workers; the job's state is the indexer's, which decides (a job
that completed first stays completed) and announces `transcription.cancelled.v1`. Ingest
removes the mark when the job is deleted.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from pathlib import Path
from typing import Final, Protocol
from uuid import UUID

MARK_DIR: Final = ".cancelled"


class CancelMarks(Protocol):
    """Where a job's cancellation is signalled to the workers."""

    async def mark(self, tenant: str, job_id: UUID) -> None:
        """Signal, durably, that the job must not run (on). Idempotent."""
        ...

    async def is_marked(self, tenant: str, job_id: UUID) -> bool:
        """Whether the job was cancelled (or deleted)."""
        ...

    async def clear(self, tenant: str, job_id: UUID) -> None:
        """Forget the mark (the job is erased). Idempotent."""
        ...


class FilesystemCancelMarks:
    """Marks as empty files under the media root (the volume ingest and workers share)."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()

    def path(self, tenant: str, job_id: UUID) -> Path:
        """`<root>/<tenant>/.cancelled/<job id>`; the tenant id is validated by the contract."""
        return self.root / tenant / MARK_DIR / str(job_id)

    async def mark(self, tenant: str, job_id: UUID) -> None:
        await asyncio.to_thread(_touch, self.path(tenant, job_id))

    async def is_marked(self, tenant: str, job_id: UUID) -> bool:
        return await asyncio.to_thread(self.path(tenant, job_id).exists)

    def is_marked_now(self, tenant: str, job_id: UUID) -> bool:
        """`is_marked` without a thread hop, for code already off the event loop."""
        return self.path(tenant, job_id).exists()

    async def clear(self, tenant: str, job_id: UUID) -> None:
        await asyncio.to_thread(_unlink, self.path(tenant, job_id))


def _touch(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o640)
    try:
        os.fsync(fd)  # the 202 promises the job will not run: the mark must survive a crash
    finally:
        os.close(fd)


def _unlink(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
