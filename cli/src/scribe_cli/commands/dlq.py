"""`scribe dlq list|replay`: the dead-letter queues, for an operator."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer

from scribe_cli import dlq
from scribe_cli.errors import usage_errors
from scribe_cli.output import console, one_line
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
            rows = [
                tuple(map(one_line, (d.job_id or "-", d.message_type or "-", d.code, d.reason)))
                for d in mine
            ]
            header, *lines = aligned([("job", "type", "code", "reason"), *rows])
            console.print(header, style="bold", markup=False, highlight=False)
            for line in lines:
                console.print(line, markup=False, highlight=False)


def aligned(rows: list[tuple[str, ...]]) -> list[str]:
    """Rows as lines of space-padded columns, the last one unpadded (as `docker ps` prints).

    Not a table: a table fits the console's width by cutting cells short, and output that
    is piped or redirected is 80 columns wide, so a job id (what `dlq replay --job` takes)
    or a dead letter's code would reach a file or `grep` cut. Each line here is whole.
    """
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    padded = (
        [cell.ljust(width) for cell, width in zip(row[:-1], widths, strict=True)] for row in rows
    )
    return ["  ".join([*cells, row[-1]]).rstrip() for cells, row in zip(padded, rows, strict=True)]


def replay(
    queue: Annotated[str, typer.Option(help="The queue whose dead letters to replay.")],
    job: Annotated[list[str] | None, typer.Option(help="Only these job ids.")] = None,
) -> None:
    """Send dead letters back to their queue (ids kept; effects are idempotent)."""
    specs = _queues(queue)
    replayed = asyncio.run(dlq.replay(SharedSettings().amqp_url, specs, set(job) if job else None))
    console.print(f"replayed {len(replayed)} message(s)")
