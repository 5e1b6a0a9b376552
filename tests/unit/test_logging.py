"""Log lines never carry a secret or a frame's locals, in either format, and stay short."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from io import StringIO

import pytest
import structlog

from scribe_runtime.logging import configure_logging

API_KEY = "scribe_k3y-0f-the-caller-7d1c9a"
DB_PASSWORD = "pg-passw0rd-91b2"
AMQP_PASSWORD = "amqp-passw0rd-5e6f"
DIGEST = "6f0c" * 16  # a configured key digest
LOCAL_MARKER = "only-in-a-frame-local-3a8e"


@pytest.fixture
def logged(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[StringIO]:
    """Logging configured in the format of the test's parameter, into a buffer."""
    monkeypatch.setenv("SCRIBE_INGEST_API_KEYS", f'{{"{DIGEST}": "acme"}}')
    configure_logging("ingest", "DEBUG", request.param)
    sink = StringIO()
    handler = logging.getLogger().handlers[0]
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(sink)
    try:
        yield sink
    finally:
        structlog.reset_defaults()
        logging.getLogger().handlers.clear()


def _fail_deep(depth: int, url: str) -> None:
    headers = {"authorization": f"Bearer {API_KEY}"}  # noqa: F841 - a local the frame holds
    keyring = {DIGEST: "acme"}  # noqa: F841
    marker = LOCAL_MARKER  # noqa: F841
    if depth:
        _fail_deep(depth - 1, url)
    raise ConnectionError(f"cannot reach {url}")


@pytest.mark.parametrize("logged", ["console", "json"], indirect=True)
def test_a_traceback_shows_no_locals_no_secret_and_stays_short(logged: StringIO) -> None:
    log = structlog.get_logger("scribe.test")
    url = f"postgresql://scribe:{DB_PASSWORD}@db.internal:5432/scribe"
    try:
        _fail_deep(200, url)
    except ConnectionError:
        log.exception("unhandled_error", job_id="j-1")
    try:
        _fail_deep(3, f"amqp://guest:{AMQP_PASSWORD}@rabbit:5672/")
    except ConnectionError as exc:
        logging.getLogger("aio_pika").error("connection lost", exc_info=exc)
    text = logged.getvalue()
    assert "unhandled_error" in text
    assert "_fail_deep" in text
    assert "cannot reach postgresql://scribe:" in text
    for secret in (API_KEY, DB_PASSWORD, AMQP_PASSWORD, DIGEST, LOCAL_MARKER):
        assert secret not in text, f"{secret} leaked"
    assert "keyring" not in text
    assert "headers" not in text
    assert len(text.splitlines()) <= 150  # two events, 200 frames deep: bounded


@pytest.mark.parametrize("logged", ["console", "json"], indirect=True)
def test_secret_values_are_redacted_in_any_line(logged: StringIO) -> None:
    log = structlog.get_logger("scribe.test")
    log.info(
        "request_seen",
        authorization=f"Bearer {API_KEY}",
        headers={"Authorization": f"Bearer {API_KEY}", "accept": "audio/*"},
        database_url=f"postgresql://scribe:{DB_PASSWORD}@127.0.0.1/scribe",
        api_keys={DIGEST: "acme"},
        note=f"retrying with password={DB_PASSWORD} and key {API_KEY}",
        keys=[DIGEST],
        role="scribe_transcriber",  # an identifier, not a key: stays readable
    )
    logging.getLogger("asyncpg").warning("dsn amqp://u:%s@h/ failed", AMQP_PASSWORD)
    text = logged.getvalue()
    assert "request_seen" in text
    assert "audio/*" in text
    assert "127.0.0.1/scribe" in text
    assert "scribe_transcriber" in text
    for secret in (API_KEY, DB_PASSWORD, AMQP_PASSWORD, DIGEST):
        assert secret not in text, f"{secret} leaked"
    assert "[REDACTED]" in text


@pytest.mark.parametrize("logged", ["json", "console"], indirect=True)
def test_a_webhook_signing_secret_is_redacted_wherever_it_appears(logged: StringIO) -> None:
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    structlog.get_logger("scribe.test").warning(
        "event_rejected", detail=f"signing msg_1 with {secret} for http://127.0.0.1/h"
    )
    text = logged.getvalue()
    assert "event_rejected" in text
    assert secret.removeprefix("whsec_") not in text


@pytest.mark.parametrize("logged", ["json"], indirect=True)
def test_a_broken_log_call_does_not_print_its_secret_arguments(
    logged: StringIO, capsys: pytest.CaptureFixture[str]
) -> None:
    args = (f"password={DB_PASSWORD}",)
    record = logging.LogRecord("asyncpg", logging.ERROR, __file__, 1, "try %d failed", args, None)
    logging.getLogger().handlers[0].handle(record)  # what logger.error(...) would reach
    errors = capsys.readouterr().err
    assert "logging error in asyncpg" in errors
    assert DB_PASSWORD not in errors + logged.getvalue()
