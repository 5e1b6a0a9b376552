"""No secret reaches the logs: not the API key a request carries, not a database password.

Everything the ingest app logs at DEBUG (its own lines, FastStream's, asyncpg failures)
is captured while requests with a valid key, a wrong key and a read against an
unreachable password-protected database go through.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import structlog

from scribe_runtime.logging import configure_logging
from services.ingest.tests import samples
from tests.security.support import KEYS, auth, client, running_app

pytestmark = pytest.mark.integration

DB_PASSWORD = "s3cret-db-passw0rd"


async def test_keys_and_passwords_never_appear_in_log_lines(
    amqp_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging("ingest", "DEBUG", "json")
    try:
        reader_url = f"postgresql://scribe_reader:{DB_PASSWORD}@127.0.0.1:1/scribe"
        app_context = running_app(amqp_url, reader_url, tmp_path / "media")
        async with app_context as app, client(app, "acme") as http:
            accepted = await http.post(
                "/v1/transcriptions", files={"file": ("a.wav", samples.wav_bytes(1.0))}
            )
            assert accepted.status_code == 202
            refused = await http.post("/v1/transcriptions", files={"file": ("a.txt", b"x")})
            assert refused.status_code == 415
            unavailable = await http.get(accepted.headers["location"])
            assert unavailable.status_code == 503
            wrong = await http.get(
                "/v1/transcriptions", headers={"Authorization": "Bearer not-the-key-9f8e"}
            )
            assert wrong.status_code == 401
    finally:
        structlog.reset_defaults()
        logging.getLogger().handlers.clear()
    output = capsys.readouterr()
    logged = output.out + output.err
    assert "request_refused" in logged  # the lines were captured
    assert "read_database_unavailable" in logged
    for secret in (*KEYS.values(), "not-the-key-9f8e", DB_PASSWORD):
        assert secret not in logged
    assert auth("acme")["Authorization"] not in logged
