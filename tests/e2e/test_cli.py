"""The README's path, as a user runs it: `scribe up`, `scribe submit --wait`, `scribe demo`."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import httpx
import jiwer
import pytest
from whisper_normalizer.english import EnglishTextNormalizer

from tests.speech import SCRIPTS, synthesize
from tests.support import probes
from tests.support.ports import free_port
from tests.support.stack import BIN
from tests.support.waiting import eventually

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

normalise = EnglishTextNormalizer()


def cli_env(amqp_url: str, database_url: str, tmp_path: Path) -> dict[str, str]:
    port = free_port()
    return {
        **os.environ,
        "SCRIBE_AMQP_URL": amqp_url,
        "SCRIBE_DATABASE_URL": database_url,
        "SCRIBE_MEDIA_ROOT": str(tmp_path / "media"),
        "SCRIBE_INGEST_PORT": str(port),
        "SCRIBE_API_URL": f"http://127.0.0.1:{port}",
        "SCRIBE_INDEXER_HEALTH_PORT": "0",
        "HF_HUB_OFFLINE": "1",
        "COLUMNS": "200",
    }


def test_scribe_up_then_submit_wait_prints_the_transcript(
    amqp_url: str, database_url: str, tmp_path: Path
) -> None:
    env = cli_env(amqp_url, database_url, tmp_path)
    log = (tmp_path / "up.log").open("w+b")
    up = subprocess.Popen(
        [str(BIN / "scribe"), "up"], env=env, stdout=log, stderr=subprocess.STDOUT
    )
    try:

        def ready() -> bool:
            assert up.poll() is None, (tmp_path / "up.log").read_text()
            return probes.get(f"{env['SCRIBE_API_URL']}/readyz", timeout=2).status_code == 200

        eventually(
            ready,
            within=180,
            interval=0.5,
            what=lambda: f"`scribe up` ready:\n{(tmp_path / 'up.log').read_text()}",
            ignoring=(httpx.HTTPError,),
        )
        speech = synthesize(SCRIPTS["weather"], fmt="mp3")
        submitted = subprocess.run(
            [str(BIN / "scribe"), "submit", str(speech), "--wait"],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert submitted.returncode == 0, submitted.stdout + submitted.stderr
        transcript = submitted.stdout.rsplit("─", 1)[-1]
        assert jiwer.wer(normalise(SCRIPTS["weather"]), normalise(transcript)) < 0.15
    finally:
        up.send_signal(signal.SIGINT)  # Ctrl-C
        code = up.wait(60)
    output = (tmp_path / "up.log").read_text()
    assert code == 0, output
    # Every service's lines came through, prefixed by its name.
    for name in ("indexer", "transcriber-1", "ingest"):
        assert f"{name:<14}|" in output


def test_scribe_demo_runs_the_whole_main_job(
    amqp_url: str, database_url: str, tmp_path: Path
) -> None:
    env = cli_env(amqp_url, database_url, tmp_path)
    speech = synthesize(SCRIPTS["meeting"], fmt="wav")
    demo = subprocess.run(
        [str(BIN / "scribe"), "demo", str(speech), "--query", "release date"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=400,
    )
    assert demo.returncode == 0, demo.stdout + demo.stderr
    assert "search: release date" in demo.stdout
    assert "mobile application" in demo.stdout.lower()


def test_scribe_up_says_how_to_start_a_missing_broker(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "SCRIBE_AMQP_URL": f"amqp://guest:guest@127.0.0.1:{free_port()}/",
        "COLUMNS": "200",
    }
    result = subprocess.run(
        [str(BIN / "scribe"), "up"], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    assert "RabbitMQ is not reachable" in result.stderr
    assert "rabbitmq-server" in result.stderr
