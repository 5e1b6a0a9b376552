"""`scribe`: run the stack locally, submit audio, follow it, search, export, operate."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit
from uuid import uuid4

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Column, Table

from contracts import AudioUploadedV1, TranscriptionOptions
from scribe_cli import dlq
from scribe_cli.client import ApiError, ScribeClient
from scribe_cli.settings import CliSettings
from scribe_cli.supervisor import ChildSpec, Supervisor, console_script
from scribe_runtime.messaging import make_broker, publish_event
from scribe_runtime.settings import SharedSettings
from scribe_runtime.topology import declare_topology

app = typer.Typer(
    help="Scribe: asynchronous, self-hosted transcription.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
dlq_app = typer.Typer(help="Dead-letter queues: list and replay.", no_args_is_help=True)
app.add_typer(dlq_app, name="dlq")

console = Console()
errors = Console(stderr=True)

TERMINAL = {"completed", "failed"}


def _fail(message: str, code: int = 1) -> typer.Exit:
    errors.print(f"[bold red]error:[/] {message}")
    return typer.Exit(code)


def _mmss(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes:02d}:{secs:02d}"


def _reachable(url: str, default_port: int) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection(
            (parts.hostname or "127.0.0.1", parts.port or default_port), timeout=3
        ):
            return True
    except OSError:
        return False


@app.command()
def up(
    transcribers: Annotated[
        int, typer.Option(min=1, max=64, help="Transcriber processes to run.")
    ] = 1,
) -> None:
    """Run the whole stack locally: migrations, indexer, transcriber(s), ingest."""
    _check_servers()
    raise typer.Exit(asyncio.run(_up(transcribers)))


def _check_servers() -> None:
    """Exit with a message that says how to start RabbitMQ/PostgreSQL when they are down."""
    shared = SharedSettings()
    problems = []
    if not _reachable(shared.amqp_url, 5672):
        problems.append(
            f"RabbitMQ is not reachable at {_redact(shared.amqp_url)}. Start one: "
            "`sudo rabbitmq-server -detached` (Debian/Ubuntu: `apt-get install rabbitmq-server`), "
            "or `docker compose up -d rabbitmq`; or set SCRIBE_AMQP_URL."
        )
    if not _reachable(shared.database_url, 5432):
        problems.append(
            f"PostgreSQL is not reachable at {_redact(shared.database_url)}. Start one: "
            "`sudo pg_ctlcluster 15 main start` (Debian: `apt-get install postgresql`), "
            "or `docker compose up -d postgres`; or set SCRIBE_DATABASE_URL."
        )
    if problems:
        for problem in problems:
            errors.print(f"[bold red]error:[/] {problem}")
        raise typer.Exit(2)


def _redact(url: str) -> str:
    parts = urlsplit(url)
    if parts.password:
        return url.replace(f":{parts.password}@", ":***@")
    return url


def _stack_env(shared: SharedSettings) -> dict[str, str]:
    """Settings the children need that follow from the shared ones."""
    env: dict[str, str] = {}
    if "SCRIBE_INGEST_DATABASE_URL" not in os.environ:
        # Reads go through the SELECT-only role, on the database the indexer writes.
        parts = urlsplit(shared.database_url)
        host = parts.hostname or "127.0.0.1"
        netloc = f"scribe_reader@{host}:{parts.port}" if parts.port else f"scribe_reader@{host}"
        env["SCRIBE_INGEST_DATABASE_URL"] = parts._replace(netloc=netloc).geturl()
    return env


async def start_stack(supervisor: Supervisor, transcribers: int) -> int:
    """Migrate, then start the indexer, the transcribers and ingest; 0 when started."""
    shared = SharedSettings()
    env = _stack_env(shared)
    cores = os.cpu_count() or 1
    threads = str(max(1, cores // transcribers))
    supervisor.say("scribe", "applying database migrations")
    code = await supervisor.run_once(
        ChildSpec("migrate", [*console_script("scribe-indexer"), "migrate"], env)
    )
    if code != 0:
        supervisor.say("scribe", f"migrations failed (exit {code}); not starting", "red")
        return code
    await supervisor.start(ChildSpec("indexer", [*console_script("scribe-indexer"), "run"], env))
    for n in range(1, transcribers + 1):
        await supervisor.start(
            ChildSpec(
                f"transcriber-{n}",
                console_script("scribe-transcriber"),
                # One health port each (9111, 9112, ...): replicas share this host.
                {
                    **env,
                    "SCRIBE_TRANSCRIBER_CPU_THREADS": threads,
                    "SCRIBE_TRANSCRIBER_HEALTH_PORT": str(9110 + n),
                },
            )
        )
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


async def _up(transcribers: int) -> int:
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


DEMO_SCRIPT = (
    "Welcome to Scribe. This recording was made on your machine, transcribed by a worker, "
    "and indexed so that every word can be found again at the second it was said."
)


@app.command()
def demo(
    file: Annotated[
        Path | None,
        typer.Argument(exists=True, dir_okay=False, readable=True, help="Audio to transcribe."),
    ] = None,
    query: Annotated[str | None, typer.Option(help="What to search for afterwards.")] = None,
    keep: Annotated[bool, typer.Option("--keep", help="Leave the stack running.")] = False,
) -> None:
    """The main job in one command: run the stack, transcribe a real file, search it."""
    _check_servers()
    raise typer.Exit(asyncio.run(_demo(file or _demo_audio(), query, keep)))


def _demo_audio() -> Path:
    """JFK's inaugural line from ../shared when present, else speech made with Festival."""
    root = Path(__file__).resolve().parents[3]
    shared_clip = root.parent / "shared" / "audio" / "jfk.flac"
    if shared_clip.exists():
        return shared_clip
    target = root / ".scribe" / "demo" / "welcome.wav"
    if not target.exists():
        text2wave = shutil.which("text2wave")
        if text2wave is None:
            raise _fail("no audio given and no text2wave to make some: pass a FILE", 2)
        target.parent.mkdir(parents=True, exist_ok=True)
        script = target.with_suffix(".txt")
        script.write_text(DEMO_SCRIPT)
        subprocess.run(
            [text2wave, "-eval", "(voice_cmu_us_slt_arctic_hts)", str(script), "-o", str(target)],
            check=True,
            capture_output=True,
        )
    return target


