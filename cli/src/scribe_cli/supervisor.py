"""`scribe up`: run the services as child processes with merged, prefixed logs.

A small asyncio supervisor rather than honcho/supervisord: it must run the migrations
first, wait for readiness, and stop everything on the first crash or Ctrl-C, and both of
those tools would need as much glue as this.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console
from rich.text import Text

STOP_GRACE_SECONDS = 35.0
COLOURS = ("cyan", "magenta", "green", "yellow", "blue", "bright_red", "bright_cyan")


def child_log_format(environ: Mapping[str, str], tty: bool) -> str:
    """The `SCRIBE_LOG_FORMAT` a child gets: the user's choice, else console.

    Children write to a pipe, so their own `auto` would always pick JSON: resolve `auto`
    against the supervisor's terminal instead. Unset keeps the prefixed console lines.
    """
    chosen = environ.get("SCRIBE_LOG_FORMAT", "").strip().lower()
    if chosen in ("json", "console"):
        return chosen
    if chosen == "auto":
        return "console" if tty else "json"
    return "console"


@dataclass
class ChildSpec:
    """One service process to run."""

    name: str
    argv: Sequence[str]
    env: dict[str, str] = field(default_factory=dict)


@dataclass
class Child:
    spec: ChildSpec
    colour: str
    process: asyncio.subprocess.Process


class Supervisor:
    """Starts children, forwards their output with a prefix, stops them together."""

    def __init__(self, console: Console, width: int = 14, log_dir: Path | None = None) -> None:
        self.console = console
        self.width = width
        self.log_dir = log_dir
        self.children: list[Child] = []
        self._pumps: list[asyncio.Task[None]] = []
        self._log_format = child_log_format(os.environ, console.is_terminal)

    def say(self, name: str, line: str, colour: str = "white") -> None:
        prefix = Text(f"{name:<{self.width}}| ", style=f"bold {colour}")
        self.console.print(prefix + Text(line.rstrip("\n")), soft_wrap=True, highlight=False)

    async def run_once(self, spec: ChildSpec) -> int:
        """Run a one-shot command (e.g. migrations) to completion; its exit code."""
        child = await self._spawn(spec, "white")
        code = await child.process.wait()
        await asyncio.gather(*self._pumps)
        self._pumps.clear()
        self.children.remove(child)
        return code

    async def start(self, spec: ChildSpec) -> Child:
        colour = COLOURS[len(self.children) % len(COLOURS)]
        return await self._spawn(spec, colour)

    async def _spawn(self, spec: ChildSpec, colour: str) -> Child:
        env = {**os.environ, **spec.env, "SCRIBE_LOG_FORMAT": self._log_format}
        if "SCRIBE_LOG_FORMAT" in spec.env:
            env["SCRIBE_LOG_FORMAT"] = spec.env["SCRIBE_LOG_FORMAT"]
        process = await asyncio.create_subprocess_exec(
            *spec.argv,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            stdin=asyncio.subprocess.DEVNULL,
            env=env,
            start_new_session=True,  # Ctrl-C reaches us only; we stop children in order
        )
        child = Child(spec, colour, process)
        self.children.append(child)
        self._pumps.append(asyncio.create_task(self._pump(child)))
        return child

    async def _pump(self, child: Child) -> None:
        assert child.process.stdout is not None
        if self.log_dir is None:
            async for raw in child.process.stdout:
                self.say(child.spec.name, raw.decode(errors="replace"), child.colour)
            return
        self.log_dir.mkdir(parents=True, exist_ok=True)
        with (self.log_dir / f"{child.spec.name}.log").open("ab") as sink:
            async for raw in child.process.stdout:
                sink.write(raw)
                sink.flush()

    async def wait_any_exit(self) -> Child:
        """Block until some child exits; return it."""
        waits = {asyncio.create_task(child.process.wait()): child for child in self.children}
        done, pending = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()
        return waits[next(iter(done))]

    async def stop_all(self) -> None:
        """SIGTERM every child (in reverse start order), SIGKILL stragglers after the grace."""
        for child in reversed(self.children):
            if child.process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    child.process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(
                asyncio.gather(*(c.process.wait() for c in self.children)), STOP_GRACE_SECONDS
            )
        except TimeoutError:
            for child in self.children:
                if child.process.returncode is None:
                    self.say(child.spec.name, "did not stop in time; killing", "red")
                    with contextlib.suppress(ProcessLookupError):
                        child.process.kill()
            await asyncio.gather(*(c.process.wait() for c in self.children))
        await asyncio.gather(*self._pumps, return_exceptions=True)


def console_script(name: str) -> list[str]:
    """The argv that runs one of our console scripts from the current environment."""
    candidate = Path(sys.executable).parent / name
    return [str(candidate)] if candidate.exists() else [name]
