"""Ingest against the real RabbitMQ: uploads become exactly one confirmed audio.uploaded.v1."""

from __future__ import annotations

import asyncio
import hashlib
import tempfile
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aio_pika
import httpx
import pytest

from contracts import AudioUploadedV1, routing
from ingest.app import create_app
from ingest.auth import DEV_API_KEY
from ingest.settings import IngestSettings
from scribe_runtime.settings import SharedSettings
from scribe_runtime.topology import TRANSCRIBER_QUEUE
from services.ingest.tests import samples
from tests.speech import SCRIPTS, synthesize
from tests.support.servers import RabbitServer

pytestmark = pytest.mark.integration

TEST_QUEUE = "test.ingest-uploaded"
MAX_UPLOAD_BYTES = 400_000
MAX_DURATION_SECONDS = 20.0


DEV_AUTH = {"Authorization": f"Bearer {DEV_API_KEY}"}


@dataclass
class Ingest:
    client: httpx.AsyncClient
    amqp_url: str
    media_root: Path
    temp_dir: Path

    def leftovers(self) -> list[Path]:
        """Every file in the media root and the process's temp dir."""
        return sorted(
            p for root in (self.media_root, self.temp_dir) for p in root.rglob("*") if p.is_file()
        )

    async def upload(
        self,
        data: bytes | None,
        *,
        filename: str = "audio.wav",
        content_type: str = "audio/wav",
        fields: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        parts: dict[str, Any] = {k: (None, v) for k, v in (fields or {}).items()}
        if data is not None:
            parts["file"] = (filename, data, content_type)
        elif not parts:
            parts["language"] = (None, "en")
        return await self.client.post("/v1/transcriptions", files=parts, headers=headers or {})

    async def published(self) -> list[aio_pika.abc.AbstractIncomingMessage]:
        """Everything on the test's own queue (bound to audio.uploaded.v1), acked.

        No waiting: ingest answers only once the broker confirmed the event, so what it
        published is already queued, and a refused upload publishes nothing, later or not.
        """
        messages = []
        connection = await aio_pika.connect(self.amqp_url)
        async with connection:
            channel = await connection.channel()
            queue = await channel.get_queue(TEST_QUEUE, ensure=True)
            while (message := await queue.get(fail=False, no_ack=False)) is not None:
                await message.ack()
                messages.append(message)
        return messages


@pytest.fixture
async def ingest(
    amqp_url: str,
    database_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[Ingest]:
    temp_dir = tmp_path / "tmp"
    temp_dir.mkdir()
    # Anything spooled through `tempfile` (Starlette's form parser would) lands here.
    monkeypatch.setattr(tempfile, "tempdir", str(temp_dir))
    media_root = tmp_path / "media"
    app = create_app(
        SharedSettings(
            amqp_url=amqp_url, media_root=media_root, max_duration_seconds=MAX_DURATION_SECONDS
        ),
        IngestSettings(
            database_url=database_url,
            max_upload_bytes=MAX_UPLOAD_BYTES,
            publish_timeout_seconds=5.0,
        ),
    )
    async with app.router.lifespan_context(app):
        connection = await aio_pika.connect(amqp_url)
        async with connection:
            channel = await connection.channel()
            queue = await channel.declare_queue(TEST_QUEUE, durable=False, auto_delete=False)
            await queue.bind(routing.EXCHANGE, routing_key=routing.AUDIO_UPLOADED_V1)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://ingest", headers=DEV_AUTH
        ) as client:
            yield Ingest(client, amqp_url, media_root, temp_dir)


async def test_speech_upload_publishes_exactly_one_confirmed_event(ingest: Ingest) -> None:
    audio = synthesize(SCRIPTS["weather"], fmt="flac").read_bytes()
    correlation = uuid.uuid4()

    response = await ingest.upload(
        audio,
        filename="weather.flac",
        content_type="application/octet-stream",  # the bytes decide, not the label
        fields={"language": "en", "model": "tiny.en", "word_timestamps": "true"},
        headers={"X-Correlation-ID": str(correlation)},
    )

    assert response.status_code == 202, response.text
    job_id = uuid.UUID(response.json()["id"])
    assert response.headers["location"] == f"/v1/transcriptions/{job_id}"
    [message] = await ingest.published()
    assert message.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
    assert message.type == "audio.uploaded.v1"
    assert message.correlation_id == str(correlation)
    event = AudioUploadedV1.model_validate_json(message.body)
    assert message.message_id == str(event.event_id)
    assert event.job_id == job_id
    assert event.tenant_id == "default"
    assert event.sha256 == hashlib.sha256(audio).hexdigest()
    assert event.size_bytes == len(audio)
    assert event.content_type == "audio/flac"
    assert event.original_filename == "weather.flac"
    assert event.duration_seconds is not None
    assert 5 < event.duration_seconds < 12
    assert event.options.model_dump() == {
        "language": "en",
        "model": "tiny.en",
        "word_timestamps": True,
        "task": None,
        "initial_prompt": None,
        "temperature": None,
        "hotwords": None,
        "beam_size": None,
        "vad_filter": None,
        "diarize": False,
        "min_speakers": None,
        "max_speakers": None,
    }
    stored = Path(urlsplit(str(event.audio_uri)).path)
    assert await asyncio.to_thread(stored.read_bytes) == audio
    assert ingest.media_root.resolve() in stored.parents
    # The transcriber's durable queue has it too (declared by ingest at start-up).
    connection = await aio_pika.connect(ingest.amqp_url)
    async with connection:
        channel = await connection.channel()
        queue = await channel.declare_queue(TRANSCRIBER_QUEUE.name, passive=True)
        assert queue.declaration_result.message_count == 1


BAD_UPLOADS: list[tuple[str, dict[str, Any], int, str]] = [
    ("no-file-field", {"data": None}, 422, "validation_error"),
    ("zero-bytes", {"data": b""}, 415, "unsupported_media"),
    (
        "png-named-wav",
        {"data": samples.png_bytes(), "filename": "photo.wav"},
        415,
        "unsupported_media",
    ),
    ("plain-text", {"data": samples.PLAIN_TEXT, "filename": "notes.wav"}, 415, "unsupported_media"),
    ("wav-header-no-samples", {"data": samples.wav_header_only()}, 415, "unsupported_media"),
    (
        "truncated-flac",
        {"data": samples.truncated(samples.flac_bytes(4.0)), "filename": "cut.flac"},
        415,
        "unsupported_media",
    ),
    ("over-size-limit", {"data": samples.wav_bytes(15.0)}, 413, "file_too_large"),
    (
        "path-traversal-name",
        {"data": b"root:x:0:0:root:/root:/bin/bash\n", "filename": "../../etc/passwd"},
        415,
        "unsupported_media",
    ),
    (
        "unknown-language",
        {"data": samples.wav_bytes(0.5), "fields": {"language": "zz"}},
        422,
        "validation_error",
    ),
    (
        "unknown-model",
        {"data": samples.wav_bytes(0.5), "fields": {"model": "/models/evil"}},
        422,
        "model_unavailable",
    ),
    (
        "bad-bool",
        {"data": samples.wav_bytes(0.5), "fields": {"word_timestamps": "sometimes"}},
        422,
        "validation_error",
    ),
    ("url-file-scheme", {"json": {"audio_url": "file:///etc/passwd"}}, 422, "invalid_audio_url"),
    (
        "url-ftp-scheme",
        {"json": {"audio_url": "ftp://ftp.example.com/a.wav"}},
        422,
        "invalid_audio_url",
    ),
    (
        "url-loopback",
        {"json": {"audio_url": "http://127.0.0.1:15672/api"}},
        422,
        "invalid_audio_url",
    ),
    ("url-localhost", {"json": {"audio_url": "http://localhost/a.wav"}}, 422, "invalid_audio_url"),
    ("url-private", {"json": {"audio_url": "http://192.168.1.10/a.wav"}}, 422, "invalid_audio_url"),
    (
        "url-metadata",
        {"json": {"audio_url": "http://169.254.169.254/latest"}},
        422,
        "invalid_audio_url",
    ),
]


@pytest.mark.parametrize(
    ("request_", "status", "code"),
    [pytest.param(r, s, c, id=name) for name, r, s, c in BAD_UPLOADS],
)
async def test_bad_upload_is_refused_with_nothing_published_or_kept(
    ingest: Ingest, request_: dict[str, Any], status: int, code: str
) -> None:
    if "json" in request_:
        response = await ingest.client.post("/v1/transcriptions", json=request_["json"])
    else:
        response = await ingest.upload(
            request_["data"],
            filename=request_.get("filename", "audio.wav"),
            fields=request_.get("fields"),
        )

    assert response.status_code == status, response.text
    assert response.json()["code"] == code
    assert response.json()["message"]
    assert await ingest.published() == []
    assert ingest.leftovers() == []


async def test_same_idempotency_key_is_one_job_and_one_event(ingest: Ingest) -> None:
    audio = samples.wav_bytes(1.0)
    key = {"Idempotency-Key": f"retry-{uuid.uuid4()}"}

    answers = [await ingest.upload(audio, headers=key) for _ in range(3)]

    assert {a.status_code for a in answers} == {202}
    assert len({a.json()["id"] for a in answers}) == 1
    assert len(await ingest.published()) == 1


async def test_broker_down_answers_503_and_keeps_no_file(
    ingest: Ingest, rabbit_server: RabbitServer
) -> None:
    # Deleting the vhost closes every connection to it, and reconnecting cannot succeed.
    rabbit_server.delete_vhost(urlsplit(ingest.amqp_url).path.lstrip("/"))

    response = await ingest.upload(samples.wav_bytes(1.0), headers={"Idempotency-Key": "k"})

    assert response.status_code == 503, response.text
    assert response.json()["code"] == "broker_unavailable"
    assert ingest.leftovers() == []
    ready = await ingest.client.get("/readyz")
    assert ready.status_code == 503
    assert ready.json()["checks"]["broker"]["ok"] is False


async def test_ready_when_broker_connected_and_media_writable(ingest: Ingest) -> None:
    response = await ingest.client.get("/readyz")
    assert response.status_code == 200, response.text
    assert response.json()["checks"] == {"broker": {"ok": True}, "media_root": {"ok": True}}
