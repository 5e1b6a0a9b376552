"""A long job through the whole stack as real processes: split, fanned out, assembled, once.

Festival speech read three times (~72 s) with a 20 s chunk threshold and 30 s chunks, two
transcribers: the worker that gets the upload plans the chunks, both transcribe them, the
indexer assembles the job from its durable chunk rows and publishes the one
`transcript.completed.v1` from its outbox. What a user sees: progress that only grows, a
completed job whose search finds a word of the last repeat at its absolute time, an SRT
export in order, and one completion event downstream.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import srt

from tests.support.downstream import bind_downstream, drain_downstream
from tests.support.stack import Stack, running_stack, wait_for_job
from tests.support.workers import long_speech

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

DOWNSTREAM = "e2e-downstream.long-completed"
CHUNKED = {
    "SCRIBE_TRANSCRIBER_CHUNK_THRESHOLD_SECONDS": "20",
    "SCRIBE_TRANSCRIBER_CHUNK_SECONDS": "30",
    "SCRIBE_TRANSCRIBER_CHUNK_SEARCH_SECONDS": "8",
    "SCRIBE_TRANSCRIBER_CPU_THREADS": "1",
}


@pytest.fixture
def stack(amqp_url: str, database_url: str, tmp_path: Path) -> Iterator[Stack]:
    asyncio.run(bind_downstream(amqp_url, DOWNSTREAM))
    with running_stack(amqp_url, database_url, tmp_path, transcribers=2, env=CHUNKED) as running:
        yield running


def test_a_long_upload_is_split_fanned_out_assembled_and_completed_once(stack: Stack) -> None:
    audio = long_speech(3)
    with httpx.Client(
        base_url=stack.api, timeout=60, headers={"Authorization": "Bearer dev-insecure-key"}
    ) as client:
        answer = client.post(
            "/v1/transcriptions", files={"file": ("lecture.wav", audio.read_bytes(), "audio/wav")}
        )
        assert answer.status_code == 202, answer.text
        job_id = answer.json()["id"]

        # Progress as the API shows it while the chunks come in: it never goes back.
        seen: list[float] = []
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            body = client.get(f"/v1/transcriptions/{job_id}").json()
            if body.get("progress") is not None:
                seen.append(float(body["progress"]))
            if body.get("status") in {"completed", "failed"}:
                break
            time.sleep(0.3)
        job = wait_for_job(client, job_id)
        assert seen == sorted(seen), seen
        assert job["audio"]["duration_seconds"] > 60

        transcript = client.get(f"/v1/transcriptions/{job_id}/transcript.json").json()
        segments = transcript["segments"]
        assert [s["id"] for s in segments] == list(range(len(segments)))
        for before, after in itertools.pairwise(segments):
            assert before["start"] <= after["start"]
        assert segments[-1]["start"] > 48, "absolute times: the last repeat starts after 48 s"

        # The weather script is read three times: "Boston" found three times, never doubled
        # by a cut, the last one at its time in the last repeat.
        hits = client.get("/v1/search", params={"q": "Boston"}).json()["hits"]
        mine = sorted((h for h in hits if h["job_id"] == job_id), key=lambda h: h["start"])
        assert len(mine) == 3, mine
        third = 2 * job["audio"]["duration_seconds"] / 3  # where the last repeat begins
        assert [h["start"] > third - 1 for h in mine] == [False, False, True], mine

        exported = client.get(f"/v1/transcriptions/{job_id}/transcript.srt")
        assert exported.status_code == 200
        cues = list(srt.parse(exported.text))
        assert len(cues) >= len(segments)  # long segments are split into readable cues
        assert [c.start for c in cues] == sorted(c.start for c in cues)
        assert cues[-1].end.total_seconds() == pytest.approx(segments[-1]["end"], abs=0.01)

    time.sleep(2)  # an outbox republish or a second completion would be on the queue by now
    completed = [
        e
        for e in asyncio.run(drain_downstream(stack.amqp_url, DOWNSTREAM))
        if str(e.job_id) == job_id
    ]
    assert len(completed) == 1, completed
    assert len(completed[0].segments) == len(segments)
