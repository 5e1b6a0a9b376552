"""Root pytest configuration: nothing may reach a model hub during tests; shared fixtures."""

import os
from collections.abc import Iterator

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"

NARROW_COLUMNS = 60


@pytest.fixture
def narrow_consoles() -> Iterator[None]:
    """The CLI's consoles at a narrow, fixed width (CLI tests use it through `pytestmark`).

    A user's terminal may be narrow, and output that is piped or redirected is rendered at 80
    columns whatever `COLUMNS` says once the console exists. What a user greps for or copies
    (an error line, a written path, a job id, a dead letter's code) must come out whole at
    any width, so the tests pin one well under the lengths they print. Here, not in a
    conftest of `cli/tests`: that one would be imported as `tests.conftest`, the name of
    `tests/conftest.py`.
    """
    from scribe_cli.output import console, errors

    widths = console.width, errors.width
    console.width = errors.width = NARROW_COLUMNS
    try:
        yield
    finally:
        console.width, errors.width = widths
