"""`scribe dlq list|replay`: the dead-letter queues, for an operator."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer
from rich.table import Column, Table

from scribe_cli import dlq
from scribe_cli.errors import usage_errors
from scribe_cli.output import console
from scribe_runtime.settings import SharedSettings
from scribe_runtime.topology import QueueSpec


def _queues(name: str | None) -> list[QueueSpec]:
    with usage_errors():  # an unknown queue name
        return dlq.select_queues(name)


def list_letters(
    queue: Annotated[str | None, typer.Option(help="Only this queue (or its .dlq).")] = None,
) -> None:
    """Count dead letters per queue, with their reasons and job ids."""
    specs = _queues(queue)
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


def replay(
    queue: Annotated[str, typer.Option(help="The queue whose dead letters to replay.")],
    job: Annotated[list[str] | None, typer.Option(help="Only these job ids.")] = None,
) -> None:
    """Send dead letters back to their queue (ids kept; effects are idempotent)."""
    specs = _queues(queue)
    replayed = asyncio.run(dlq.replay(SharedSettings().amqp_url, specs, set(job) if job else None))
    console.print(f"replayed {len(replayed)} message(s)")
