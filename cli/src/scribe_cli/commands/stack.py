"""The whole stack on this machine: `scribe up`, and `scribe demo` (up, transcribe, search)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

import typer
from rich.markup import escape

from scribe_cli.client import ScribeClient
from scribe_cli.commands.jobs import follow
from scribe_cli.errors import USAGE, CliError
from scribe_cli.output import console, errors, hit_line, redact
from scribe_cli.settings import CliSettings
from scribe_cli.supervisor import ChildSpec, Supervisor, console_script
from scribe_runtime.settings import SharedSettings
from scribe_runtime.topology import UnknownPoolError, pool_routing_key

DEMO_SCRIPT = (
    "Welcome to Scribe. This recording was made on your machine, transcribed by a worker, "
    "and indexed so that every word can be found again at the second it was said."
)


MAX_TRANSCRIBERS = 64


def parse_pools(spec: str) -> dict[str, int]:
    """`tiny.en=1,base=2` as {model: workers}, in the order given (the first is the default)."""
    pools: dict[str, int] = {}
    for item in (part.strip() for part in spec.split(",")):
        model, sep, count = item.partition("=")
        model = model.strip()
        if not sep or not model or not count.strip().isdigit():
            raise CliError(f"--models: {item!r} is not MODEL=COUNT (e.g. tiny.en=1,base=1)", USAGE)
        try:
            pool_routing_key(model)
        except UnknownPoolError as exc:
            raise CliError(f"--models: {exc}", USAGE) from None
        if model in pools:
            raise CliError(f"--models: {model!r} is named twice", USAGE)
        pools[model] = int(count)
        if pools[model] < 1:
            raise CliError(f"--models: {model!r} needs at least one worker", USAGE)
    if sum(pools.values()) > MAX_TRANSCRIBERS:
        raise CliError(f"--models: at most {MAX_TRANSCRIBERS} transcribers in all", USAGE)
    return pools


def default_transcribers() -> int:
    """One transcriber per core this process may use, each on one thread.

    Two single-threaded transcribers moved 1.68 x the audio per second of one two-threaded
    one on 2 cores (tiny.en int8, `python -m bench scaling`): decoding does not keep a
    second thread busy, a second process does.
    """
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def up(
    transcribers: Annotated[
        int | None,
        typer.Option(
            min=1,
            max=MAX_TRANSCRIBERS,
            help="Transcriber processes to run, all serving the default model, the cores split "
            "between them [default: one single-threaded transcriber per core]",
            show_default=False,
        ),
    ] = None,
    models: Annotated[
        str | None,
        typer.Option(
            help="Model pools: MODEL=COUNT,... (e.g. tiny.en=1,base=1), the first the default; "
            "ingest then serves exactly these. Replaces --transcribers."
        ),
    ] = None,
) -> None:
    """Run the whole stack locally: migrations, indexer, transcriber(s), webhooks, ingest."""
    pools = parse_pools(models) if models is not None else None
    check_servers()
    raise typer.Exit(asyncio.run(_up(pools or transcribers or default_transcribers())))


def demo(
    file: Annotated[
        Path | None,
        typer.Argument(exists=True, dir_okay=False, readable=True, help="Audio to transcribe."),
    ] = None,
    query: Annotated[str | None, typer.Option(help="What to search for afterwards.")] = None,
    keep: Annotated[bool, typer.Option("--keep", help="Leave the stack running.")] = False,
) -> None:
    """The main job in one command: run the stack, transcribe a real file, search it."""
    check_servers()
    raise typer.Exit(asyncio.run(_demo(file or _demo_audio(), query, keep)))


def _reachable(url: str, default_port: int) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection(
            (parts.hostname or "127.0.0.1", parts.port or default_port), timeout=3
        ):
            return True
    except OSError:
        return False


def server_problems(shared: SharedSettings) -> list[str]:
    """What is missing for the stack to start, each with how to start it."""
    problems = []
    if not _reachable(shared.amqp_url, 5672):
        problems.append(
            f"RabbitMQ is not reachable at {redact(shared.amqp_url)}. Start one: "
            "`sudo rabbitmq-server -detached` (Debian/Ubuntu: `apt-get install rabbitmq-server`), "
            "or `docker compose up -d rabbitmq`; or set SCRIBE_AMQP_URL."
        )
    if not _reachable(shared.database_url, 5432):
        problems.append(
            f"PostgreSQL is not reachable at {redact(shared.database_url)}. Start one: "
            "`sudo pg_ctlcluster 15 main start` (Debian: `apt-get install postgresql`), "
            "or `docker compose up -d postgres`; or set SCRIBE_DATABASE_URL."
        )
    return problems


def check_servers() -> None:
    """Exit 2 with a message that says how to start RabbitMQ/PostgreSQL when they are down."""
    problems = server_problems(SharedSettings())
    if problems:
        # Every problem, not just the first: the user fixes both before trying again.
        for problem in problems:
            errors.print(f"[bold red]error:[/] {escape(problem)}")
        raise typer.Exit(USAGE)


def _stack_env(shared: SharedSettings) -> dict[str, str]:
    """Settings the children need that follow from the shared ones."""
    # One resolved list for every child: the transcribers refuse what the indexer would not.
    env: dict[str, str] = {"SCRIBE_TENANTS": ",".join(shared.tenants)}
    if "SCRIBE_INGEST_DATABASE_URL" not in os.environ:
        # Reads go through the SELECT-only role, on the database the indexer writes.
        parts = urlsplit(shared.database_url)
        host = parts.hostname or "127.0.0.1"
        netloc = f"scribe_reader@{host}:{parts.port}" if parts.port else f"scribe_reader@{host}"
        env["SCRIBE_INGEST_DATABASE_URL"] = parts._replace(netloc=netloc).geturl()
    if "SCRIBE_WEBHOOKS_DATABASE_URL" not in os.environ:
        # The dispatcher reads endpoints through the same SELECT-only role.
        env["SCRIBE_WEBHOOKS_DATABASE_URL"] = env.get(
            "SCRIBE_INGEST_DATABASE_URL", os.environ.get("SCRIBE_INGEST_DATABASE_URL", "")
        )
    return env


def transcriber_specs(
    env: dict[str, str], transcribers: int | Mapping[str, int], cores: int
) -> list[ChildSpec]:
    """The transcriber children: N of the configured model, or each pool's workers, each
    with its model (`SCRIBE_TRANSCRIBER_MODEL`), the default model and its own health port."""
    plan: list[tuple[str | None, int]]
    if isinstance(transcribers, int):
        plan = [(None, n) for n in range(1, transcribers + 1)]
    else:
        plan = [(model, n) for model, count in transcribers.items() for n in range(1, count + 1)]
    threads = str(max(1, cores // len(plan)))
    specs = []
    for port, (model, n) in enumerate(plan, start=9111):
        # One health port each (9111, 9112, ...): replicas share this host.
        child = {
            **env,
            "SCRIBE_TRANSCRIBER_CPU_THREADS": threads,
            "SCRIBE_TRANSCRIBER_HEALTH_PORT": str(port),
        }
        name = f"transcriber-{n}"
        if model is not None:
            child["SCRIBE_TRANSCRIBER_MODEL"] = model
            name = f"transcriber-{model}-{n}"
        specs.append(ChildSpec(name, console_script("scribe-transcriber"), child))
    return specs


def pool_env(pools: Mapping[str, int]) -> dict[str, str]:
    """What every child must agree on for these pools: the default, and what ingest serves."""
    return {
        "SCRIBE_TRANSCRIBER_DEFAULT_MODEL": next(iter(pools)),
        "SCRIBE_INGEST_SERVED_MODELS": json.dumps(list(pools)),
    }


async def start_stack(supervisor: Supervisor, transcribers: int | Mapping[str, int]) -> int:
    """Migrate, then start the indexer, transcribers (a count of the default model, or
    pools), webhooks and ingest; 0 when started."""
    shared = SharedSettings()
    env = _stack_env(shared)
    if not isinstance(transcribers, int):
        env |= pool_env(transcribers)
    cores = default_transcribers()
    supervisor.say("scribe", "applying database migrations")
    code = await supervisor.run_once(
        ChildSpec("migrate", [*console_script("scribe-indexer"), "migrate"], env)
    )
    if code != 0:
        supervisor.say("scribe", f"migrations failed (exit {code}); not starting", "red")
        return code
    await supervisor.start(ChildSpec("indexer", [*console_script("scribe-indexer"), "run"], env))
    for spec in transcriber_specs(env, transcribers, cores):
        await supervisor.start(spec)
    await supervisor.start(ChildSpec("webhooks", console_script("scribe-webhooks"), env))
    await supervisor.start(ChildSpec("ingest", console_script("scribe-ingest"), env))
    return 0


def _stop_event() -> asyncio.Event:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    return stop


async def _until_ready(supervisor: Supervisor, client: ScribeClient, within: float) -> bool:
    """Wait for ingest's /readyz; False if a child died or time ran out."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if any(c.process.returncode is not None for c in supervisor.children):
            return False
        if await asyncio.to_thread(client.ready):
            return True
        await asyncio.sleep(0.3)
    return False


