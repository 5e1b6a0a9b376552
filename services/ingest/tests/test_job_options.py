"""Every job option through HTTP: carried into `audio.uploaded.v1`, or refused with a code.

`POST /v1/transcriptions` as multipart fields and as JSON members, against an ingest that
serves the two offline pools (tiny.en, the default, and base); the broker is a list.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from contracts.audio import TranscriptionOptions
from ingest.options import OPTION_FIELDS
from ingest.settings import IngestSettings
from services.ingest.tests import samples
from services.ingest.tests.test_api import (
    DEV_AUTH,
    PUBLIC_HOST,
    FakePublisher,
    Harness,
    fake_app,
)

EVERY_OPTION: dict[str, Any] = {
    "model": "base",
    "language": "de",
    "task": "translate",
    "initial_prompt": "Siobhan Quaglieri, Zyntherix.",
    "hotwords": "Zyntherix",
    "temperature": 0.2,
    "beam_size": 3,
    "vad_filter": True,
    "word_timestamps": True,
}


@pytest.fixture
async def harness(tmp_path: Path) -> AsyncIterator[Harness]:
    media_root = tmp_path / "media"
    settings = IngestSettings(served_models=("tiny.en", "base"))
    publisher = FakePublisher()
    async with fake_app(settings, media_root, publisher) as app:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://ingest", headers=DEV_AUTH
        ) as client:
            yield Harness(client, publisher, media_root)


def as_form(options: dict[str, Any]) -> dict[str, str]:
    return {k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in options.items()}


async def submit_json(harness: Harness, **options: Any) -> httpx.Response:
    body = {"audio_url": f"https://{PUBLIC_HOST}/talk.mp3", **options}
    return await harness.client.post("/v1/transcriptions", json=body)


async def test_every_option_reaches_the_event_from_form_fields(harness: Harness) -> None:
    response = await harness.upload(samples.wav_bytes(0.5), fields=as_form(EVERY_OPTION))
    assert response.status_code == 202, response.text
    [event] = harness.publisher.events
    assert event.options == TranscriptionOptions(**EVERY_OPTION)


async def test_every_option_reaches_the_event_from_json(harness: Harness) -> None:
    response = await submit_json(harness, **EVERY_OPTION)
    assert response.status_code == 202, response.text
    [event] = harness.publisher.events
    assert event.options == TranscriptionOptions(**EVERY_OPTION)


async def test_no_model_means_the_default_and_leaves_the_choice_to_the_router(
    harness: Harness,
) -> None:
    response = await submit_json(harness, language="en")
    assert response.status_code == 202, response.text
    assert harness.publisher.events[0].options.model is None


@pytest.mark.parametrize(
    ("options", "code", "field"),
    [
        ({"model": "large-v3"}, "model_unavailable", "model"),
        ({"model": "../../models/x"}, "model_unavailable", "model"),
        ({"task": "translate"}, "unsupported_option", "task"),  # the default is tiny.en
        ({"model": "tiny.en", "task": "translate"}, "unsupported_option", "task"),
        ({"language": "de"}, "unsupported_option", "language"),
        ({"model": "tiny.en", "language": "fr"}, "unsupported_option", "language"),
        ({"task": "summarise"}, "validation_error", "task"),
        ({"temperature": 1.5}, "validation_error", "temperature"),
        ({"temperature": -0.1}, "validation_error", "temperature"),
        ({"beam_size": 0}, "validation_error", "beam_size"),
        ({"beam_size": 11}, "validation_error", "beam_size"),
        ({"initial_prompt": "x" * 1001}, "validation_error", "initial_prompt"),
        ({"hotwords": "x" * 501}, "validation_error", "hotwords"),
        ({"vad_filter": "sometimes"}, "validation_error", "vad_filter"),
        ({"best_of": 5}, "validation_error", "best_of"),
    ],
)
@pytest.mark.parametrize("shape", ["form", "json"])
async def test_what_no_pool_can_honour_is_refused_at_submit(
    harness: Harness, options: dict[str, Any], code: str, field: str, shape: str
) -> None:
    if shape == "form":
        response = await harness.upload(samples.wav_bytes(0.5), fields=as_form(options))
    else:
        response = await submit_json(harness, **options)
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["code"] == code
    assert field in [detail["loc"][-1] for detail in body["details"]]
    assert harness.publisher.events == []
    assert harness.files() == []


async def test_a_multilingual_model_takes_translation_and_other_languages(
    harness: Harness,
) -> None:
    for options in ({"model": "base", "task": "translate"}, {"model": "base", "language": "fr"}):
        response = await harness.upload(samples.wav_bytes(0.5), fields=options)
        assert response.status_code == 202, response.text
    assert [e.options.model for e in harness.publisher.events] == ["base", "base"]


async def test_models_lists_the_served_pools(harness: Harness) -> None:
    response = await harness.client.get("/v1/models")
    assert response.status_code == 200
    assert [m["id"] for m in response.json()["data"]] == ["tiny.en", "base", "whisper-1"]


async def test_openapi_documents_every_option_with_an_example(harness: Harness) -> None:
    spec = (await harness.client.get("/openapi.json")).json()
    body = spec["paths"]["/v1/transcriptions"]["post"]["requestBody"]["content"]
    for media_type in ("multipart/form-data", "application/json"):
        properties = body[media_type]["schema"]["properties"]
        for name in OPTION_FIELDS:
            assert properties[name]["description"], (media_type, name)
            assert properties[name]["examples"], (media_type, name)
    assert body["multipart/form-data"]["schema"]["properties"]["beam_size"]["maximum"] == 10
