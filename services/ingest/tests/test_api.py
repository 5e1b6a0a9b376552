"""`POST /v1/transcriptions`, `/healthz`, `/readyz` over fakes: the broker is a list."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from contracts.audio import AudioUploadedV1
from contracts.envelope import Event
from ingest.app import build_app
from ingest.auth import DEV_API_KEY, ApiKeyring
from ingest.container import wire
from ingest.idempotency import FilesystemIdempotencyStore
from ingest.media import FilesystemMediaStore
from ingest.queries import open_reader_pool
from ingest.settings import IngestSettings
from ingest.uploads import PublishFailedError
from scribe_runtime.cancellations import FilesystemCancelMarks
from scribe_runtime.netguard import ResolvedUrl, parse_remote_url, resolve_public_url
from scribe_runtime.settings import DEFAULT_MAX_DURATION_SECONDS
from services.ingest.tests import samples

PUBLIC_HOST = "audio.example.com"


DEV_AUTH = {"Authorization": f"Bearer {DEV_API_KEY}"}


@dataclass
class FakePublisher:
    events: list[AudioUploadedV1] = field(default_factory=list)
    fail: bool = False
    connected: bool = True

    async def publish(self, event: Event) -> None:
        if self.fail:
            raise PublishFailedError("connection refused")
        assert isinstance(event, AudioUploadedV1)
        self.events.append(event)

    async def publish_declared(self, event: Event) -> None:
        raise AssertionError(f"these tests publish uploads only, not {event.message_type}")

    async def is_connected(self) -> bool:
        return self.connected


async def guard(url: str) -> ResolvedUrl:
    """The real guard, except one name that resolves to a public address without DNS."""
    scheme, host, port = parse_remote_url(url)
    if host == PUBLIC_HOST:
        return ResolvedUrl(url, scheme, host, port, ("93.184.215.14",))
    return await resolve_public_url(url)


@dataclass
class Harness:
    client: httpx.AsyncClient
    publisher: FakePublisher
    media_root: Path

    def files(self) -> list[Path]:
        return sorted(p for p in self.media_root.rglob("*") if p.is_file())

    async def upload(
        self,
        data: bytes | None,
        *,
        filename: str = "speech.wav",
        fields: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        parts: dict[str, Any] = {k: (None, v) for k, v in (fields or {}).items()}
        if data is not None:
            parts["file"] = (filename, data, "audio/wav")
        elif not parts:
            parts["language"] = (None, "en")  # still multipart, but no file
        return await self.client.post("/v1/transcriptions", files=parts, headers=headers or {})


@asynccontextmanager
async def fake_app(
    settings: IngestSettings,
    media_root: Path,
    publisher: FakePublisher,
    *,
    media: FilesystemMediaStore | None = None,
    max_duration_seconds: float = 5.0,
) -> AsyncIterator[FastAPI]:
    """The real app over filesystem stores under `media_root` and a fake publisher.

    Its reader pool connects on first use only: tests that never read need no database.
    """
    idempotency = FilesystemIdempotencyStore(media_root)
    async with open_reader_pool(settings) as reader_pool:
        yield build_app(
            wire(
                settings,
                keyring=ApiKeyring.load(settings.api_keys, settings.api_keys_file),
                reader_pool=reader_pool,
                media=media or FilesystemMediaStore(media_root),
                idempotency=idempotency,
                publisher=publisher,
                url_guard=guard,
                marks=FilesystemCancelMarks(media_root),
                keys=idempotency,
                max_duration_seconds=max_duration_seconds,
            )
        )


@pytest.fixture
async def harness(tmp_path: Path) -> AsyncIterator[Harness]:
    media_root = tmp_path / "media"
    settings = IngestSettings(max_upload_bytes=200_000)
    publisher = FakePublisher()
    async with fake_app(settings, media_root, publisher) as app:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://ingest", headers=DEV_AUTH
        ) as client:
            yield Harness(client, publisher, media_root)


async def test_upload_is_stored_by_content_and_announced(harness: Harness) -> None:
    audio = samples.wav_bytes(1.0)
    correlation = uuid.uuid4()
    response = await harness.upload(
        audio,
        fields={"language": "en", "model": "tiny.en", "word_timestamps": "true"},
        headers={"X-Correlation-ID": str(correlation)},
    )

    assert response.status_code == 202, response.text
    body = response.json()
    job_id = uuid.UUID(body["id"])
    assert body["status"] == "queued"
    assert body["links"]["self"] == f"/v1/transcriptions/{job_id}"
    assert body["links"]["transcript"] == f"/v1/transcriptions/{job_id}/transcript.json"
    assert response.headers["location"] == f"/v1/transcriptions/{job_id}"
    [event] = harness.publisher.events
    sha = hashlib.sha256(audio).hexdigest()
    assert event.job_id == job_id
    assert event.correlation_id == correlation
    assert event.tenant_id == "default"
    assert (event.sha256, event.size_bytes) == (sha, len(audio))
    assert event.content_type == "audio/wav"
    assert event.duration_seconds == pytest.approx(1.0)
    assert event.original_filename == "speech.wav"
    assert (event.options.language, event.options.model, event.options.word_timestamps) == (
        "en",
        "tiny.en",
        True,
    )
    stored = harness.media_root.resolve() / "default" / sha[:2] / sha
    assert str(event.audio_uri) == stored.as_uri()
    assert stored.read_bytes() == audio
    assert harness.files() == [stored]  # no temp file left


async def test_client_file_name_is_metadata_not_a_path(harness: Harness, tmp_path: Path) -> None:
    response = await harness.upload(samples.wav_bytes(0.5), filename="../../etc/passwd")

    assert response.status_code == 202, response.text
    [event] = harness.publisher.events
    assert event.original_filename == "passwd"
    assert all(harness.media_root in p.parents for p in harness.files())
    assert not (tmp_path / "etc").exists()


async def test_same_audio_twice_shares_one_stored_file(harness: Harness) -> None:
    audio = samples.wav_bytes(0.5)
    first = await harness.upload(audio)
    second = await harness.upload(audio)

    assert first.status_code == second.status_code == 202
    assert first.json()["id"] != second.json()["id"]  # no key: two jobs
    assert len(harness.files()) == 1


@pytest.mark.parametrize(
    ("data", "fields", "status", "code", "field"),
    [
        (None, None, 422, "validation_error", "file"),
        (b"", None, 415, "unsupported_media", None),
        (samples.png_bytes(), None, 415, "unsupported_media", None),
        (samples.PLAIN_TEXT, None, 415, "unsupported_media", None),
        (samples.wav_header_only(), None, 415, "unsupported_media", None),
        (samples.truncated(samples.flac_bytes(2.0)), None, 415, "unsupported_media", None),
        (samples.wav_bytes(7.0), None, 413, "file_too_large", None),
        (samples.flac_bytes(6.0), None, 413, "audio_too_long", None),
        (samples.wav_bytes(0.5), {"language": "klingon"}, 422, "validation_error", "language"),
        (samples.wav_bytes(0.5), {"model": "../../models/x"}, 422, "model_unavailable", "model"),
        (
            samples.wav_bytes(0.5),
            {"word_timestamps": "maybe"},
            422,
            "validation_error",
            "word_timestamps",
        ),
        (samples.wav_bytes(0.5), {"speed": "fast"}, 422, "validation_error", "speed"),
    ],
    ids=[
        "no-file",
        "zero-bytes",
        "png",
        "text",
        "wav-header-only",
        "truncated-flac",
        "over-size-limit",
        "over-duration-limit",
        "bad-language",
        "bad-model",
        "bad-word-timestamps",
        "unknown-option",
    ],
)
async def test_bad_upload_is_refused_and_leaves_nothing(
    harness: Harness,
    data: bytes | None,
    fields: dict[str, str] | None,
    status: int,
    code: str,
    field: str | None,
) -> None:
    response = await harness.upload(data, fields=fields)

    assert response.status_code == status, response.text
    body = response.json()
    assert body["code"] == code
    assert body["message"]
    if field is not None:
        assert ["body", field] in [d["loc"] for d in body["details"]]
    assert harness.publisher.events == []
    assert harness.files() == []


async def test_broker_down_is_503_and_keeps_no_file(harness: Harness) -> None:
    harness.publisher.fail = True
    response = await harness.upload(samples.wav_bytes(0.5), headers={"Idempotency-Key": "k-1"})

    assert response.status_code == 503
    assert response.json()["code"] == "broker_unavailable"
    assert harness.files() == []  # neither the audio nor the key's record

    harness.publisher.fail = False
    retried = await harness.upload(samples.wav_bytes(0.5), headers={"Idempotency-Key": "k-1"})
    assert retried.status_code == 202


async def test_broker_down_keeps_a_file_another_job_uses(harness: Harness) -> None:
    audio = samples.wav_bytes(0.5)
    assert (await harness.upload(audio)).status_code == 202
    harness.publisher.fail = True

    assert (await harness.upload(audio)).status_code == 503
    assert len(harness.files()) == 1


async def test_idempotency_key_returns_the_same_job_and_publishes_once(harness: Harness) -> None:
    audio = samples.wav_bytes(0.5)
    key = {"Idempotency-Key": "upload-42"}
    first = await harness.upload(audio, headers=key)
    again = await harness.upload(audio, headers=key)

    assert first.status_code == again.status_code == 202
    assert first.json()["id"] == again.json()["id"]
    assert again.headers["idempotent-replayed"] == "true"
    assert len(harness.publisher.events) == 1

    other = await harness.upload(samples.wav_bytes(0.7), headers=key)
    assert other.status_code == 409
    assert other.json()["code"] == "idempotency_key_reused"
    assert len(harness.publisher.events) == 1


async def test_idempotency_key_with_other_options_conflicts(harness: Harness) -> None:
    audio = samples.wav_bytes(0.5)
    key = {"Idempotency-Key": "opts"}
    assert (await harness.upload(audio, headers=key)).status_code == 202
    response = await harness.upload(audio, fields={"hotwords": "Zyntherix"}, headers=key)
    assert response.status_code == 409


async def _submit_json(harness: Harness, body: Any, **headers: str) -> httpx.Response:
    return await harness.client.post("/v1/transcriptions", json=body, headers=headers)


async def test_public_audio_url_is_announced_for_the_transcriber_to_fetch(
    harness: Harness,
) -> None:
    url = f"https://{PUBLIC_HOST}/talk.mp3"
    response = await _submit_json(harness, {"audio_url": url, "language": "en"})

    assert response.status_code == 202, response.text
    [event] = harness.publisher.events
    assert str(event.audio_uri) == url
    assert event.options.language == "en"
    assert event.sha256 is None
    assert harness.files() == []


@pytest.mark.parametrize(
    "url",
    [
        "file:///etc/passwd",
        "ftp://example.com/audio.wav",
        "http://127.0.0.1:8000/audio.wav",
        "http://localhost/audio.wav",
        "http://10.1.2.3/audio.wav",
        "http://169.254.169.254/latest/meta-data",
        "http://[::1]/audio.wav",
        "not a url",
    ],
)
async def test_forbidden_audio_url_is_refused(harness: Harness, url: str) -> None:
    response = await _submit_json(harness, {"audio_url": url})

    assert response.status_code == 422, response.text
    assert response.json()["code"] == "invalid_audio_url"
    assert response.json()["details"][0]["loc"] == ["body", "audio_url"]
    assert harness.publisher.events == []


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({}, 422, "validation_error"),
        ({"audio_url": f"https://{PUBLIC_HOST}/a.mp3", "language": "xx"}, 422, "validation_error"),
        ({"audio_url": f"https://{PUBLIC_HOST}/a.mp3", "extra": 1}, 422, "validation_error"),
        ([1, 2], 400, "malformed_request"),
    ],
)
async def test_bad_json_submission(harness: Harness, body: Any, status: int, code: str) -> None:
    response = await _submit_json(harness, body)
    assert (response.status_code, response.json()["code"]) == (status, code)
    assert harness.publisher.events == []


async def test_two_files_are_refused(harness: Harness) -> None:
    audio = samples.wav_bytes(0.2)
    response = await harness.client.post(
        "/v1/transcriptions",
        files=[("file", ("a.wav", audio, "audio/wav")), ("file", ("b.wav", audio, "audio/wav"))],
    )
    assert response.status_code == 422
    assert response.json()["details"][0]["loc"] == ["body", "file"]
    assert harness.files() == []


async def test_cut_off_multipart_body_is_refused(harness: Harness) -> None:
    body = (
        b'--b\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\n\r\n'
        + samples.wav_bytes(0.2)
    )
    response = await harness.client.post(
        "/v1/transcriptions",
        content=body,
        headers={"Content-Type": "multipart/form-data; boundary=b"},
    )
    assert response.status_code == 400
    assert response.json()["code"] == "malformed_request"
    assert harness.publisher.events == []
    assert harness.files() == []


async def test_other_content_types_are_refused(harness: Harness) -> None:
    response = await harness.client.post(
        "/v1/transcriptions", content=samples.wav_bytes(0.2), headers={"Content-Type": "audio/wav"}
    )
    assert response.status_code == 415
    assert response.json()["code"] == "unsupported_content_type"


async def test_bad_correlation_id_names_the_header(harness: Harness) -> None:
    response = await harness.upload(samples.wav_bytes(0.2), headers={"X-Correlation-ID": "x"})
    assert response.status_code == 422
    assert response.json()["details"][0]["loc"] == ["header", "X-Correlation-ID"]
    assert harness.files() == []


async def test_declared_oversize_body_is_refused_before_reading(harness: Harness) -> None:
    response = await harness.client.post(
        "/v1/transcriptions",
        content=b"x" * 10,
        headers={"Content-Type": "multipart/form-data; boundary=b", "Content-Length": "999999999"},
    )
    assert response.status_code == 413
    assert response.json()["code"] == "file_too_large"


async def test_health_and_readiness(harness: Harness) -> None:
    assert (await harness.client.get("/healthz")).json() == {"status": "alive"}
    ready = await harness.client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["status"] == "ready"

    harness.publisher.connected = False
    not_ready = await harness.client.get("/readyz")
    assert not_ready.status_code == 503
    assert not_ready.json()["checks"]["broker"]["ok"] is False
    assert not_ready.json()["checks"]["media_root"]["ok"] is True


async def test_openapi_documents_every_error_with_examples(harness: Harness) -> None:
    spec = (await harness.client.get("/openapi.json")).json()
    submit = spec["paths"]["/v1/transcriptions"]["post"]
    for status in ("202", "400", "409", "413", "415", "422", "503"):
        content = submit["responses"][status]["content"]["application/json"]
        assert content.get("example") or content.get("examples"), status
    assert set(submit["requestBody"]["content"]) == {"multipart/form-data", "application/json"}
    assert "503" in spec["paths"]["/readyz"]["get"]["responses"]


def three_hours_of_wav(path: Path) -> Path:
    """3 h of 8 kHz 8-bit mono silence (86 MB), streamed to disk a minute at a time."""
    import wave

    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(1)
        out.setframerate(8000)
        minute = bytes([128]) * (60 * 8000)
        for _ in range(180):
            out.writeframes(minute)
    return path


@pytest.mark.slow
@pytest.mark.parametrize(
    ("limit", "status"),
    [
        (None, 202),  # the default 10 h: the transcribers split it, nothing fails it later
        (2 * 3600.0, 413),  # the old worker limit: refused at once, never accepted
    ],
)
async def test_a_three_hour_upload_is_judged_by_the_one_shared_limit(
    tmp_path: Path, limit: float | None, status: int
) -> None:
    wav = three_hours_of_wav(tmp_path / "three-hours.wav")
    publisher = FakePublisher()
    settings = IngestSettings(max_upload_bytes=200 * 1024 * 1024)
    async with (
        fake_app(
            settings,
            tmp_path / "media",
            publisher,
            max_duration_seconds=limit or DEFAULT_MAX_DURATION_SECONDS,
        ) as app,
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://ingest", headers=DEV_AUTH
        ) as client,
    ):
        with wav.open("rb") as body:
            response = await client.post(
                "/v1/transcriptions",
                files={"file": ("three-hours.wav", body, "audio/wav")},
                timeout=120,
            )
    assert response.status_code == status, response.text
    if status == 202:
        (event,) = publisher.events
        assert isinstance(event, AudioUploadedV1)
        assert event.duration_seconds == pytest.approx(3 * 3600)
    else:
        assert response.json()["code"] == "audio_too_long"
        assert not publisher.events