async def _up(transcribers: int | Mapping[str, int]) -> int:
    supervisor = Supervisor(console)
    stop = _stop_event()
    code = await start_stack(supervisor, transcribers)
    if code != 0:
        return code
    client = ScribeClient(CliSettings())
    exited: asyncio.Task[Any] = asyncio.create_task(supervisor.supervise())  # crash loop
    stopping: asyncio.Task[bool] = asyncio.create_task(stop.wait())
    ready_announced = False
    try:
        while not exited.done() and not stopping.done():
            if not ready_announced and await asyncio.to_thread(client.ready):
                ready_announced = True
                api = CliSettings().api_url
                supervisor.say(
                    "scribe",
                    f"ready: API {api} (docs {api}/docs). "
                    "Try `uv run scribe submit FILE --wait`. Ctrl-C stops everything.",
                    "bold green",
                )
            await asyncio.wait({exited, stopping}, timeout=0.5)
    finally:
        client.close()
    if exited.done():
        child = exited.result()
        supervisor.say(
            "scribe",
            f"{child.spec.name} exited with {child.process.returncode}; stopping the stack",
            "red",
        )
    else:
        exited.cancel()
        supervisor.say("scribe", "stopping (waiting for jobs in hand)")
    await supervisor.stop_all()
    return 1 if exited.done() and not stopping.done() else 0


