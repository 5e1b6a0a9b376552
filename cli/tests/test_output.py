"""What the CLI prints: times in the recording, search hits, job rows, progress."""

from __future__ import annotations

import pytest
from rich.console import Console

from scribe_cli.output import highlighted, hit_line, mmss, progress_of, redact, status_rows


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [
        (0, "00:00"),
        (5.9, "00:05"),  # the second it was said, not rounded up past it
        (65, "01:05"),
        (3599.99, "59:59"),
        (3600, "1:00:00"),
        (3723.4, "1:02:03"),
        (36000, "10:00:00"),
    ],
)
def test_times_are_mm_ss_then_h_mm_ss(seconds: float, shown: str) -> None:
    assert mmss(seconds) == shown


def rendered(markup: str) -> str:
    console = Console(width=200, record=True, color_system=None)
    console.print(markup)
    return console.export_text().rstrip("\n")


def test_a_hit_shows_job_time_and_snippet_with_the_match_marked() -> None:
    hit = {"job_id": "j-1", "start": 125.2, "snippet": "the <mark>release</mark> date"}
    line = hit_line(hit)
    assert "[bold yellow]release[/]" in line
    assert rendered(line) == "j-1 02:05  the release date"


def test_a_transcript_that_looks_like_markup_is_printed_as_said() -> None:
    said = "press [bold] then [/] to <mark>exit</mark>"
    assert rendered(highlighted(said)) == "press [bold] then [/] to exit"


def test_a_hit_without_snippet_still_prints() -> None:
    assert rendered(hit_line({"job_id": "j-2", "start": "3"})).rstrip() == "j-2 00:03"


@pytest.mark.parametrize(
    ("job", "fraction"),
    [
        ({"status": "queued"}, 0.0),
        ({"status": "processing", "progress": None}, 0.0),
        ({"status": "processing", "progress": 0.42}, 0.42),
        ({"status": "completed", "progress": 0.97}, 1.0),  # done is done
        ({"status": "failed", "progress": 0.3}, 0.3),
    ],
)
def test_progress_comes_from_the_job(job: dict[str, object], fraction: float) -> None:
    assert progress_of(job) == fraction


def test_status_shows_what_the_job_has_and_its_error() -> None:
    job = {
        "id": "j-3",
        "status": "failed",
        "progress": 0.5,
        "language": None,
        "model": "tiny.en",
        "error": {"code": "corrupt_audio", "message": "cannot decode"},
    }
    assert status_rows(job) == [
        ("id", "j-3"),
        ("status", "failed"),
        ("progress", "0.5"),
        ("model", "tiny.en"),
        ("error", "corrupt_audio: cannot decode"),
    ]


def test_urls_in_messages_never_show_a_password() -> None:
    assert redact("amqp://guest:s3cret@rabbit:5672/") == "amqp://guest:***@rabbit:5672/"
    assert redact("postgresql://postgres@db/scribe") == "postgresql://postgres@db/scribe"
