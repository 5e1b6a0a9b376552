"""The official `openai` client against the real stack: every response format, real model.

Pointed at Scribe with `base_url` and a Scribe API key, the client transcribes Festival
speech through `POST /v1/audio/transcriptions`; each request is an ordinary job, listed by
`GET /v1/transcriptions` and found by search the moment the client has its answer.
"""

from __future__ import annotations

import contextlib
import io
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import jiwer
import openai
import pytest
import srt
import webvtt
from whisper_normalizer.english import EnglishTextNormalizer

from tests.speech import SCRIPTS, synthesize
from tests.support.stack import Stack, running_stack

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

README = Path(__file__).resolve().parents[2] / "README.md"
KEY = "dev-insecure-key"  # no keys configured in the stack: the development key works
normalise = EnglishTextNormalizer()


@pytest.fixture
def stack(amqp_url: str, database_url: str, tmp_path: Path) -> Iterator[Stack]:
    with running_stack(amqp_url, database_url, tmp_path) as running:
        yield running


def wer(reference: str, hypothesis: str) -> float:
    return float(jiwer.wer(normalise(reference), normalise(hypothesis)))


def test_openai_client_transcribes_in_every_format_and_the_jobs_are_ordinary(
    stack: Stack,
) -> None:
    client = openai.OpenAI(base_url=f"{stack.api}/v1", api_key=KEY, timeout=300)
    speech: Path = synthesize(SCRIPTS["meeting"], fmt="flac")
    api = client.audio.transcriptions

    # json, through the raw response to see which job it made.
    with speech.open("rb") as audio:
        raw = api.with_raw_response.create(model="whisper-1", file=audio, language="en")
    as_json = raw.parse()
    job_id = raw.headers["x-scribe-job-id"]
    assert wer(SCRIPTS["meeting"], as_json.text) < 0.15

    with speech.open("rb") as audio:
        as_text = api.create(model="whisper-1", file=audio, response_format="text")
    assert wer(SCRIPTS["meeting"], as_text) < 0.15

    with speech.open("rb") as audio:
        cues = list(srt.parse(api.create(model="whisper-1", file=audio, response_format="srt")))
    assert cues
    assert wer(SCRIPTS["meeting"], " ".join(c.content for c in cues)) < 0.15

    with speech.open("rb") as audio:
        vtt = api.create(model="whisper-1", file=audio, response_format="vtt")
    captions = webvtt.from_string(vtt).captions
    assert captions
    assert wer(SCRIPTS["meeting"], " ".join(c.text for c in captions)) < 0.15

    with speech.open("rb") as audio:
        verbose = api.create(
            model="whisper-1",
            file=audio,
            response_format="verbose_json",
            timestamp_granularities=["word"],
        )
    assert verbose.language == "english"
    words = verbose.words or []
    assert wer(SCRIPTS["meeting"], " ".join(w.word for w in words)) < 0.15
    assert all(0 <= w.start <= w.end <= verbose.duration + 0.5 for w in words)
    assert [w.start for w in words] == sorted(w.start for w in words)
    print(f"openai client: 5 formats, {len(words)} words over {verbose.duration:.1f} s")

    # The json request's job is an ordinary one: listed, completed, and searchable now.
    scribe = httpx.Client(
        base_url=stack.api, timeout=30, headers={"Authorization": f"Bearer {KEY}"}
    )
    listed = scribe.get("/v1/transcriptions", params={"limit": 100}).json()["items"]
    assert len(listed) == 5
    mine = next(item for item in listed if item["id"] == job_id)
    assert mine["status"] == "completed"
    hits = scribe.get("/v1/search", params={"q": "budget"}).json()["hits"]
    assert job_id in {hit["job_id"] for hit in hits}
    job = scribe.get(f"/v1/transcriptions/{job_id}").json()
    assert job["options"]["model"] == "tiny.en"  # `whisper-1` is the default model

    models = client.models.list()
    assert [m.id for m in models.data] == ["tiny.en", "whisper-1"]

    # The README's example, as printed, against this stack and this speech.
    printed = _run_readme_example(stack.api, speech)
    assert wer(SCRIPTS["meeting"], printed.splitlines()[0]) < 0.15
    assert "budget" in printed.lower()


def _run_readme_example(api: str, speech: Path) -> str:
    section = README.read_text().split("## OpenAI-compatible API", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert match, "the README lost its OpenAI client example"
    code = match.group(1).replace('"http://127.0.0.1:8000/v1"', repr(f"{api}/v1"))
    code = code.replace('"talk.flac"', repr(str(speech)))
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, "README.md", "exec"), {})  # noqa: S102 - our own docs
    return out.getvalue()
