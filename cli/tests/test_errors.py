"""The one error handler: each expected failure is one `error:` line and its exit code."""

from __future__ import annotations

import httpx
import pytest
import typer
from aio_pika.exceptions import AMQPConnectionError
from typer.testing import CliRunner

from scribe_cli.client import ApiError
from scribe_cli.errors import CliError, about, explain, handle_errors, usage_errors

pytestmark = pytest.mark.usefixtures("narrow_consoles")  # see the root conftest


def failing_with(error: Exception) -> typer.Typer:
    app = typer.Typer()

    @app.command()
    @handle_errors
    def fail() -> None:
        raise error

    return app


def run(error: Exception) -> tuple[int, str, str]:
    result = CliRunner().invoke(failing_with(error), [])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


def refused(url: str) -> httpx.ConnectError:
    return httpx.ConnectError("[Errno 111] Connection refused", request=httpx.Request("GET", url))


@pytest.mark.parametrize(
    ("error", "code", "message"),
    [
        (ApiError(404, "not_found", "no such job"), 1, "error: not_found: no such job"),
        (CliError("unknown format 'doc'", 2), 2, "error: unknown format 'doc'"),
        (
            refused("http://127.0.0.1:8000/v1/transcriptions/x"),
            1,
            "error: cannot reach the API at http://127.0.0.1:8000 ([Errno 111] Connection refused)",
        ),
        (
            httpx.ReadTimeout("timed out", request=httpx.Request("GET", "https://api.example/x")),
            1,
            "error: the API at https://api.example did not answer in time (timed out)",
        ),
        (
            AMQPConnectionError(111, "Connect call failed"),
            1,
            "error: cannot reach RabbitMQ",
        ),
        (ConnectionRefusedError(111, "refused"), 1, "error: cannot reach RabbitMQ"),
    ],
)
def test_expected_failures_are_one_line_on_stderr_and_an_exit_code(
    error: Exception, code: int, message: str
) -> None:
    exit_code, stdout, stderr = run(error)
    assert exit_code == code
    assert stderr.startswith(message), stderr
    assert stderr.count("error:") == 1
    assert "Traceback" not in stderr
    assert stdout == ""


def test_an_unexpected_failure_is_not_disguised() -> None:
    with pytest.raises(ZeroDivisionError):
        run(ZeroDivisionError("a bug"))


def test_the_api_address_in_a_message_never_carries_credentials() -> None:
    message = explain(refused("http://user:hunter2@api.internal:9000/v1/search?q=secret")).message
    assert "api.internal:9000" in message
    assert "hunter2" not in message
    assert "secret" not in message


def test_about_names_the_file_a_failure_was_about() -> None:
    with pytest.raises(CliError) as caught, about("talk.wav"):
        raise ApiError(413, "upload_too_large", "over 2 GiB")
    assert (caught.value.message, caught.value.code) == (
        "talk.wav: upload_too_large: over 2 GiB",
        1,
    )


def test_about_keeps_a_usage_error_a_usage_error() -> None:
    with pytest.raises(CliError) as caught, about("x"):
        raise CliError("bad", 2)
    assert caught.value.code == 2


def test_a_value_error_in_a_usage_block_exits_2() -> None:
    with pytest.raises(CliError) as caught, usage_errors():
        raise ValueError("unknown queue 'nope'")
    assert (caught.value.message, caught.value.code) == ("unknown queue 'nope'", 2)
