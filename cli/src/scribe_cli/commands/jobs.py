"""Jobs through the HTTP API (submit, status, cancel, delete, search, export) or the broker
(publish)."""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path
from typing import Annotated, Any
from uuid import uuid4

import typer
from rich.markup import escape
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from contracts import AudioUploadedV1, TranscriptionOptions
from scribe_cli.client import ApiError, ScribeClient
from scribe_cli.errors import USAGE, CliError, about
from scribe_cli.output import TERMINAL, console, error_text, errors, hit_line, progress_of
from scribe_cli.output import status_rows as job_rows
from scribe_cli.settings import CliSettings
from scribe_runtime.messaging import make_broker, publish_event
from scribe_runtime.settings import SharedSettings
from scribe_runtime.topology import declare_topology

FORMATS = ("srt", "vtt", "txt", "json")
POLL_SECONDS = 0.5
"""How often `--wait` asks the API (it has no push), at a pace it does not notice."""


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
            with about(path):
                job = client.submit(path, language=language, model=model, word_timestamps=words)
            jobs[str(job["id"])] = path
            console.print(
                f"[bold]{escape(path.name)}[/] → job [cyan]{escape(str(job['id']))}[/] "
                f"({escape(str(job['status']))})"
            )
        if wait:
            failed = follow(client, jobs, timeout)
            raise typer.Exit(1 if failed else 0)
    finally:
        client.close()


def follow(client: ScribeClient, jobs: dict[str, Path], timeout: float) -> int:
    """Progress bars driven by each job's real progress, then the transcripts; how many
    jobs failed or did not finish in time."""
    deadline = time.monotonic() + timeout
    final: dict[str, dict[str, Any]] = {}
    with Progress(
        TextColumn("{task.description}", markup=False),  # a file name, as written
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        TextColumn("{task.fields[status]}", markup=False),
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
                progress.update(tasks[job_id], completed=progress_of(job), status=status)
                if status in TERMINAL:
                    final[job_id] = job
            time.sleep(POLL_SECONDS)
    failed = 0
    for job_id, path in jobs.items():
        outcome = final.get(job_id)
        if outcome is None:
            errors.print(
                f"[yellow]{escape(path.name)}: still not finished after {timeout:.0f} s[/]"
            )
            failed += 1
        elif outcome["status"] == "failed":
            errors.print(f"[bold red]{escape(path.name)}: failed[/] {escape(error_text(outcome))}")
            failed += 1
        else:
            console.rule(escape(f"{path.name} ({job_id})"))
            # What was said, as said: "[laughs]" is no style tag.
            console.print(client.export(job_id, "txt").strip(), markup=False, highlight=False)
    return failed


def status(job_id: str) -> None:
    """Show a job's status, progress and error."""
    client = ScribeClient(CliSettings())
    try:
        job = client.job(job_id)
    finally:
        client.close()
    table = Table(show_header=False)
    for key, value in job_rows(job):
        table.add_row(key, escape(value))  # an error's message may quote anything
    console.print(table)


def cancel(job_id: str) -> None:
    """Cancel a queued or running job (a finished one cannot be: exit 1, `job_finished`)."""
    client = ScribeClient(CliSettings())
    try:
        answer = client.cancel(job_id)
    finally:
        client.close()
    console.print(
        f"cancel of job [cyan]{answer['id']}[/] requested (it was {answer['status']}); "
        "it shows as cancelled once applied"
    )


def delete(job_id: str) -> None:
    """Delete a job: its audio, transcript and every copy downstream. Cannot be undone."""
    client = ScribeClient(CliSettings())
    try:
        answer = client.delete(job_id)
    finally:
        client.close()
    console.print(
        f"deletion of job [cyan]{answer['id']}[/] requested; it answers not_found once applied"
    )


def search(
    query: Annotated[str, typer.Argument(help='Web-search syntax: words, "phrases", or, -not.')],
    limit: Annotated[int, typer.Option(min=1, max=100)] = 20,
) -> None:
    """Full-text search over every transcript; hits with the time they were said."""
    client = ScribeClient(CliSettings())
    try:
        result = client.search(query, limit)
    finally:
        client.close()
    hits = result.get("hits", [])
    if not hits:
        console.print("no hits")
        return
    for hit in hits:
        console.print(hit_line(hit))


def export(
    job_id: str,
    fmt: Annotated[str, typer.Option("--format", help="srt, vtt, txt or json")] = "srt",
    output: Annotated[Path | None, typer.Option("-o", "--output")] = None,
) -> None:
    """Export a transcript as SRT, WebVTT, text or JSON."""
    if fmt not in FORMATS:
        raise CliError(f"unknown format {fmt!r}; use srt, vtt, txt or json", USAGE)
    client = ScribeClient(CliSettings())
    try:
        text = client.export(job_id, fmt)
    finally:
        client.close()
    if output:
        output.write_text(text)
        console.print(f"wrote {escape(str(output))}")
    else:
        sys.stdout.write(text)


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
    shared = SharedSettings()
    asyncio.run(_publish(shared.amqp_url, event, shared.amqp_quorum_initial_group_size))
    console.print(f"published audio.uploaded.v1: job [cyan]{event.job_id}[/]")


async def _publish(amqp_url: str, event: AudioUploadedV1, group_size: int | None) -> None:
    await declare_topology(amqp_url, initial_group_size=group_size)
    broker = make_broker(amqp_url, service="scribe-cli")
    async with broker:
        await broker.connect()
        await publish_event(broker, event)
