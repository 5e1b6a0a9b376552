"""`POST /v1/webhooks` bodies that the registration event could not carry are 422s.

Before: a NUL character in `description` (or `url`) passed the request model and broke
the event's own check (PostgreSQL cannot store NUL) inside the route: a 500.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from ingest.auth import DEV_API_KEY
from ingest.settings import IngestSettings
from services.ingest.tests.test_api import FakePublisher, fake_app


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    async with (
        fake_app(IngestSettings(), tmp_path / "media", FakePublisher()) as app,
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="http://ingest",
            headers={"Authorization": f"Bearer {DEV_API_KEY}"},
        ) as client,
    ):
        yield client


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"url": "https://93.184.216.34/h", "description": "a\x00b"}, "description"),
        ({"url": "https://93.184.216.34/h\x00"}, "url"),
    ],
    ids=["description", "url"],
)
async def test_a_nul_character_is_a_422_naming_the_field(
    client: httpx.AsyncClient, body: dict[str, str], field: str
) -> None:
    answer = await client.post("/v1/webhooks", json=body)
    assert answer.status_code == 422, answer.text
    assert answer.json()["code"] == "validation_error"
    assert answer.json()["message"] == f"invalid request: {field}"
