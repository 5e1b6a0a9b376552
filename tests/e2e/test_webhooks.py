"""Webhooks end to end: a real receiver on 127.0.0.1 verifies every delivery with the
`standardwebhooks` library, through a 30 s outage, a rotation and a replay.

The jobs run on the instant engine (the control plane only), then one on the real model.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import shutil
import threading
import time
import wave
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from uuid import uuid4

import httpx
import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from contracts import AudioUploadedV1
from scribe_runtime.messaging import make_broker, publish_event
from tests.security.support import KEYS, auth, keyring
from tests.support.ports import free_port
from tests.support.stack import TRANSCRIBER, Stack, python_module, running_stack, wait_for_job
from tests.support.waiting import eventually

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

OUTAGE_SECONDS = 30.0
INSTANT_JOBS = 4
SHARED_AUDIO = Path(__file__).resolve().parents[2] / ".." / "shared" / "audio"
REAL_CLIP = "ls_test-other_1688-142285-0002.flac"  # 2.8 s: "you don't mean that ..."


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """An HTTP server on 127.0.0.1 that records every POST and answers 204."""

    port: int
    received: list[Received] = field(default_factory=list)
    _server: ThreadingHTTPServer | None = None

    def start(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                receiver.received.append(Received(dict(self.headers.items()), body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def by_job(self) -> dict[str, list[Received]]:
        found: dict[str, list[Received]] = {}
        for r in self.received:
            found.setdefault(json.loads(r.body)["data"]["job_id"], []).append(r)
        return found


def tone(seed: int) -> bytes:
    """A short WAV unique to `seed` (uploads are deduplicated by content)."""
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(16000)
        out.writeframes(os.urandom(2) * 8000 + seed.to_bytes(2, "little") * 100)
    return buffer.getvalue()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    made = Receiver(free_port())
    yield made
    made.stop()


def instant_stack(
    amqp_url: str, database_url: str, tmp_path: Path, **env: str
) -> contextlib.AbstractContextManager[Stack]:
    """The stack on the instant engine, both test tenants keyed, 127.0.0.1 allow-listed."""
    return running_stack(
        amqp_url,
        database_url,
        tmp_path,
        transcriber_argv=python_module("bench.instant"),
        env={
            "SCRIBE_WEBHOOKS_ALLOWED_HOSTS": "127.0.0.1",
            "SCRIBE_INGEST_API_KEYS": json.dumps(keyring()),
            "SCRIBE_TENANTS": ",".join(KEYS),
            **env,
        },
    )


@pytest.fixture
def stack(amqp_url: str, database_url: str, tmp_path: Path) -> Iterator[Stack]:
    with instant_stack(amqp_url, database_url, tmp_path) as running:
        yield running


def _publish_missing_file_job(stack: Stack) -> str:
    """A job whose audio is gone: the transcriber fails it (`transcription.failed`)."""
    job_id = uuid4()
    event = AudioUploadedV1(
        job_id=job_id,
        tenant_id="acme",
        producer="e2e-test/1",
        audio_uri=(stack.media_root / "acme" / "gone.wav").as_uri(),  # type: ignore[arg-type]
        sha256="0" * 64,
        size_bytes=10,
        content_type="audio/wav",
    )

    async def send() -> None:
        broker = make_broker(stack.amqp_url, service="e2e-test")
        async with broker:
            await broker.start()
            await publish_event(broker, event)

    asyncio.run(send())
    return str(job_id)


@pytest.mark.timeout(900)
def test_every_terminal_event_survives_a_receiver_outage_signed_and_verifiable(
    stack: Stack, receiver: Receiver
) -> None:
    clip = SHARED_AUDIO / REAL_CLIP
    if not clip.exists():
        pytest.skip(f"{clip} is absent: the real-model part needs ../shared")
    acme = httpx.Client(base_url=stack.api, timeout=30, headers=auth("acme"))
    globex = httpx.Client(base_url=stack.api, timeout=30, headers=auth("globex"))
    url = f"http://127.0.0.1:{receiver.port}/hooks/scribe"

    # Registration: 202 with the secret once; visible once the indexer projected it.
    created = acme.post("/v1/webhooks", json={"url": url, "description": "e2e"})
    assert created.status_code == 202, created.text
    endpoint_id, secret = created.json()["id"], created.json()["secret"]
    assert secret.startswith("whsec_")
    eventually(
        lambda: acme.get(f"/v1/webhooks/{endpoint_id}").status_code == 200,
        within=30,
        what="the endpoint projected",
    )
    shown = acme.get(f"/v1/webhooks/{endpoint_id}").json()
    assert shown["url"] == url
    assert shown["event_types"] == ["transcript.completed", "transcription.failed"]
    assert "secret" not in shown

    # SSRF: private and metadata addresses not allow-listed are refused, with a stable code.
    for bad in ("http://169.254.169.254/latest/meta-data", "http://10.0.0.7/hook", "ftp://x/"):
        refused = acme.post("/v1/webhooks", json={"url": bad})
        assert refused.status_code == 422, refused.text
        assert refused.json()["code"] == "invalid_webhook_url"

    # Another tenant sees none of it.
    assert globex.get("/v1/webhooks").json()["data"] == []
    for response in (
        globex.get(f"/v1/webhooks/{endpoint_id}"),
        globex.delete(f"/v1/webhooks/{endpoint_id}"),
        globex.post(f"/v1/webhooks/{endpoint_id}/rotate-secret"),
        globex.get(f"/v1/webhooks/{endpoint_id}/deliveries"),
        globex.post(f"/v1/webhooks/{endpoint_id}/deliveries/{uuid4()}/replay"),
    ):
        assert response.status_code == 404, response.text
        assert response.json()["code"] == "not_found"

    # The receiver is down while the jobs end.
    down_since = time.monotonic()
    jobs: dict[str, str] = {}
    for n in range(INSTANT_JOBS):
        accepted = acme.post(
            "/v1/transcriptions", files={"file": (f"tone-{n}.wav", tone(n), "audio/wav")}
        )
        assert accepted.status_code == 202, accepted.text
        jobs[accepted.json()["id"]] = "completed"
    jobs[_publish_missing_file_job(stack)] = "failed"
    for job_id, outcome in jobs.items():
        wait_for_job(acme, job_id, want=outcome, within=120)

    def log_entries() -> list[dict[str, Any]]:
        answer = acme.get(f"/v1/webhooks/{endpoint_id}/deliveries", params={"limit": 200})
        assert answer.status_code == 200, answer.text
        data: list[dict[str, Any]] = answer.json()["data"]
        return data

    def all_retrying() -> bool:
        entries = log_entries()
        return len(entries) == len(jobs) and all(e["status"] == "retrying" for e in entries)

    eventually(all_retrying, within=60, what=lambda: f"retrying deliveries: {log_entries()}")
    for entry in log_entries():
        assert entry["next_attempt_at"] is not None
        assert "ConnectError" in entry["attempts"][0]["error"]
    assert receiver.received == []
    time.sleep(max(0.0, OUTAGE_SECONDS - (time.monotonic() - down_since)))
    receiver.start()
    print(f"\nreceiver down for {time.monotonic() - down_since:.1f} s, then back")

    eventually(
        lambda: set(receiver.by_job()) >= set(jobs),
        within=240,
        interval=1.0,
        what=lambda: f"deliveries of every job (got {sorted(receiver.by_job())})",
    )
    # Every delivery verifies with the secret, and with no other.
    for r in receiver.received:
        payload = Webhook(secret).verify(r.body, r.headers)
        assert payload["type"] in {"transcript.completed", "transcription.failed"}
        with pytest.raises(WebhookVerificationError):
            Webhook("whsec_" + "A" * 43 + "=").verify(r.body, r.headers)
    delivered = receiver.by_job()
    lost = set(jobs) - set(delivered)
    duplicates = sum(len(v) - 1 for v in delivered.values())
    ids_per_job = {job: {r.headers["webhook-id"] for r in rs} for job, rs in delivered.items()}
    print(
        f"terminal events: {len(jobs)}, delivered: {len(delivered)}, lost: {len(lost)}, "
        f"duplicates: {duplicates} (all with their job's one webhook-id: "
        f"{all(len(ids) == 1 for ids in ids_per_job.values())})"
    )
    assert not lost
    assert all(len(ids) == 1 for ids in ids_per_job.values())
    for job_id, outcome in jobs.items():
        (body,) = {json.loads(r.body)["type"] for r in delivered[job_id]}
        assert body == (
            "transcript.completed" if outcome == "completed" else "transcription.failed"
        )

    # The log says so: delivered after failed attempts, with the receiver's status code.
    def all_delivered() -> bool:
        return all(e["status"] == "delivered" for e in log_entries())

    eventually(all_delivered, within=30, what=lambda: f"delivered: {log_entries()}")
    for entry in log_entries():
        assert len(entry["attempts"]) >= 2
        assert entry["attempts"][-1]["status_code"] == 204
        assert entry["next_attempt_at"] is None

    # Replay: the same webhook-id again, still verifiable.
    replayed = log_entries()[0]
    before = len(receiver.received)
    answer = acme.post(f"/v1/webhooks/{endpoint_id}/deliveries/{replayed['id']}/replay")
    assert answer.status_code == 202, answer.text
    eventually(lambda: len(receiver.received) > before, within=30, what="the replay received")
    again = receiver.received[-1]
    assert again.headers["webhook-id"] == replayed["webhook_id"]
    Webhook(secret).verify(again.body, again.headers)

    # Rotation: once projected, deliveries verify with the new secret and not the old.
    rotated = acme.post(f"/v1/webhooks/{endpoint_id}/rotate-secret")
    assert rotated.status_code == 202, rotated.text
    new_secret = rotated.json()["secret"]
    assert new_secret != secret
    eventually(
        lambda: acme.get(f"/v1/webhooks/{endpoint_id}").json()["secret_rotated_at"] is not None,
        within=30,
        what="the rotation projected",
    )

    # One job on the real model, delivered under the new secret.
    stack.processes["transcriber"].terminate()
    stack.processes["transcriber"].wait(60)
    stack.transcriber_argv = list(TRANSCRIBER)
    stack.start_transcriber("transcriber")
    staged = stack.media_root.parent / REAL_CLIP
    shutil.copy(clip, staged)
    with staged.open("rb") as handle:
        accepted = acme.post(
            "/v1/transcriptions",
            files={"file": (REAL_CLIP, handle, "audio/flac")},
            data={"language": "en"},
        )
    assert accepted.status_code == 202, accepted.text
    real_job = accepted.json()["id"]
    wait_for_job(acme, real_job, within=300)
    eventually(
        lambda: real_job in receiver.by_job(), within=60, what="the real-model job delivered"
    )
    (real,) = receiver.by_job()[real_job]
    payload = Webhook(new_secret).verify(real.body, real.headers)
    assert "mean" in payload["data"]["text"].lower()
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(real.body, real.headers)
    print(f"real-model job delivered: {payload['data']['text']!r}")

    # Deletion: gone for reads; nothing more is delivered to it.
    assert acme.delete(f"/v1/webhooks/{endpoint_id}").status_code == 202
    eventually(
        lambda: acme.get(f"/v1/webhooks/{endpoint_id}").status_code == 404,
        within=30,
        what="the deletion projected",
    )
    assert acme.get("/v1/webhooks").json()["data"] == []


class DrippingReceiver:
    """A hostile endpoint on 127.0.0.1: it reads the request, then sends one header line
    every second and never finishes its answer. Counts the connections it was given."""

    def __init__(self) -> None:
        self.connections = 0
        self._loop = asyncio.new_event_loop()
        self._server = self._loop.run_until_complete(
            asyncio.start_server(self._drip, "127.0.0.1", 0)
        )
        self.port = self._server.sockets[0].getsockname()[1]
        threading.Thread(target=self._loop.run_forever, daemon=True).start()

    async def _drip(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        await reader.read(65536)
        with contextlib.suppress(ConnectionError):
            writer.write(b"HTTP/1.1 200 OK\r\n")
            while True:
                await writer.drain()
                await asyncio.sleep(1)
                writer.write(b"X-Still-Here: 1\r\n")

    def stop(self) -> None:
        async def close() -> None:
            self._server.close()
            drips = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in drips:
                task.cancel()
            await asyncio.gather(*drips, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(close(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)


@pytest.fixture
def dripping() -> Iterator[DrippingReceiver]:
    made = DrippingReceiver()
    yield made
    made.stop()


@pytest.fixture
def short_timeout_stack(amqp_url: str, database_url: str, tmp_path: Path) -> Iterator[Stack]:
    with instant_stack(
        amqp_url, database_url, tmp_path, SCRIBE_WEBHOOKS_REQUEST_TIMEOUT_SECONDS="2"
    ) as running:
        yield running


@pytest.mark.timeout(600)
def test_a_tenant_whose_endpoint_never_answers_does_not_hold_up_another_tenants_webhooks(
    short_timeout_stack: Stack, dripping: DrippingReceiver, receiver: Receiver
) -> None:
    """Before: 40 deliveries to an endpoint that drips header lines took all 32 of the
    dispatcher's prefetched messages for good (httpx's timeout is per read), and another
    tenant's webhook never went out."""
    stack = short_timeout_stack
    acme = httpx.Client(base_url=stack.api, timeout=30, headers=auth("acme"))
    globex = httpx.Client(base_url=stack.api, timeout=30, headers=auth("globex"))
    receiver.start()
    hostile = acme.post("/v1/webhooks", json={"url": f"http://127.0.0.1:{dripping.port}/h"})
    fine = globex.post("/v1/webhooks", json={"url": f"http://127.0.0.1:{receiver.port}/h"})
    assert hostile.status_code == fine.status_code == 202

    def projected() -> bool:
        return all(
            client.get(f"/v1/webhooks/{answer.json()['id']}").status_code == 200
            for client, answer in ((acme, hostile), (globex, fine))
        )

    eventually(projected, within=30, what="the endpoints projected")
    acme_jobs = []
    for n in range(40):
        accepted = acme.post(
            "/v1/transcriptions", files={"file": (f"t{n}.wav", tone(1000 + n), "audio/wav")}
        )
        assert accepted.status_code == 202, accepted.text
        acme_jobs.append(accepted.json()["id"])
    for job_id in acme_jobs:
        wait_for_job(acme, job_id, within=120)
    eventually(lambda: dripping.connections >= 8, within=60, what="acme's attempts under way")

    accepted = globex.post("/v1/transcriptions", files={"file": ("g.wav", tone(7), "audio/wav")})
    assert accepted.status_code == 202, accepted.text
    job_id = accepted.json()["id"]
    wait_for_job(globex, job_id, within=120)
    done = time.monotonic()
    eventually(lambda: job_id in receiver.by_job(), within=30, what="globex's webhook")
    print(
        f"\nglobex's webhook {time.monotonic() - done:.2f} s after its job completed, "
        f"with acme's endpoint holding {dripping.connections} connections so far"
    )
    (delivered,) = receiver.by_job()[job_id]
    assert json.loads(delivered.body)["data"]["tenant_id"] == "globex"

    def acme_errors() -> list[str]:
        log = acme.get(f"/v1/webhooks/{hostile.json()['id']}/deliveries", params={"limit": 100})
        return [a["error"] for e in log.json()["data"] for a in e["attempts"]]

    eventually(
        lambda: "no answer within 2 s" in acme_errors(),
        within=60,
        what=lambda: f"acme's attempts cut off at the deadline: {acme_errors()[:3]}",
    )
