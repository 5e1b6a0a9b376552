"""`scribe up`'s supervisor with real child processes."""

from __future__ import annotations

import sys
from io import StringIO

import pytest
from rich.console import Console

from scribe_cli.supervisor import ChildSpec, Supervisor, child_log_format


def _console() -> tuple[Console, StringIO]:
    out = StringIO()
    return Console(file=out, width=300, color_system=None), out


@pytest.mark.parametrize(
    ("configured", "tty", "expected"),
    [
        (None, True, "console"),
        (None, False, "console"),  # unset: the prefixed console lines, as before
        ("json", True, "json"),
        ("json", False, "json"),
        ("console", False, "console"),
        ("auto", True, "console"),
        ("auto", False, "json"),  # children write to a pipe: decide by our own output
    ],
)
def test_the_users_log_format_is_honoured(configured: str | None, tty: bool, expected: str) -> None:
    environ = {} if configured is None else {"SCRIBE_LOG_FORMAT": configured}
    assert child_log_format(environ, tty) == expected


async def test_children_are_started_with_the_users_log_format(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SCRIBE_LOG_FORMAT", "json")
    console, out = _console()
    supervisor = Supervisor(console)
    code = await supervisor.run_once(
        ChildSpec(
            "env", [sys.executable, "-c", "import os; print(os.environ['SCRIBE_LOG_FORMAT'])"]
        )
    )
    assert code == 0
    assert "env           | json" in out.getvalue()
