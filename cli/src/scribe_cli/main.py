"""`scribe`: run the stack locally, submit audio, follow it, search, export, operate.

The commands live in `scribe_cli.commands` by concern; this module assembles them, each
under the one error handler (`scribe_cli.errors.handle_errors`).
"""

from __future__ import annotations

import typer

from scribe_cli.commands import dlq, jobs, stack
from scribe_cli.errors import handle_errors

app = typer.Typer(
    help="Scribe: asynchronous, self-hosted transcription.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
dlq_app = typer.Typer(help="Dead-letter queues: list and replay.", no_args_is_help=True)
app.add_typer(dlq_app, name="dlq")

for command in (
    stack.up,
    stack.demo,
    jobs.submit,
    jobs.status,
    jobs.cancel,
    jobs.delete,
    jobs.search,
    jobs.export,
    jobs.publish,
):
    app.command()(handle_errors(command))
dlq_app.command("list")(handle_errors(dlq.list_letters))
dlq_app.command("replay")(handle_errors(dlq.replay))
