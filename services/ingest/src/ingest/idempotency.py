"""`Idempotency-Key`: one key, one job, one transcript.

The job id is derived from the tenant and the key (uuid5), and so is the event id, so a
request retried after a lost answer names the same job and, if it publishes again, the
same event, which consumers drop as a duplicate. A small record per key remembers what
the key was first used for (a fingerprint of the audio and options) and whether its event
was confirmed: a confirmed key is answered again without publishing; a key reused for
different content is refused (409 `idempotency_key_reused`).

Records live on the media volume (`<root>/<tenant>/.idempotency/<sha256(key)>.json`),
shared by every ingest replica, with an index by job (`.idempotency/jobs/<job id>`, the
key's digest) so that deleting a job (`transcription.deleted.v1`) removes its record;
they are never expired otherwise. Records written before the index existed are not found
by job and stay until removed by hand.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import secrets
import time
import uuid
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Final, Protocol

from ingest.media import off_loop

JOB_NAMESPACE: Final = uuid.UUID("7d9f4c2e-3b1a-5e8d-9c6f-2a4b8e1d0f37")
EVENT_NAMESPACE: Final = uuid.UUID("1c3e5a7b-9d2f-5b4c-8e6a-0f1d3b5c7e9a")

MAX_KEY_LENGTH: Final = 255
_READ_RETRIES: Final = 10
_READ_RETRY_SECONDS: Final = 0.02


def job_id_for(tenant: str, key: str) -> uuid.UUID:
    """The job a tenant's idempotency key names, the same on every replica and retry."""
    return uuid.uuid5(JOB_NAMESPACE, f"{tenant}:{key}")


def uploaded_event_id_for(job_id: uuid.UUID) -> uuid.UUID:
    """The `audio.uploaded` event id of a keyed job: a republish is a duplicate."""
    return uuid.uuid5(EVENT_NAMESPACE, f"{job_id}:audio.uploaded.v1")


class Claim(StrEnum):
    """What claiming a key found."""

    NEW = "new"
    """Nobody used the key: this request owns it."""
    PENDING = "pending"
    """Same content, but its event was never confirmed: publish (the same event) again."""
    DONE = "done"
    """Same content, event confirmed: answer the same job, publish nothing."""
    CONFLICT = "conflict"
    """The key was used for different content."""


@dataclass(frozen=True, slots=True)
class KeyRecord:
    """What a key was used for."""

    job_id: uuid.UUID
    fingerprint: str
    confirmed: bool


class IdempotencyStore(Protocol):
    """Remembers idempotency keys per tenant."""

    async def claim(self, tenant: str, key: str, record: KeyRecord) -> Claim:
        """Claim `key` for `record`, or say how it was used before."""
        ...

    async def confirm(self, tenant: str, key: str, record: KeyRecord) -> None:
        """The key's event was confirmed by the broker."""
        ...

    async def abandon(self, tenant: str, key: str) -> None:
        """The key's request failed before its event was confirmed: free the key."""
        ...


class FilesystemIdempotencyStore:
    """Key records as small JSON files on the media volume; `O_EXCL` settles races."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()

    def _path(self, tenant: str, key: str) -> Path:
        digest = hashlib.sha256(key.encode()).hexdigest()
        return self.root / tenant / ".idempotency" / f"{digest}.json"

    def _job_index(self, tenant: str, job_id: uuid.UUID) -> Path:
        return self.root / tenant / ".idempotency" / "jobs" / str(job_id)

    async def forget_job(self, tenant: str, job_id: uuid.UUID) -> None:
        """Remove the record of the key that named `job_id` (deleted job). Idempotent."""
        await asyncio.to_thread(self._forget_job, self._job_index(tenant, job_id))

    def _forget_job(self, index: Path) -> None:
        try:
            digest = index.read_text().strip()
        except FileNotFoundError:
            return  # no key named this job, or already forgotten
        if len(digest) == 64 and all(c in "0123456789abcdef" for c in digest):
            _unlink(index.parent.parent / f"{digest}.json")
        _unlink(index)

    async def claim(self, tenant: str, key: str, record: KeyRecord) -> Claim:
        # A full disk here is 507, like one while streaming the audio.
        claim = await off_loop(lambda: self._claim(self._path(tenant, key), record))
        if claim is Claim.NEW:
            index = self._job_index(tenant, record.job_id)
            digest = self._path(tenant, key).stem
            await off_loop(lambda: _write_index(index, digest))
        return claim

    def _claim(self, path: Path, record: KeyRecord) -> Claim:
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
        except FileExistsError:
            existing = _read(path)
            for _ in range(_READ_RETRIES):
                if existing is not None:
                    break
                # Another request created the record a moment ago and is still writing it.
                time.sleep(_READ_RETRY_SECONDS)
                existing = _read(path)
            if existing is None or existing.fingerprint != record.fingerprint:
                return Claim.CONFLICT
            return Claim.DONE if existing.confirmed else Claim.PENDING
        try:
            with os.fdopen(fd, "w") as file:
                file.write(_dump(record))
        except BaseException:
            # A half-written claim would read as another request's forever: remove it.
            _unlink(path)
            raise
        return Claim.NEW

    async def confirm(self, tenant: str, key: str, record: KeyRecord) -> None:
        confirmed = KeyRecord(record.job_id, record.fingerprint, confirmed=True)
        await asyncio.to_thread(_replace, self._path(tenant, key), _dump(confirmed))

    async def abandon(self, tenant: str, key: str) -> None:
        path = self._path(tenant, key)
        await asyncio.to_thread(_unlink, path)
        await asyncio.to_thread(_unlink, self._job_index(tenant, job_id_for(tenant, key)))


def _dump(record: KeyRecord) -> str:
    return json.dumps(
        {
            "job_id": str(record.job_id),
            "fingerprint": record.fingerprint,
            "confirmed": record.confirmed,
        }
    )


def _read(path: Path) -> KeyRecord | None:
    try:
        raw = json.loads(path.read_text())
        return KeyRecord(uuid.UUID(raw["job_id"]), str(raw["fingerprint"]), bool(raw["confirmed"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _replace(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
    tmp.write_text(text)
    tmp.replace(path)


def _write_index(index: Path, digest: str) -> None:
    index.parent.mkdir(parents=True, exist_ok=True)
    _replace(index, digest)


def _unlink(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
