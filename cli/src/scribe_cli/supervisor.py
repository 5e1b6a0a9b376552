"""`scribe up`: run the services as child processes with merged, prefixed logs.

A small asyncio supervisor rather than honcho/supervisord: it must run the migrations
first, wait for readiness, restart a crashed service with backoff and stop everything on
Ctrl-C, SIGTERM or a crash loop, and both of those tools would need as much glue as this.

No child outlives the supervisor: on Linux each child asks the kernel (`PR_SET_PDEATHSIG`)
for SIGTERM when the supervisor dies, even by SIGKILL; children run in their own session so
a terminal's Ctrl-C reaches the supervisor only, which stops them in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import signal
import sys
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict
from rich.console import Console
from rich.text import Text

STOP_GRACE_SECONDS = 35.0
COLOURS = ("cyan", "magenta", "green", "yellow", "blue", "bright_red", "bright_cyan")
_PR_SET_PDEATHSIG = 1


class RestartPolicy(BaseSettings):
    """How `scribe up` restarts a crashed service (env prefix `SCRIBE_UP_`)."""

    model_config = SettingsConfigDict(env_prefix="SCRIBE_UP_", extra="ignore", frozen=True)

    restart_initial_seconds: float = Field(
        default=1.0, gt=0, description="Wait before the first restart of a crashed service."
    )
    restart_max_seconds: float = Field(
        default=30.0, gt=0, description="Cap of the wait, which doubles with each crash."
    )
    crash_limit: int = Field(
        default=5,
        ge=0,
        description="More crashes than this of one service within the window stop the stack.",
    )
    crash_window_seconds: float = Field(
        default=60.0, gt=0, description="The window the crashes are counted in."
    )

    def delay(self, recent_crashes: int) -> float:
        """Seconds to wait before restarting after the `recent_crashes`-th crash."""
        exponent = min(max(recent_crashes - 1, 0), 30)
        return float(min(self.restart_max_seconds, self.restart_initial_seconds * 2**exponent))


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
    restarts: int = 0


class Supervisor:
    """Starts children, forwards their output with a prefix, restarts them, stops them."""

    def __init__(
        self,
        console: Console,
        width: int = 14,
        log_dir: Path | None = None,
        policy: RestartPolicy | None = None,
    ) -> None:
        self.console = console
        self.width = width
        self.log_dir = log_dir
        self.policy = policy or RestartPolicy()
        self.children: list[Child] = []
        self._pumps: list[asyncio.Task[None]] = []
        self._stopping = False
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
        child = Child(spec, colour, await self._exec(spec))
        self.children.append(child)
        self._pumps.append(asyncio.create_task(self._pump(child, child.process)))
        return child

    async def _exec(self, spec: ChildSpec) -> asyncio.subprocess.Process:
        env = {**os.environ, **spec.env, "SCRIBE_LOG_FORMAT": self._log_format}
        if "SCRIBE_LOG_FORMAT" in spec.env:
            env["SCRIBE_LOG_FORMAT"] = spec.env["SCRIBE_LOG_FORMAT"]
        return await asyncio.create_subprocess_exec(
            *spec.argv,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            stdin=asyncio.subprocess.DEVNULL,
            env=env,
            start_new_session=True,  # Ctrl-C reaches us only; we stop children in order
            preexec_fn=_die_with_parent(os.getpid()),
        )

    async def _pump(self, child: Child, process: asyncio.subprocess.Process) -> None:
        assert process.stdout is not None
        if self.log_dir is None:
            async for raw in process.stdout:
                self.say(child.spec.name, raw.decode(errors="replace"), child.colour)
            return
        self.log_dir.mkdir(parents=True, exist_ok=True)
        with (self.log_dir / f"{child.spec.name}.log").open("ab") as sink:
            async for raw in process.stdout:
                sink.write(raw)
                sink.flush()

    async def wait_any_exit(self) -> Child:
        """Block until some child exits; return it."""
        waits = {asyncio.create_task(child.process.wait()): child for child in self.children}
        done, pending = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()
        return waits[next(iter(done))]

    async def supervise(self) -> Child:
        """Restart crashed children with backoff; return the first one in a crash loop.

        Returns only when some service crashed more than `crash_limit` times within
        `crash_window_seconds`, or exited `EX_CONFIG` (78: it refused its settings, which a
        restart would not change); the caller then stops the stack and exits non-zero.
        """
        keepers = {asyncio.create_task(self._keep_running(c)): c for c in self.children}
        try:
            done, _ = await asyncio.wait(keepers, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in keepers:
                task.cancel()
        return keepers[next(iter(done))]

    async def _keep_running(self, child: Child) -> None:
        crashes: deque[float] = deque()
        policy = self.policy
        while True:
            code = await child.process.wait()
            if self._stopping:
                await asyncio.Event().wait()  # stop_all is in charge now
            if code == os.EX_CONFIG:
                # The service read its settings and refused them: restarting cannot help.
                self.say(
                    "scribe",
                    f"{child.spec.name} refused its configuration (exit {code}, said above); "
                    "not restarting it; stopping the stack",
                    "bold red",
                )
                return
            now = time.monotonic()
            crashes.append(now)
            while crashes and now - crashes[0] > policy.crash_window_seconds:
                crashes.popleft()
            if len(crashes) > policy.crash_limit:
                self.say(
                    "scribe",
                    f"{child.spec.name} crashed {len(crashes)} times within "
                    f"{policy.crash_window_seconds:g} s (last exit {_describe(code)}): "
                    "crash loop, giving up; stopping the stack",
                    "bold red",
                )
                return
            delay = policy.delay(len(crashes))
            self.say(
                "scribe",
                f"{child.spec.name} exited with {_describe(code)}; restarting in {delay:g} s "
                f"(crash {len(crashes)} of at most {policy.crash_limit} "
                f"in {policy.crash_window_seconds:g} s)",
                "red",
            )
            await asyncio.sleep(delay)
            if self._stopping:
                await asyncio.Event().wait()
            process = await self._exec(child.spec)
            child.process = process
            child.restarts += 1
            self._pumps.append(asyncio.create_task(self._pump(child, process)))
            self.say("scribe", f"{child.spec.name} restarted (pid {process.pid})", "yellow")

    async def stop_all(self) -> None:
        """SIGTERM every child (in reverse start order), SIGKILL stragglers after the grace."""
        self._stopping = True
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


def _describe(code: int) -> str:
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"{code} ({signal.Signals(-code).name})"
    return str(code)


def _die_with_parent(parent: int) -> Callable[[], None] | None:
    """A pre-exec hook that makes the child get SIGTERM when `parent` dies (Linux only)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        prctl = libc.prctl
    except (OSError, AttributeError):
        return None

    def hook() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before the hook ran
            os._exit(1)

    return hook


def console_script(name: str) -> list[str]:
    """The argv that runs one of our console scripts from the current environment."""
    candidate = Path(sys.executable).parent / name
    return [str(candidate)] if candidate.exists() else [name]
