"""What the CLI prints: the consoles, and the formatting of times, hits, jobs and progress."""

from __future__ import annotations

import unicodedata
from typing import Any
from urllib.parse import urlsplit

from rich.console import Console
from rich.markup import escape

# Soft wrap: rich never breaks a line itself (the terminal folds what is too long), so an
# error, a written path or a URL stays one line at any width, and piped or redirected
# output, which rich would render at 80 columns, greps and copies whole.
console = Console(soft_wrap=True)
errors = Console(stderr=True, soft_wrap=True)

TERMINAL = frozenset({"completed", "failed"})


def mmss(seconds: float) -> str:
    """`mm:ss`, or `h:mm:ss` from an hour on: where in the recording something was said."""
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes:02d}:{secs:02d}"


def highlighted(snippet: str) -> str:
    """A search snippet as rich markup: `<mark>` in bold yellow, the transcript's own text
    escaped (a transcript saying "[/]" must not break or restyle the output)."""
    return escape(snippet).replace("<mark>", "[bold yellow]").replace("</mark>", "[/]")


def hit_line(hit: dict[str, Any]) -> str:
    """One search hit: job id, the time it was said, the snippet."""
    start = mmss(float(hit["start"]))
    return f"[cyan]{hit['job_id']}[/] [green]{start}[/]  {highlighted(str(hit.get('snippet', '')))}"


def progress_of(job: dict[str, Any]) -> float:
    """How far along a job is, 0..1 (a completed job is done whatever it last reported)."""
    if job.get("status") == "completed":
        return 1.0
    return float(job.get("progress") or 0.0)


def error_text(job: dict[str, Any]) -> str:
    """A failed job's `code: message`."""
    error = job.get("error") or {}
    return f"{error.get('code')}: {error.get('message')}"


def status_rows(job: dict[str, Any]) -> list[tuple[str, str]]:
    """The rows `scribe status` shows: the fields a job has, then its error if any."""
    rows = [
        (key, str(job[key]))
        for key in ("id", "status", "progress", "language", "duration_seconds", "model")
        if job.get(key) is not None
    ]
    if job.get("error"):
        rows.append(("error", error_text(job)))
    return rows


def one_line(text: str) -> str:
    """`text` as one printable line: each run of whitespace (line breaks too) one space, any
    other control or format character (an escape sequence's ESC, a right-to-left override)
    as its Python escape, `\\x1b`. For text others wrote: a dead letter's headers come from
    whoever published the message, and may try to restyle or rewrite an operator's terminal."""
    words = " ".join(text.split())
    return "".join(
        c.encode("unicode_escape").decode("ascii") if unicodedata.category(c) in ("Cc", "Cf") else c
        for c in words
    )


def redact(url: str) -> str:
    """`url` with its password, if any, replaced by `***`."""
    parts = urlsplit(url)
    if parts.password:
        return url.replace(f":{parts.password}@", ":***@")
    return url
