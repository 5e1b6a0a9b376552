"""How the CLI fails: one `error:` line on stderr and an exit code, not a traceback.

Every command runs under `handle_errors`; the failures a user can cause or meet (an API
error answer, an API or a broker that does not answer) are mapped here once.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import ParamSpec, TypeVar

import httpx
import typer
from aio_pika.exceptions import AMQPConnectionError
from rich.markup import escape

from scribe_cli.client import ApiError
from scribe_cli.output import errors

P = ParamSpec("P")
R = TypeVar("R")

USAGE = 2
"""The exit code of a usage error (typer's own for a bad option)."""


class CliError(Exception):
    """A failure the CLI reports as `error: <message>` and exits with `code`."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


EXPECTED: tuple[type[Exception], ...] = (
    CliError,
    ApiError,
    httpx.HTTPError,
    AMQPConnectionError,
    ConnectionError,
)


def _where(error: httpx.HTTPError) -> str:
    try:
        url = error.request.url
    except RuntimeError:  # an error raised outside a request
        return "the API"
    # Scheme, host and port only: never echo user-info or a query.
    return f"the API at {url.scheme}://{url.netloc.decode(errors='replace').rpartition('@')[2]}"


def explain(error: Exception) -> CliError:
    """The message and exit code for one of the `EXPECTED` failures."""
    match error:
        case CliError():
            return error
        case ApiError():
            return CliError(f"{error.code}: {error.message}")
        case httpx.TimeoutException():
            return CliError(f"{_where(error)} did not answer in time ({error})")
        case httpx.TransportError():
            return CliError(
                f"cannot reach {_where(error)} ({error}); is it running (`scribe up`)? "
                "SCRIBE_API_URL says where it is"
            )
        case AMQPConnectionError() | ConnectionError():
            return CliError(f"cannot reach RabbitMQ ({error}); SCRIBE_AMQP_URL says where it is")
    return CliError(str(error))


def report(error: CliError) -> typer.Exit:
    """Print `error` on stderr; the exit to raise."""
    errors.print(f"[bold red]error:[/] {escape(error.message)}")
    return typer.Exit(error.code)


def handle_errors(command: Callable[P, R]) -> Callable[P, R]:
    """`command`, its expected failures reported and turned into their exit code."""

    @functools.wraps(command)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return command(*args, **kwargs)
        except EXPECTED as error:
            raise report(explain(error)) from None

    return run


@contextmanager
def about(subject: object) -> Iterator[None]:
    """Prefix the message of an expected failure inside the block with `subject: `."""
    try:
        yield
    except EXPECTED as error:
        explained = explain(error)
        raise CliError(f"{subject}: {explained.message}", explained.code) from None


@contextmanager
def usage_errors() -> Iterator[None]:
    """A `ValueError` inside the block is the caller's mistake: exit 2 with its message."""
    try:
        yield
    except ValueError as error:
        raise CliError(str(error), USAGE) from None