def _pick_query(transcript: str) -> str:
    """The longest word of the transcript: rare enough to make a telling search."""
    words = re.findall(r"[A-Za-z']{3,}", transcript)
    return max(words, key=len).strip("'").lower() if words else "the"


async def _demo(path: Path, query: str | None, keep: bool) -> int:
    log_dir = Path(".scribe") / "logs"
    supervisor = Supervisor(console, log_dir=log_dir)
    stop = _stop_event()
    console.print(f"[bold]starting the stack[/] (service logs in {log_dir}/)")
    code = await start_stack(supervisor, transcribers=1)
    if code != 0:
        return code
    client = ScribeClient(CliSettings())
    try:
        if not await _until_ready(supervisor, client, within=180):
            errors.print(f"[bold red]the stack did not become ready[/]; see {log_dir}/")
            return 1
        console.print(f"[bold green]ready[/]: API {CliSettings().api_url}/docs")
        job = await asyncio.to_thread(
            client.submit, path, language=None, model=None, word_timestamps=True
        )
        job_id = str(job["id"])
        console.print(f"[bold]{path.name}[/] → job [cyan]{job_id}[/]")
        if await asyncio.to_thread(_follow, client, {job_id: path}, 900.0):
            return 1
        text = await asyncio.to_thread(client.export, job_id, "txt")
        term = query or _pick_query(text)
        result = await asyncio.to_thread(client.search, term, 5)
        console.rule(f"search: {term}")
        for hit in result.get("hits", []):
            snippet = str(hit["snippet"]).replace("<mark>", "[bold yellow]")
            snippet = snippet.replace("</mark>", "[/]")
            console.print(f"[cyan]{hit['job_id']}[/] [green]{_mmss(hit['start'])}[/]  {snippet}")
        if not any(hit["job_id"] == job_id for hit in result.get("hits", [])):
            errors.print(f"[yellow]no hit for {term!r} in this job[/]")
            return 1
        if keep:
            console.print("the stack keeps running; Ctrl-C stops it")
            await stop.wait()
        return 0
    finally:
        client.close()
        console.print("stopping the stack")
        await supervisor.stop_all()


