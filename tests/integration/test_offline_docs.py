"""`/docs` and `/redoc` of a real running ingest, rendered by headless Chromium, offline.

FastAPI's default pages load Swagger UI and ReDoc from a CDN and render blank without
internet. Here a real `scribe-ingest` process serves them from local assets; Chromium
renders each page (its JavaScript run) and the test finds the API's operations in the
rendered DOM. Chromium's own network log (`--log-net-log`) proves no request of the page
left the machine: every URL the page loaded or initiated is on the ingest's address.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from tests.support import probes
from tests.support.ports import free_port
from tests.support.stack import BIN, start_process, stop_processes
from tests.support.waiting import eventually

pytestmark = pytest.mark.integration

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# Swagger UI and ReDoc each show these, once their JavaScript has rendered the schema.
OPERATIONS = ("/v1/transcriptions", "/v1/audio/transcriptions", "/v1/models", "/v1/search")
SUMMARIES = (
    "Submit audio for transcription",
    "OpenAI-compatible: transcribe audio and wait for the text",
)


@pytest.fixture
def ingest(amqp_url: str, database_url: str, tmp_path: Path) -> Iterator[str]:
    port = free_port()
    env = {
        **os.environ,
        "SCRIBE_AMQP_URL": amqp_url,
        "SCRIBE_MEDIA_ROOT": str(tmp_path / "media"),
        "SCRIBE_INGEST_PORT": str(port),
        "SCRIBE_INGEST_DATABASE_URL": database_url,
        "SCRIBE_LOG_FORMAT": "json",
    }
    process = start_process([str(BIN / "scribe-ingest")], env, tmp_path / "ingest.log")
    base = f"http://127.0.0.1:{port}"
    try:
        eventually(
            lambda: probes.get(f"{base}/readyz", timeout=2).status_code == 200,
            within=60,
            interval=0.2,
            what=lambda: f"ingest ready\n{(tmp_path / 'ingest.log').read_text()[-3000:]}",
            ignoring=(httpx.TransportError,),
        )
        yield base
    finally:
        stop_processes([process], timeout=20)


def render(url: str, workdir: Path) -> tuple[str, list[str]]:
    """The page's DOM after its scripts ran, and every URL Chromium requested for it."""
    assert CHROMIUM, "chromium is not installed: scripts/bootstrap installs it"
    net_log = workdir / "net-log.json"
    result = subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",  # tests may run as root
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-default-apps",
            f"--user-data-dir={workdir / 'profile'}",
            f"--log-net-log={net_log}",
            "--virtual-time-budget=20000",
            "--dump-dom",
            url,
        ],
        capture_output=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stderr.decode(errors="replace")[-3000:]
    log = json.loads(net_log.read_text())
    start_job = log["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"]
    origin = "{0.scheme}://{0.netloc}".format(urlsplit(url))
    # The page's requests: its own load, and whatever it initiated, wherever it went.
    # Chromium's background services (clock, updater, accounts) start requests of no
    # origin; they are the browser's, not the page's, and the page's are what is checked.
    requested = [
        params["url"]
        for event in log["events"]
        if event["type"] == start_job
        and (params := event.get("params", {})).get("url")
        and (params.get("request_type") == "main frame" or params.get("initiator") == origin)
    ]
    return result.stdout.decode(), requested


def _local_only(base: str, dom: str, requested: list[str]) -> None:
    here = urlsplit(base).netloc
    fetched = {urlsplit(u).netloc for u in requested if u.startswith(("http:", "https:"))}
    assert fetched == {here}, sorted(requested)
    # And nothing on the page points elsewhere for a later click to fetch.
    assets = re.findall(r'<(?:script|link|img)\b[^>]*\b(?:src|href)="([^"]+)"', dom)
    assert assets
    assert all(a.startswith("/") or urlsplit(a).netloc == here for a in assets), assets


@pytest.mark.parametrize("page", ["docs", "redoc"])
def test_docs_render_offline_with_every_operation(ingest: str, tmp_path: Path, page: str) -> None:
    dom, requested = render(f"{ingest}/{page}", tmp_path)

    for path in OPERATIONS:
        assert path in dom, f"{path} not rendered in /{page}"
    for summary in SUMMARIES:
        assert summary in dom, f"{summary!r} not rendered in /{page}"
    assert f"{ingest}/openapi.json" in requested
    _local_only(ingest, dom, requested)
    print(f"/{page}: {len(dom)} characters rendered, {len(requested)} URLs, all local")
