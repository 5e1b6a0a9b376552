"""`scribe up`'s supervisor with real child processes: restarts, crash loops, no orphans."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import time
from io import StringIO
from pathlib import Path

import pytest
from rich.console import Console

from scribe_cli.supervisor import ChildSpec, RestartPolicy, Supervisor, child_log_format

SLEEPER = [sys.executable, "-c", "import time; time.sleep(120)"]
FAST = RestartPolicy(
    restart_initial_seconds=0.05,
    restart_max_seconds=0.1,
    crash_limit=3,
    crash_window_seconds=30,
)


def _console() -> tuple[Console, StringIO]:
    out = StringIO()
    return Console(file=out, width=300, color_system=None), out


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


async def test_a_crashing_service_is_restarted_with_backoff_then_the_loop_stops_it() -> None:
    console, out = _console()
    supervisor = Supervisor(console, policy=FAST)
    crasher = await supervisor.start(ChildSpec("crasher", [sys.executable, "-c", "exit(3)"]))
    await supervisor.start(ChildSpec("steady", SLEEPER))
    try:
        gave_up = await asyncio.wait_for(supervisor.supervise(), 20)
    finally:
        await supervisor.stop_all()
    assert gave_up is crasher
    assert crasher.restarts == 3
    log = out.getvalue()
    assert "crasher exited with 3; restarting in 0.05 s (crash 1 of at most 3 in 30 s)" in log
    assert "crasher exited with 3; restarting in 0.1 s (crash 2" in log  # doubled
    assert "restarting in 0.1 s (crash 3" in log  # capped
    assert "crasher crashed 4 times within 30 s (last exit 3): crash loop" in log


async def test_a_service_that_refuses_its_configuration_is_not_restarted() -> None:
    console, out = _console()
    supervisor = Supervisor(console, policy=FAST)
    refuser = await supervisor.start(
        ChildSpec("ingest", [sys.executable, "-c", f"raise SystemExit({os.EX_CONFIG})"])
    )
    await supervisor.start(ChildSpec("steady", SLEEPER))
    try:
        gave_up = await asyncio.wait_for(supervisor.supervise(), 20)
    finally:
        await supervisor.stop_all()
    assert gave_up is refuser
    assert refuser.restarts == 0
    log = out.getvalue()
    assert "ingest refused its configuration (exit 78, said above); not restarting it" in log
    assert "restarting in" not in log


async def test_a_killed_service_comes_back_while_the_others_keep_running() -> None:
    console, out = _console()
    supervisor = Supervisor(console, policy=FAST)
    first = await supervisor.start(ChildSpec("transcriber-1", SLEEPER))
    second = await supervisor.start(ChildSpec("transcriber-2", SLEEPER))
    watching = asyncio.create_task(supervisor.supervise())
    killed, other = first.process.pid, second.process.pid
    try:
        os.kill(killed, signal.SIGKILL)
        for _ in range(100):
            if first.process.pid != killed and first.process.returncode is None:
                break
            await asyncio.sleep(0.05)
        assert first.process.pid != killed
        assert _alive(first.process.pid)
        assert second.process.pid == other
        assert _alive(other)
        assert not watching.done()
    finally:
        watching.cancel()
        await supervisor.stop_all()
    assert "transcriber-1 exited with -9 (SIGKILL); restarting in 0.05 s" in out.getvalue()
    assert not _alive(first.process.pid)
    assert not _alive(other)


def test_killing_the_supervisor_leaves_no_child_alive() -> None:
    script = textwrap.dedent(
        f"""
        import asyncio, sys
        from rich.console import Console
        from scribe_cli.supervisor import ChildSpec, Supervisor

        async def main():
            supervisor = Supervisor(Console(file=open("/dev/null", "w")))
            for n in range(2):
                child = await supervisor.start(ChildSpec(f"c{{n}}", {SLEEPER!r}))
                print(child.process.pid, flush=True)
            await asyncio.sleep(120)

        asyncio.run(main())
        """
    )
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert parent.stdout is not None
    pids = [int(parent.stdout.readline()) for _ in range(2)]
    assert all(_alive(pid) for pid in pids)
    parent.kill()
    parent.wait(10)
    deadline = time.monotonic() + 10
    while any(_alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not [pid for pid in pids if _alive(pid)], "orphans left behind"


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
