"""`diarize`, `min_speakers`, `max_speakers` at `POST /v1/transcriptions` (fake broker)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from ingest.settings import IngestSettings
from services.ingest.tests import samples
from services.ingest.tests.test_api import DEV_AUTH, PUBLIC_HOST, FakePublisher, Harness, fake_app


@pytest.fixture
async def harness(tmp_path: Path) -> AsyncIterator[Harness]:
    media_root = tmp_path / "media"
    publisher = FakePublisher()
    settings = IngestSettings(max_upload_bytes=200_000)
    async with fake_app(settings, media_root, publisher) as app:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://ingest", headers=DEV_AUTH
        ) as client:
            yield Harness(client, publisher, media_root)


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"diarize": "true"}, (True, None, None)),
        ({"diarize": "channels"}, ("channels", None, None)),
        ({"diarize": "true", "min_speakers": "2", "max_speakers": "4"}, (True, 2, 4)),
        ({}, (False, None, None)),
    ],
)
async def test_multipart_diarization_fields_reach_the_event(
    harness: Harness, fields: dict[str, str], expected: tuple[Any, Any, Any]
) -> None:
    response = await harness.upload(samples.wav_bytes(0.5), fields=fields)
    assert response.status_code == 202, response.text
    [event] = harness.publisher.events
    options = event.options
    assert (options.diarize, options.min_speakers, options.max_speakers) == expected


async def test_json_diarization_members_reach_the_event(harness: Harness) -> None:
    body = {"audio_url": f"https://{PUBLIC_HOST}/call.wav", "diarize": "channels"}
    response = await harness.client.post("/v1/transcriptions", json=body)
    assert response.status_code == 202, response.text
    bounded = {"audio_url": f"https://{PUBLIC_HOST}/m.wav", "diarize": True, "max_speakers": 3}
    response = await harness.client.post("/v1/transcriptions", json=bounded)
    assert response.status_code == 202, response.text
    first, second = harness.publisher.events
    assert first.options.diarize == "channels"
    assert (second.options.diarize, second.options.max_speakers) == (True, 3)


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"diarize": "speakers"}, "diarize"),
        ({"diarize": "true", "max_speakers": "21"}, "max_speakers"),
        ({"diarize": "true", "min_speakers": "0"}, "min_speakers"),
        ({"diarize": "true", "min_speakers": "4", "max_speakers": "2"}, "min_speakers"),
    ],
    ids=["unknown-mode", "over-twenty", "zero", "min-above-max"],
)
async def test_bad_diarization_options_are_422_and_publish_nothing(
    harness: Harness, fields: dict[str, str], field: str
) -> None:
    response = await harness.upload(samples.wav_bytes(0.5), fields=fields)
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["code"] == "validation_error"
    assert field in body["message"]  # the message names it, not only the details
    assert "?" not in body["message"]
    assert harness.publisher.events == []
    json_body = {"audio_url": f"https://{PUBLIC_HOST}/a.wav", **fields}
    response = await harness.client.post("/v1/transcriptions", json=json_body)
    assert response.status_code == 422, response.text


async def test_openapi_documents_the_diarization_options(harness: Harness) -> None:
    spec = (await harness.client.get("/openapi.json")).json()
    body = spec["paths"]["/v1/transcriptions"]["post"]["requestBody"]["content"]
    for media in ("multipart/form-data", "application/json"):
        assert {"diarize", "min_speakers", "max_speakers"} <= set(
            body[media]["schema"]["properties"]
        )
    assert body["application/json"]["examples"]["call"]["value"]["diarize"] == "channels"


async def test_the_same_key_with_diarization_added_conflicts(harness: Harness) -> None:
    audio = samples.wav_bytes(0.5)
    key = {"Idempotency-Key": "call-42"}
    assert (await harness.upload(audio, headers=key)).status_code == 202
    again = await harness.upload(audio, headers=key)
    assert again.status_code == 202
    diarized = await harness.upload(audio, fields={"diarize": "channels"}, headers=key)
    assert diarized.status_code == 409