def _demo_audio() -> Path:
    """JFK's inaugural line from ../shared when present, else speech made with Festival."""
    root = Path(__file__).resolve().parents[4]
    shared_clip = root.parent / "shared" / "audio" / "jfk.flac"
    if shared_clip.exists():
        return shared_clip
    target = root / ".scribe" / "demo" / "welcome.wav"
    if not target.exists():
        text2wave = shutil.which("text2wave")
        if text2wave is None:
            raise CliError("no audio given and no text2wave to make some: pass a FILE", USAGE)
        target.parent.mkdir(parents=True, exist_ok=True)
        script = target.with_suffix(".txt")
        script.write_text(DEMO_SCRIPT)
        subprocess.run(
            [text2wave, "-eval", "(voice_cmu_us_slt_arctic_hts)", str(script), "-o", str(target)],
            check=True,
            capture_output=True,
        )
    return target


def pick_query(transcript: str) -> str:
    """The longest word of the transcript: rare enough to make a telling search."""
    words = re.findall(r"[A-Za-z']{3,}", transcript)
    return max(words, key=len).strip("'").lower() if words else "the"


async def _demo(path: Path, query: str | None, keep: bool) -> int:
    log_dir = Path(".scribe") / "logs"
    supervisor = Supervisor(console, log_dir=log_dir)
    stop = _stop_event()
    console.print(f"[bold]starting the stack[/] (service logs in {escape(str(log_dir))}/)")
    code = await start_stack(supervisor, transcribers=1)
    if code != 0:
        return code
    client = ScribeClient(CliSettings())
    try:
        if not await _until_ready(supervisor, client, within=180):
            errors.print(
                f"[bold red]the stack did not become ready[/]; see {escape(str(log_dir))}/"
            )
            return 1
        console.print(f"[bold green]ready[/]: API {escape(CliSettings().api_url)}/docs")
        job = await asyncio.to_thread(
            client.submit, path, language=None, model=None, word_timestamps=True
        )
        job_id = str(job["id"])
        console.print(f"[bold]{escape(path.name)}[/] → job [cyan]{escape(job_id)}[/]")
        if await asyncio.to_thread(follow, client, {job_id: path}, 900.0):
            return 1
        text = await asyncio.to_thread(client.export, job_id, "txt")
        term = query or pick_query(text)
        result = await asyncio.to_thread(client.search, term, 5)
        console.rule(escape(f"search: {term}"))
        for hit in result.get("hits", []):
            console.print(hit_line(hit))
        if not any(hit["job_id"] == job_id for hit in result.get("hits", [])):
            errors.print(f"[yellow]no hit for {escape(repr(term))} in this job[/]")
            return 1
        if keep:
            console.print("the stack keeps running; Ctrl-C stops it")
            await stop.wait()
        return 0
    finally:
        client.close()
        console.print("stopping the stack")
        await supervisor.stop_all()
