"""Over real sockets: a client that vanishes mid-upload leaves nothing behind, and one
tenant's uploads in flight are capped (429 with Retry-After) without touching another's."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from ingest.deps import container_of
from ingest.limits import UploadSlots
from services.ingest.tests import samples
from tests.security.support import KEYS, auth, files_under, running_app, serving
from tests.support.waiting import eventually_async

pytestmark = pytest.mark.integration

LIMIT = 2
BOUNDARY = "slow-client"


@dataclass
class Server:
    app: FastAPI
    port: int
    media_root: Path

    @property
    def slots(self) -> UploadSlots:
        return container_of(self.app).slots

    def leftovers(self) -> list[Path]:
        return files_under(self.media_root)


@pytest.fixture
async def server(amqp_url: str, tmp_path: Path) -> AsyncIterator[Server]:
    media_root = tmp_path / "media"
    async with (
        running_app(
            amqp_url,
            "postgresql://scribe_reader@127.0.0.1:1/unused",
            media_root,
            max_concurrent_uploads_per_tenant=LIMIT,
        ) as app,
        serving(app) as port,
    ):
        yield Server(app, port, media_root)


async def half_upload(port: int, tenant: str, body_size: int = 6_000_000) -> asyncio.StreamWriter:
    """Send the headers and half of a multipart body, then wait (a slow or dead client)."""
    head = (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\n'
        "Content-Type: audio/wav\r\n\r\n"
    ).encode()
    _, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        (
            f"POST /v1/transcriptions HTTP/1.1\r\nHost: ingest\r\n"
            f"Authorization: Bearer {KEYS[tenant]}\r\n"
            f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n"
            f"Content-Length: {body_size}\r\n\r\n"
        ).encode()
        + head
        + bytes(body_size // 2)  # over the media store's 1 MiB flush: a temp file exists
    )
    await writer.drain()
    return writer


async def until(condition: Callable[[], bool], what: str) -> None:
    """Poll a condition on the server in this loop, letting the loop serve in between."""

    async def check() -> bool:
        return condition()

    await eventually_async(check, within=10, interval=0.05, what=what)


async def test_a_client_that_disconnects_mid_upload_leaves_nothing(server: Server) -> None:
    writer = await half_upload(server.port, "acme")
    await until(lambda: server.slots.in_flight("acme") == 1, "the upload to start")
    await until(lambda: server.leftovers() != [], "bytes to reach the temp file")

    writer.close()  # half the body sent, then gone
    await until(lambda: server.slots.in_flight("acme") == 0, "the slot to be given back")
    await until(lambda: server.leftovers() == [], "the partial file to be removed")


async def test_too_many_uploads_in_flight_is_429_for_that_tenant_only(server: Server) -> None:
    held = [await half_upload(server.port, "acme") for _ in range(LIMIT)]
    await until(lambda: server.slots.in_flight("acme") == LIMIT, "both uploads to start")
    url = f"http://127.0.0.1:{server.port}/v1/transcriptions"
    files = {"file": ("a.wav", samples.wav_bytes(1.0), "audio/wav")}
    async with httpx.AsyncClient(timeout=30) as http:
        busy = await http.post(url, files=files, headers=auth("acme"))
        assert busy.status_code == 429
        assert busy.json()["code"] == "too_many_uploads"
        assert int(busy.headers["retry-after"]) > 0

        other = await http.post(url, files=files, headers=auth("globex"))
        assert other.status_code == 202, other.text

        for writer in held:
            writer.close()
        await until(lambda: server.slots.in_flight("acme") == 0, "the slots to be freed")
        again = await http.post(url, files=files, headers=auth("acme"))
        assert again.status_code == 202, again.text
    stored = [p for p in server.leftovers() if ".idempotency" not in p.parts]
    assert len(stored) == 2  # globex's and acme's accepted files; nothing of the dropped ones