@app.command()
def submit(
    files: Annotated[list[Path], typer.Argument(exists=True, dir_okay=False, readable=True)],
    wait: Annotated[
        bool, typer.Option("--wait", help="Follow progress; print transcripts.")
    ] = False,
    language: Annotated[str | None, typer.Option(help="ISO code, e.g. en.")] = None,
    model: Annotated[str | None, typer.Option(help="Speech model name.")] = None,
    words: Annotated[bool, typer.Option("--words", help="Word timestamps.")] = False,
    timeout: Annotated[float, typer.Option(help="Seconds to wait with --wait.")] = 3600.0,
) -> None:
    """Upload audio files for transcription."""
    client = ScribeClient(CliSettings())
    try:
        jobs: dict[str, Path] = {}
        for path in files:
            try:
                job = client.submit(path, language=language, model=model, word_timestamps=words)
            except ApiError as exc:
                raise _fail(f"{path}: {exc.code}: {exc.message}") from None
            jobs[str(job["id"])] = path
            console.print(f"[bold]{path.name}[/] → job [cyan]{job['id']}[/] ({job['status']})")
        if wait:
            failed = _follow(client, jobs, timeout)
            raise typer.Exit(1 if failed else 0)
    finally:
        client.close()


def _follow(client: ScribeClient, jobs: dict[str, Path], timeout: float) -> int:
    """Progress bars driven by each job's real progress; then the transcripts."""
    deadline = time.monotonic() + timeout
    final: dict[str, dict[str, Any]] = {}
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        TextColumn("{task.fields[status]}"),
        TimeElapsedColumn(),
        console=console,
    ) as progress:
        tasks: dict[str, TaskID] = {
            job_id: progress.add_task(path.name, total=1.0, status="queued")
            for job_id, path in jobs.items()
        }
        while len(final) < len(jobs) and time.monotonic() < deadline:
            for job_id in jobs:
                if job_id in final:
                    continue
                try:
                    job = client.job(job_id)
                except ApiError as exc:
                    if exc.status == 404:  # accepted, not yet indexed
                        continue
                    raise
                status = str(job.get("status"))
                done = 1.0 if status == "completed" else float(job.get("progress") or 0.0)
                progress.update(tasks[job_id], completed=done, status=status)
                if status in TERMINAL:
                    final[job_id] = job
            time.sleep(0.5)
    failed = 0
    for job_id, path in jobs.items():
        outcome = final.get(job_id)
        if outcome is None:
            errors.print(f"[yellow]{path.name}: still not finished after {timeout:.0f} s[/]")
            failed += 1
        elif outcome["status"] == "failed":
            error = outcome.get("error") or {}
            errors.print(
                f"[bold red]{path.name}: failed[/] {error.get('code')}: {error.get('message')}"
            )
            failed += 1
        else:
            console.rule(f"{path.name} ({job_id})")
            console.print(client.export(job_id, "txt").strip())
    return failed


@app.command()
def status(job_id: str) -> None:
    """Show a job's status, progress and error."""
    client = ScribeClient(CliSettings())
    try:
        job = client.job(job_id)
    except ApiError as exc:
        raise _fail(f"{exc.code}: {exc.message}") from None
    finally:
        client.close()
    table = Table(show_header=False)
    for key in ("id", "status", "progress", "language", "duration_seconds", "model"):
        if job.get(key) is not None:
            table.add_row(key, str(job[key]))
    if job.get("error"):
        table.add_row("error", f"{job['error'].get('code')}: {job['error'].get('message')}")
    console.print(table)


@app.command()
def search(
    query: Annotated[str, typer.Argument(help='Web-search syntax: words, "phrases", or, -not.')],
    limit: Annotated[int, typer.Option(min=1, max=100)] = 20,
) -> None:
    """Full-text search over every transcript; hits with the time they were said."""
    client = ScribeClient(CliSettings())
    try:
        result = client.search(query, limit)
    except ApiError as exc:
        raise _fail(f"{exc.code}: {exc.message}") from None
    finally:
        client.close()
    hits = result.get("hits", [])
    if not hits:
        console.print("no hits")
        return
    for hit in hits:
        snippet = (
            str(hit.get("snippet", "")).replace("<mark>", "[bold yellow]").replace("</mark>", "[/]")
        )
        console.print(f"[cyan]{hit['job_id']}[/] [green]{_mmss(float(hit['start']))}[/]  {snippet}")


