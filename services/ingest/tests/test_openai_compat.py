"""The OpenAI-compatible routes over fakes: the broker is a list, the read side a dict.

The official `openai` client talks to the app in process (ASGI transport); what a worker
and the indexer would do is played by `FakeReader`, which "completes" a job once its
`audio.uploaded.v1` is published. The same client against the real stack is in
`tests/e2e/test_openai_client.py`.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import httpx2
import openai
import pytest
import srt
import webvtt

from ingest.auth import DEV_API_KEY, hash_api_key
from ingest.deps import get_queries
from ingest.links import job_links
from ingest.queries import TranscriptLookup
from ingest.read_models import (
    AudioInfo,
    JobError,
    SegmentOut,
    TranscriptionOut,
    TranscriptOut,
    WordOut,
)
from ingest.settings import IngestSettings
from services.ingest.tests import samples
from services.ingest.tests.test_api import FakePublisher, fake_app

AUTH = {"Authorization": f"Bearer {DEV_API_KEY}"}

WORDS = [
    ("And", 0.0, 0.4),
    ("so,", 0.4, 0.8),
    ("my", 0.9, 1.1),
    ("fellow", 1.1, 1.5),
    ("Americans,", 1.5, 2.2),
    ("ask", 3.0, 3.3),
    ("not", 3.3, 3.6),
]
TRANSCRIPT = TranscriptOut(
    language="en",
    language_probability=1.0,
    duration_seconds=4.0,
    model="tiny.en",
    text=" And so, my fellow Americans, ask not",
    segments=[
        SegmentOut(
            id=0,
            start=0.0,
            end=2.2,
            text=" And so, my fellow Americans,",
            avg_logprob=-0.2,
            no_speech_prob=0.01,
            words=[WordOut(word=f" {w}", start=s, end=e, probability=0.9) for w, s, e in WORDS[:5]],
        ),
        SegmentOut(
            id=1,
            start=3.0,
            end=3.6,
            text=" ask not",
            words=[WordOut(word=f" {w}", start=s, end=e, probability=0.9) for w, s, e in WORDS[5:]],
        ),
    ],
)


@dataclass
class FakeReader:
    """The read side: a job is completed (or failed) as soon as its event is published."""

    publisher: FakePublisher
    outcome: str = "completed"  # or "failed", or "never" (no worker ever takes it)
    polls: int = 0

    def _known(self, job_id: uuid.UUID) -> bool:
        return any(e.job_id == job_id for e in self.publisher.events)

    async def transcript(self, tenant: str, job_id: uuid.UUID) -> TranscriptLookup | None:
        self.polls += 1
        if self.outcome == "never" or not self._known(job_id):
            return None
        if self.outcome == "failed":
            return TranscriptLookup(status="failed", transcript=None)
        return TranscriptLookup(status="completed", transcript=TRANSCRIPT)

    async def job(self, tenant: str, job_id: uuid.UUID) -> TranscriptionOut | None:
        now = datetime.now(UTC)
        return TranscriptionOut(
            id=job_id,
            status="failed",
            progress=0.0,
            attempts=1,
            error=JobError(code="corrupt_audio", message="cannot decode", retryable=False),
            audio=AudioInfo(),
            created_at=now,
            updated_at=now,
            links=job_links(job_id, "failed"),
        )


@dataclass
class Harness:
    client: httpx.AsyncClient
    openai: openai.AsyncOpenAI
    publisher: FakePublisher
    reader: FakeReader
    media_root: Path
    settings: dict[str, Any] = field(default_factory=dict)

    def files(self) -> list[Path]:
        return sorted(p for p in self.media_root.rglob("*") if p.is_file())

    async def post(
        self, path: str, data: bytes | None = None, **fields: str | list[str]
    ) -> httpx.Response:
        parts: list[tuple[str, Any]] = []
        for name, value in fields.items():
            for item in value if isinstance(value, list) else [value]:
                parts.append((name, (None, item)))
        if data is not None:
            parts.append(("file", ("speech.wav", data, "audio/wav")))
        return await self.client.post(path, files=parts)


async def _harness(tmp_path: Path, **overrides: Any) -> AsyncIterator[Harness]:
    media_root = tmp_path / "media"
    given: dict[str, Any] = {"openai_wait_seconds": 5.0, **overrides}
    settings = IngestSettings(max_upload_bytes=200_000, **given)
    publisher = FakePublisher()
    reader = FakeReader(publisher)
    async with fake_app(settings, media_root, publisher) as app:
        app.dependency_overrides[get_queries] = lambda: reader
        async with (
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://ingest", headers=AUTH
            ) as c,
            # The openai client speaks through `httpx2`, its own fork of httpx.
            httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app)) as bare,
        ):
            client = openai.AsyncOpenAI(
                api_key=DEV_API_KEY, base_url="http://ingest/v1", http_client=bare, max_retries=0
            )
            yield Harness(c, client, publisher, reader, media_root)


@pytest.fixture
async def harness(tmp_path: Path) -> AsyncIterator[Harness]:
    async for h in _harness(tmp_path):
        yield h


def _error(response: httpx.Response) -> dict[str, Any]:
    body = response.json()
    assert set(body) == {"error"}, body
    error: dict[str, Any] = body["error"]
    assert {"message", "type", "param", "code"} <= set(error), error
    return error


async def test_openai_client_gets_every_response_format(harness: Harness) -> None:
    audio = ("speech.wav", samples.wav_bytes(1.0))
    api = harness.openai.audio.transcriptions

    as_json = await api.create(model="whisper-1", file=audio, response_format="json")
    assert as_json.text == "And so, my fellow Americans, ask not"

    as_text = await api.create(model="whisper-1", file=audio, response_format="text")
    assert as_text.strip() == "And so, my fellow Americans, ask not"

    cues = list(srt.parse(await api.create(model="whisper-1", file=audio, response_format="srt")))
    assert [c.content for c in cues] == ["And so, my fellow Americans,", "ask not"]
    assert cues[1].start.total_seconds() == pytest.approx(3.0)

    vtt = await api.create(model="whisper-1", file=audio, response_format="vtt")
    captions = webvtt.from_string(vtt).captions
    assert [c.text for c in captions] == ["And so, my fellow Americans,", "ask not"]

    verbose = await api.create(
        model="whisper-1",
        file=audio,
        response_format="verbose_json",
        timestamp_granularities=["word", "segment"],
        language="en",
        prompt="Kennedy's inaugural address.",
        temperature=0.2,
    )
    assert verbose.language == "english"
    assert verbose.duration == pytest.approx(4.0)
    assert [(w.word, w.start, w.end) for w in verbose.words or []] == WORDS
    assert [(s.start, s.end) for s in verbose.segments or []] == [(0.0, 2.2), (3.0, 3.6)]

    # Every request became an ordinary job, with the options carried into its event.
    assert len(harness.publisher.events) == 5
    options = harness.publisher.events[-1].options
    assert options.model == "tiny.en"  # whisper-1 means the default served model
    assert options.language == "en"
    assert options.word_timestamps is True
    assert options.initial_prompt == "Kennedy's inaugural address."
    assert options.temperature == pytest.approx(0.2)
    assert options.task is None
    assert all(not e.options.word_timestamps for e in harness.publisher.events[:-1])


async def test_only_words_when_only_words_are_asked_for(harness: Harness) -> None:
    response = await harness.post(
        "/v1/audio/transcriptions",
        samples.wav_bytes(1.0),
        response_format="verbose_json",
        **{"timestamp_granularities[]": "word"},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert "segments" not in body
    assert [w["word"] for w in body["words"]] == [w for w, _, _ in WORDS]
    assert response.headers["x-scribe-job-id"] == str(harness.publisher.events[0].job_id)


async def test_a_job_not_finished_in_time_answers_its_id_to_poll(tmp_path: Path) -> None:
    async for harness in _harness(tmp_path, openai_wait_seconds=0.5):
        harness.reader.outcome = "never"
        response = await harness.post("/v1/audio/transcriptions", samples.wav_bytes(1.0))

        assert response.status_code == 504
        error = _error(response)
        [event] = harness.publisher.events
        assert error["code"] == "transcription_pending"
        assert error["job_id"] == str(event.job_id)
        assert str(event.job_id) in error["message"]
        assert response.headers["location"] == f"/v1/transcriptions/{event.job_id}"
        # The OpenAI client would otherwise retry a 5xx, making a second job.
        assert response.headers["x-should-retry"] == "false"
        assert harness.reader.polls >= 3  # it did wait, polling


async def test_the_openai_client_does_not_retry_a_pending_job(tmp_path: Path) -> None:
    async for harness in _harness(tmp_path, openai_wait_seconds=0.3):
        harness.reader.outcome = "never"
        client = harness.openai.with_options(max_retries=2)
        with pytest.raises(openai.InternalServerError) as raised:
            await client.audio.transcriptions.create(
                model="whisper-1", file=("a.wav", samples.wav_bytes(1.0))
            )
        assert raised.value.status_code == 504
        assert len(harness.publisher.events) == 1  # one job, not three


async def test_a_failed_job_answers_its_code(harness: Harness) -> None:
    harness.reader.outcome = "failed"
    response = await harness.post("/v1/audio/transcriptions", samples.wav_bytes(1.0))

    assert response.status_code == 400
    error = _error(response)
    assert error["code"] == "corrupt_audio"
    assert error["job_id"] == str(harness.publisher.events[0].job_id)


@pytest.mark.parametrize(
    ("fields", "code", "param"),
    [
        ({"model": "gpt-4o-transcribe"}, "model_unavailable", "model"),
        ({"model": "large-v3"}, "model_unavailable", "model"),
        ({"response_format": "xml"}, "validation_error", "response_format"),
        ({"temperature": "1.5"}, "validation_error", "temperature"),
        ({"prompt": "x" * 1001}, "validation_error", "prompt"),
        ({"language": "klingon"}, "validation_error", "language"),
        ({"stream": "true"}, "unknown_parameter", "stream"),
        ({"timestamp_granularities[]": "word"}, "unsupported_option", "timestamp_granularities[]"),
        (
            {"timestamp_granularities[]": "phoneme", "response_format": "verbose_json"},
            "unsupported_option",
            "timestamp_granularities[]",
        ),
    ],
    ids=[
        "openai-only-model",
        "unserved-model",
        "bad-format",
        "hot-temperature",
        "long-prompt",
        "bad-language",
        "unknown-parameter",
        "words-without-verbose-json",
        "bad-granularity",
    ],
)
async def test_bad_request_is_refused_in_openai_shape_and_leaves_nothing(
    harness: Harness, fields: dict[str, str], code: str, param: str
) -> None:
    response = await harness.post("/v1/audio/transcriptions", samples.wav_bytes(0.5), **fields)

    assert response.status_code == 400, response.text
    error = _error(response)
    assert (error["type"], error["code"], error["param"]) == ("invalid_request_error", code, param)
    assert harness.publisher.events == []
    assert harness.files() == []


async def test_not_audio_is_a_400_as_openai_answers_it(harness: Harness) -> None:
    response = await harness.post("/v1/audio/transcriptions", samples.png_bytes())
    assert response.status_code == 400
    assert _error(response)["code"] == "unsupported_media"
    assert harness.files() == []


async def test_no_key_is_a_401_in_openai_shape(harness: Harness) -> None:
    response = await harness.client.get("/v1/models", headers={"Authorization": "Bearer nope"})
    assert response.status_code == 401
    error = _error(response)
    assert (error["type"], error["code"]) == ("authentication_error", "unauthenticated")

    client = harness.openai.with_options(api_key="wrong")
    with pytest.raises(openai.AuthenticationError):
        await client.models.list()


async def test_english_only_model_refuses_to_translate(harness: Harness) -> None:
    with pytest.raises(openai.BadRequestError) as raised:
        await harness.openai.audio.translations.create(
            model="whisper-1", file=("a.wav", samples.wav_bytes(1.0))
        )
    assert raised.value.status_code == 400
    assert raised.value.code == "unsupported_option"
    assert "English-only" in raised.value.message
    assert harness.publisher.events == []  # never silently transcribed instead


async def test_english_only_model_refuses_another_language_as_the_native_route_does(
    harness: Harness,
) -> None:
    with pytest.raises(openai.BadRequestError) as raised:
        await harness.openai.audio.transcriptions.create(
            model="whisper-1", file=("a.wav", samples.wav_bytes(1.0)), language="de"
        )
    assert raised.value.code == "unsupported_option"
    assert "language 'de' needs a multilingual model" in raised.value.message
    with pytest.raises(openai.BadRequestError) as raised:
        await harness.openai.audio.transcriptions.create(
            model="large-v3", file=("a.wav", samples.wav_bytes(1.0))
        )
    assert raised.value.code == "model_unavailable"
    assert harness.publisher.events == []


async def test_a_multilingual_model_carries_translate_into_the_job(tmp_path: Path) -> None:
    async for harness in _harness(tmp_path, served_models=("base", "tiny.en")):
        translated = await harness.openai.audio.translations.create(
            model="whisper-1", file=("a.wav", samples.wav_bytes(1.0)), prompt="a speech"
        )
        assert translated.text
        [event] = harness.publisher.events
        assert (event.options.task, event.options.model) == ("translate", "base")
        assert event.options.initial_prompt == "a speech"


async def test_models_lists_what_the_fleet_serves(tmp_path: Path) -> None:
    async for harness in _harness(tmp_path, served_models=("tiny.en", "base")):
        models = await harness.openai.models.list()
        assert [m.id for m in models.data] == ["tiny.en", "base", "whisper-1"]
        assert all(m.object == "model" for m in models.data)
        assert (await harness.openai.models.retrieve("base")).id == "base"
        with pytest.raises(openai.NotFoundError) as raised:
            await harness.openai.models.retrieve("large-v3")
        assert raised.value.code == "model_unavailable"


async def test_native_routes_keep_their_own_error_shape(harness: Harness) -> None:
    response = await harness.client.get("/v1/transcriptions/x", headers={"Authorization": "x"})
    assert response.status_code == 401
    assert set(response.json()) == {"code", "message"}


async def test_a_tenant_waiting_on_too_many_transcriptions_is_refused_before_its_upload(
    tmp_path: Path,
) -> None:
    """Each wait holds a connection until its job ends. Before: no bound per tenant, so one
    tenant's waiting requests could take every connection the server takes
    (`max_connections`, then 503 for every tenant)."""
    keys = {"acme": "key-of-acme", "globex": "key-of-globex"}
    settings = {
        "openai_wait_seconds": 1.5,
        "openai_max_waiting_per_tenant": 2,
        "api_keys": {hash_api_key(key): tenant for tenant, key in keys.items()},
    }
    async for harness in _harness(tmp_path, **settings):
        harness.reader.outcome = "never"  # no worker: every request waits its 1.5 s

        async def transcribe(
            tenant: str, client: httpx.AsyncClient = harness.client
        ) -> httpx.Response:
            return await client.post(
                "/v1/audio/transcriptions",
                files=[("file", ("a.wav", samples.wav_bytes(1.0), "audio/wav"))],
                headers={"Authorization": f"Bearer {keys[tenant]}"},
            )

        waiting = [asyncio.create_task(transcribe("acme")) for _ in range(2)]
        await asyncio.sleep(0.5)
        refused = await transcribe("acme")
        assert refused.status_code == 429
        error = _error(refused)
        assert error["code"] == "too_many_waiting"
        assert "2 transcriptions waited on (limit 2)" in error["message"]
        assert refused.headers["retry-after"] == "10"
        assert len(harness.publisher.events) == 2  # refused before the upload: no job
        assert (await transcribe("globex")).status_code == 504  # its own slots: it waited
        assert [(await t).status_code for t in waiting] == [504, 504]
        assert (await transcribe("acme")).status_code == 504  # the slots came back
