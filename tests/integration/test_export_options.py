"""Export options through the real read API over PostgreSQL: caption limits and TSV."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import srt
import webvtt

from services.indexer.tests import job_events as ev
from tests.integration.test_read_api import LONG_TEXT, client, indexed

pytestmark = pytest.mark.integration

__all__ = ["client", "indexed"]  # the fixtures, shared with the read API's tests


async def test_caption_limits_are_respected_in_srt_and_vtt(
    client: httpx.AsyncClient, indexed: dict[str, Any]
) -> None:
    job = indexed["jobs"]["long"]
    params = {"max_line_width": 24, "max_line_count": 1, "max_cue_seconds": 2.5}
    as_srt = await client.get(f"/v1/transcriptions/{job}/transcript.srt", params=params)
    as_vtt = await client.get(f"/v1/transcriptions/{job}/transcript.vtt", params=params)
    assert as_srt.status_code == as_vtt.status_code == 200, as_srt.text

    cues = list(srt.parse(as_srt.text))
    captions = webvtt.from_string(as_vtt.text).captions
    assert len(cues) == len(captions) >= len(LONG_TEXT) // 24  # one line of 24 a cue
    for cue in cues:
        assert "\n" not in cue.content
        assert len(cue.content) <= 24
        assert (cue.end - cue.start).total_seconds() <= 2.5
    assert [c.text for c in captions] == [c.content for c in cues]
    assert " ".join(c.content for c in cues) == LONG_TEXT

    default = list(srt.parse((await client.get(f"/v1/transcriptions/{job}/transcript.srt")).text))
    assert len(default) < len(cues)  # without options: the 2 x 42 default
    assert max(len(line) for c in default for line in c.content.split("\n")) > 24


async def test_tsv_is_a_segment_a_row_in_milliseconds(
    client: httpx.AsyncClient, indexed: dict[str, Any]
) -> None:
    job = indexed["jobs"]["done"]
    response = await client.get(f"/v1/transcriptions/{job}/transcript.tsv")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/tab-separated-values")
    header, *rows = response.text.splitlines()
    assert header == "start\tend\ttext"
    expected = [f"{round(s.start * 1000)}\t{round(s.end * 1000)}\t{s.text}" for s in ev.segments()]
    assert rows == expected


@pytest.mark.parametrize(
    ("fmt", "params"),
    [
        ("srt", {"max_line_width": "5"}),
        ("vtt", {"max_line_count": "0"}),
        ("srt", {"max_cue_seconds": "0"}),
        ("txt", {"max_line_width": "30"}),
        ("tsv", {"max_cue_seconds": "3"}),
    ],
    ids=["too-narrow", "no-lines", "no-time", "not-captions-txt", "not-captions-tsv"],
)
async def test_bad_or_misplaced_caption_options_are_422(
    client: httpx.AsyncClient, indexed: dict[str, Any], fmt: str, params: dict[str, str]
) -> None:
    job = indexed["jobs"]["done"]
    response = await client.get(f"/v1/transcriptions/{job}/transcript.{fmt}", params=params)
    assert response.status_code == 422
    assert response.json()["code"] == "validation_error"
    assert response.json()["details"][0]["loc"] == ["query", next(iter(params))]