@app.command()
def export(
    job_id: str,
    fmt: Annotated[str, typer.Option("--format", help="srt, vtt, txt or json")] = "srt",
    output: Annotated[Path | None, typer.Option("-o", "--output")] = None,
) -> None:
    """Export a transcript as SRT, WebVTT, text or JSON."""
    if fmt not in {"srt", "vtt", "txt", "json"}:
        raise _fail(f"unknown format {fmt!r}; use srt, vtt, txt or json", 2)
    client = ScribeClient(CliSettings())
    try:
        text = client.export(job_id, fmt)
    except ApiError as exc:
        raise _fail(f"{exc.code}: {exc.message}") from None
    finally:
        client.close()
    if output:
        output.write_text(text)
        console.print(f"wrote {output}")
    else:
        sys.stdout.write(text)


@app.command()
def publish(
    uri: Annotated[str, typer.Option(help="Audio URI: file:// under the media root, or https://")],
    tenant: Annotated[
        str | None, typer.Option(help="Tenant id (default SCRIBE_TENANT_ID).")
    ] = None,
    language: Annotated[str | None, typer.Option()] = None,
    model: Annotated[str | None, typer.Option()] = None,
    words: Annotated[bool, typer.Option("--words")] = False,
) -> None:
    """Publish an `audio.uploaded.v1` event straight to RabbitMQ, as an external producer."""
    event = AudioUploadedV1(
        job_id=uuid4(),
        tenant_id=tenant or CliSettings().tenant_id,
        correlation_id=uuid4(),
        producer="scribe-cli",
        audio_uri=uri,  # type: ignore[arg-type]
        options=TranscriptionOptions(language=language, model=model, word_timestamps=words),
    )
    asyncio.run(_publish(SharedSettings().amqp_url, event))
    console.print(f"published audio.uploaded.v1: job [cyan]{event.job_id}[/]")


async def _publish(amqp_url: str, event: AudioUploadedV1) -> None:
    await declare_topology(amqp_url)
    broker = make_broker(amqp_url, service="scribe-cli")
    async with broker:
        await broker.connect()
        await publish_event(broker, event)


@dlq_app.command("list")
def dlq_list(
    queue: Annotated[str | None, typer.Option(help="Only this queue (or its .dlq).")] = None,
) -> None:
    """Count dead letters per queue, with their reasons and job ids."""
    try:
        specs = dlq.select_queues(queue)
    except ValueError as exc:
        raise _fail(str(exc), 2) from None
    letters = asyncio.run(dlq.list_dead_letters(SharedSettings().amqp_url, specs))
    for spec in specs:
        mine = [letter for letter in letters if letter.queue == spec.name]
        console.print(f"[bold]{spec.dead_letter_queue}[/]: {len(mine)} message(s)")
        if mine:
            # Job ids whole, never wrapped: they are what `dlq replay --job` takes.
            table = Table(Column("job", no_wrap=True, min_width=36), "type", "code", "reason")
            for letter in mine:
                table.add_row(
                    letter.job_id or "-", letter.message_type or "-", letter.code, letter.reason
                )
            console.print(table)


@dlq_app.command("replay")
def dlq_replay(
    queue: Annotated[str, typer.Option(help="The queue whose dead letters to replay.")],
    job: Annotated[list[str] | None, typer.Option(help="Only these job ids.")] = None,
) -> None:
    """Send dead letters back to their queue (ids kept; effects are idempotent)."""
    try:
        specs = dlq.select_queues(queue)
    except ValueError as exc:
        raise _fail(str(exc), 2) from None
    replayed = asyncio.run(dlq.replay(SharedSettings().amqp_url, specs, set(job) if job else None))
    console.print(f"replayed {len(replayed)} message(s)")
