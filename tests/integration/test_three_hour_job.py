"""A 3-hour upload through the whole stack as real processes, a cheap engine for the model.

Ingest takes the file over HTTP, a transcriber plans it (decodes it in blocks, cuts it at
silences with VAD, writes 16 kHz chunks of up to 10 minutes), two transcribers take them
(`tests.support.cheap_transcriber`: one segment at the middle of each chunk, no model),
the indexer assembles the job from its chunk rows and completes it. What a user sees: the
job accepted (202) and completed with one segment per chunk in absolute time up to its
end, its chunk audio erased once it is done, and, with a limit just over 3 hours, a file
2 minutes longer refused by ingest at once with `audio_too_long`, never accepted and
failed later.
"""

from __future__ import annotations

import itertools
import time
import wave
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support import cheap_transcriber
from tests.support.stack import Stack, running_stack, wait_for_job

pytestmark = [pytest.mark.integration, pytest.mark.slow]

HOURS_3 = 3 * 3600
LIMIT = HOURS_3 + 60
CHUNK_SECONDS = 600
AUTH = {"Authorization": "Bearer dev-insecure-key"}


def silence_wav(path: Path, seconds: int) -> Path:
    """8 kHz 8-bit mono silence (28.8 MB an hour), written a minute at a time."""
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(1)
        out.setframerate(8000)
        minute = bytes([128]) * (60 * 8000)
        for _ in range(seconds // 60):
            out.writeframes(minute)
    return path


@pytest.fixture
def stack(amqp_url: str, database_url: str, tmp_path: Path) -> Iterator[Stack]:
    env = {
        "SCRIBE_MAX_DURATION_SECONDS": str(LIMIT),
        # The longest chunks allowed, and a narrow VAD window: 18 chunks, not 90 (the split
        # policy has its own tests; this one is about a 3-hour job getting through).
        "SCRIBE_TRANSCRIBER_CHUNK_SECONDS": str(CHUNK_SECONDS),
        "SCRIBE_TRANSCRIBER_CHUNK_SEARCH_SECONDS": "8",
    }
    with running_stack(
        amqp_url,
        database_url,
        tmp_path,
        transcribers=2,
        transcriber_argv=cheap_transcriber.command(),
        env=env,
        ready_timeout=240,  # five processes starting on a shared, loaded machine
    ) as running:
        yield running


def test_a_three_hour_upload_is_accepted_and_completes(stack: Stack, tmp_path: Path) -> None:
    three_hours = silence_wav(tmp_path / "three-hours.wav", HOURS_3)
    too_long = silence_wav(tmp_path / "three-hours-two.wav", HOURS_3 + 120)
    with httpx.Client(base_url=stack.api, timeout=120, headers=AUTH) as client:
        with too_long.open("rb") as body:
            refused = client.post(
                "/v1/transcriptions", files={"file": ("long.wav", body, "audio/wav")}
            )
        assert refused.status_code == 413, refused.text
        assert refused.json()["code"] == "audio_too_long"

        with three_hours.open("rb") as body:
            answer = client.post(
                "/v1/transcriptions", files={"file": ("meeting.wav", body, "audio/wav")}
            )
        assert answer.status_code == 202, answer.text
        job_id = answer.json()["id"]

        seen: list[float] = []
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            body_now = client.get(f"/v1/transcriptions/{job_id}").json()
            if body_now.get("progress") is not None:
                seen.append(float(body_now["progress"]))
            if body_now.get("status") in {"completed", "failed"}:
                break
            time.sleep(0.5)
        job = wait_for_job(client, job_id, within=10)
        assert seen == sorted(seen), seen
        assert job["audio"]["duration_seconds"] == pytest.approx(HOURS_3, abs=1)

        segments = client.get(f"/v1/transcriptions/{job_id}/transcript.json").json()["segments"]
        # One segment per chunk (at the middle of each): at least 18, in order, to the end.
        assert len(segments) >= HOURS_3 // CHUNK_SECONDS
        assert [s["id"] for s in segments] == list(range(len(segments)))
        assert {s["text"].strip() for s in segments} == {cheap_transcriber.WORD}
        for before, after in itertools.pairwise(segments):
            assert 0 < after["start"] - before["start"] <= CHUNK_SECONDS
        assert segments[-1]["start"] > HOURS_3 - CHUNK_SECONDS, "times are absolute"

    chunks = stack.media_root / "default" / "chunks" / job_id
    deadline = time.monotonic() + 20
    while chunks.exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not chunks.exists(), "a completed job's chunk audio is erased"
