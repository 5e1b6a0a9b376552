"""`scribe`: run the stack locally, submit audio, follow it, search, export, operate."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
import time
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit
from uuid import uuid4

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

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
    raise typer.Exit(asyncio.run(_up(transcribers)))


def _redact(url: str) -> str:
    parts = urlsplit(url)
    if parts.password:
        return url.replace(f":{parts.password}@", ":***@")
    return url


async def _up(transcribers: int) -> int:
    supervisor = Supervisor(console)
    cores = os.cpu_count() or 1
    threads = str(max(1, cores // transcribers))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    supervisor.say("scribe", "applying database migrations")
    code = await supervisor.run_once(
        ChildSpec("migrate", [*console_script("scribe-indexer"), "migrate"])
    )
    if code != 0:
        supervisor.say("scribe", f"migrations failed (exit {code}); not starting", "red")
        return code

    await supervisor.start(ChildSpec("indexer", [*console_script("scribe-indexer"), "run"]))
    for n in range(1, transcribers + 1):
        await supervisor.start(
            ChildSpec(
                f"transcriber-{n}",
                console_script("scribe-transcriber"),
                {"SCRIBE_TRANSCRIBER_CPU_THREADS": threads},
            )
        )
    await supervisor.start(ChildSpec("ingest", console_script("scribe-ingest")))

    client = ScribeClient(CliSettings())
    exited: asyncio.Task[Any] = asyncio.create_task(supervisor.wait_any_exit())
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
        snippet = str(hit.get("snippet", "")).replace("<b>", "[bold yellow]").replace("</b>", "[/]")
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
            table = Table("job", "type", "code", "reason")
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
