"""The commands as a user runs them, against a fake ingest API: flags, output, exit codes."""

from __future__ import annotations

import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner, Result

from scribe_cli.client import ScribeClient
from scribe_cli.commands import jobs
from scribe_cli.main import app
from scribe_cli.settings import CliSettings

pytestmark = pytest.mark.usefixtures("narrow_consoles")  # see the root conftest

Handler = Callable[[httpx.Request], httpx.Response]


class FakeApi:
    """Answers the client's requests from a handler; records what was asked."""

    def __init__(self) -> None:
        self.handler: Handler = lambda request: httpx.Response(500)
        self.requests: list[httpx.Request] = []

    def client(self, settings: CliSettings, timeout: float = 60.0) -> ScribeClient:
        client = ScribeClient(settings, timeout)
        client.http.close()

        def record(request: httpx.Request) -> httpx.Response:
            self.requests.append(request)
            return self.handler(request)

        client.http = httpx.Client(
            base_url=settings.api_url,
            headers=client.http.headers,
            transport=httpx.MockTransport(record),
        )
        return client


@pytest.fixture
def api(monkeypatch: pytest.MonkeyPatch) -> FakeApi:
    fake = FakeApi()
    monkeypatch.setattr(jobs, "ScribeClient", fake.client)
    monkeypatch.setattr(jobs, "POLL_SECONDS", 0.0)
    return fake


def scribe(*args: str, **env: str) -> Result:
    runner = CliRunner(env={"SCRIBE_API_KEY": "k-1", **env})
    return runner.invoke(app, list(args))


def error(status: int, code: str, message: str) -> httpx.Response:
    return httpx.Response(status, json={"code": code, "message": message})


@pytest.fixture
def audio(tmp_path: Path) -> Path:
    path = tmp_path / "talk.wav"
    path.write_bytes(b"RIFF....WAVE")
    return path


def test_status_prints_the_job_and_sends_the_key(api: FakeApi) -> None:
    api.handler = lambda r: httpx.Response(
        200, json={"id": "j-1", "status": "processing", "progress": 0.25, "model": "tiny.en"}
    )
    result = scribe("status", "j-1")
    assert result.exit_code == 0, result.output
    assert api.requests[0].url.path == "/v1/transcriptions/j-1"
    assert api.requests[0].headers["authorization"] == "Bearer k-1"
    for row in (("id", "j-1"), ("status", "processing"), ("progress", "0.25")):
        assert any(row[0] in line and row[1] in line for line in result.stdout.splitlines())


def test_status_of_an_unknown_job_is_the_api_error_and_exit_1(api: FakeApi) -> None:
    api.handler = lambda r: error(404, "not_found", "no transcription j-9")
    result = scribe("status", "j-9")
    assert result.exit_code == 1
    assert result.stderr.strip() == "error: not_found: no transcription j-9"
    assert result.stdout == ""


def test_cancel_posts_to_the_job_and_says_it_was_requested(api: FakeApi) -> None:
    api.handler = lambda r: httpx.Response(
        202, json={"id": "j-1", "requested": "cancel", "status": "processing", "links": {}}
    )
    result = scribe("cancel", "j-1")
    assert result.exit_code == 0, result.output
    assert (api.requests[0].method, api.requests[0].url.path) == (
        "POST",
        "/v1/transcriptions/j-1/cancel",
    )
    assert "cancel of job j-1 requested (it was processing)" in result.stdout


def test_cancel_of_a_finished_job_is_the_api_error_and_exit_1(api: FakeApi) -> None:
    api.handler = lambda r: error(409, "job_finished", "transcription j-1 is completed")
    result = scribe("cancel", "j-1")
    assert result.exit_code == 1
    assert result.stderr.strip() == "error: job_finished: transcription j-1 is completed"
    assert result.stdout == ""


def test_delete_sends_delete_and_says_it_was_requested(api: FakeApi) -> None:
    api.handler = lambda r: httpx.Response(
        202, json={"id": "j-1", "requested": "delete", "status": "completed", "links": {}}
    )
    result = scribe("delete", "j-1")
    assert result.exit_code == 0, result.output
    assert (api.requests[0].method, api.requests[0].url.path) == (
        "DELETE",
        "/v1/transcriptions/j-1",
    )
    assert "deletion of job j-1 requested" in result.stdout


def test_delete_of_an_unknown_job_is_not_found_and_exit_1(api: FakeApi) -> None:
    api.handler = lambda r: error(404, "not_found", "no transcription j-9")
    result = scribe("delete", "j-9")
    assert result.exit_code == 1
    assert result.stderr.strip() == "error: not_found: no transcription j-9"


def test_an_api_that_does_not_answer_is_a_message_not_a_traceback(api: FakeApi) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("[Errno 111] Connection refused", request=request)

    api.handler = refuse
    result = scribe("search", "budget", SCRIBE_API_URL="http://127.0.0.1:8123")
    assert result.exit_code == 1
    assert result.stderr.startswith("error: cannot reach the API at http://127.0.0.1:8123")


def test_search_prints_each_hit_with_its_time_or_no_hits(api: FakeApi) -> None:
    hits = [{"job_id": "j-1", "start": 754.0, "snippet": "the <mark>budget</mark> vote"}]
    api.handler = lambda r: httpx.Response(200, json={"hits": hits})
    result = scribe("search", "budget", "--limit", "5")
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "j-1 12:34  the budget vote"
    assert dict(api.requests[0].url.params) == {"q": "budget", "limit": "5"}

    api.handler = lambda r: httpx.Response(200, json={"hits": []})
    assert scribe("search", "nothing").stdout.strip() == "no hits"


@pytest.mark.parametrize(
    "args",
    [
        ["search", "x", "--limit", "0"],
        ["search", "x", "--limit", "101"],
        ["up", "--transcribers", "0"],
        ["submit", "/no/such/file.wav"],
        ["status"],
        ["dlq", "replay"],  # --queue is required
        ["export", "j-1", "--format", "doc"],
        ["dlq", "list", "--queue", "no.such-queue"],
    ],
)
def test_usage_errors_exit_2(api: FakeApi, args: list[str]) -> None:
    result = scribe(*args)
    assert result.exit_code == 2, result.output
    assert api.requests == []


def test_export_writes_the_format_asked_for(api: FakeApi, tmp_path: Path) -> None:
    api.handler = lambda r: httpx.Response(200, text="WEBVTT\n\n00:00.000 --> 00:01.000\nhi\n")
    out = tmp_path / "t.vtt"
    result = scribe("export", "j-1", "--format", "vtt", "-o", str(out))
    assert result.exit_code == 0, result.output
    assert api.requests[0].url.path == "/v1/transcriptions/j-1/transcript.vtt"
    assert out.read_text().startswith("WEBVTT")
    assert f"wrote {out}" in result.stdout

    api.handler = lambda r: httpx.Response(200, text="1\n00:00:00,000 --> 00:00:01,000\nhi\n")
    assert scribe("export", "j-1").stdout == "1\n00:00:00,000 --> 00:00:01,000\nhi\n"  # srt
    assert api.requests[-1].url.path.endswith("/transcript.srt")


def test_an_unknown_export_format_names_the_known_ones(api: FakeApi) -> None:
    result = scribe("export", "j-1", "--format", "doc")
    assert result.stderr.strip() == "error: unknown format 'doc'; use srt, vtt, txt or json"


def test_submit_sends_the_options_and_prints_the_job(api: FakeApi, audio: Path) -> None:
    api.handler = lambda r: httpx.Response(202, json={"id": "j-7", "status": "queued"})
    result = scribe("submit", str(audio), "--language", "en", "--words")
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "talk.wav → job j-7 (queued)"
    body = api.requests[0].content
    assert b'name="language"\r\n\r\nen' in body
    assert b'name="word_timestamps"\r\n\r\ntrue' in body


def test_a_refused_upload_names_its_file(api: FakeApi, audio: Path) -> None:
    api.handler = lambda r: error(415, "unsupported_media", "not audio")
    result = scribe("submit", str(audio))
    assert result.exit_code == 1
    assert result.stderr.strip() == f"error: {audio}: unsupported_media: not audio"


def scripted(answers: dict[str, list[httpx.Response]]) -> Handler:
    """Each path's answers in turn, the last one repeated."""

    def handle(request: httpx.Request) -> httpx.Response:
        queue = answers[request.url.path]
        return queue.pop(0) if len(queue) > 1 else queue[0]

    return handle


def job(status: str, **fields: Any) -> httpx.Response:
    return httpx.Response(200, json={"id": "j-7", "status": status, **fields})


def test_submit_wait_follows_the_job_and_prints_the_transcript(api: FakeApi, audio: Path) -> None:
    api.handler = scripted(
        {
            "/v1/transcriptions": [httpx.Response(202, json={"id": "j-7", "status": "queued"})],
            "/v1/transcriptions/j-7": [
                error(404, "not_found", "not indexed yet"),  # accepted, not yet indexed
                job("processing", progress=0.5),
                job("completed", progress=0.9),
            ],
            "/v1/transcriptions/j-7/transcript.txt": [httpx.Response(200, text="Hello there.\n")],
        }
    )
    result = scribe("submit", str(audio), "--wait")
    assert result.exit_code == 0, result.output
    assert "100%" in result.stdout
    assert result.stdout.rstrip().endswith("Hello there.")
    assert "talk.wav (j-7)" in result.stdout


def test_submit_wait_exits_1_with_the_reason_when_the_job_fails(api: FakeApi, audio: Path) -> None:
    api.handler = scripted(
        {
            "/v1/transcriptions": [httpx.Response(202, json={"id": "j-7", "status": "queued"})],
            "/v1/transcriptions/j-7": [
                job("failed", error={"code": "corrupt_audio", "message": "cannot decode"})
            ],
        }
    )
    result = scribe("submit", str(audio), "--wait")
    assert result.exit_code == 1
    assert "talk.wav: failed corrupt_audio: cannot decode" in result.stderr


def test_submit_wait_gives_up_after_its_timeout(api: FakeApi, audio: Path) -> None:
    api.handler = scripted(
        {
            "/v1/transcriptions": [httpx.Response(202, json={"id": "j-7", "status": "queued"})],
            "/v1/transcriptions/j-7": [job("processing", progress=0.1)],
        }
    )
    result = scribe("submit", str(audio), "--wait", "--timeout", "0.2")
    assert result.exit_code == 1
    assert "talk.wav: still not finished after 0 s" in result.stderr


def test_up_says_how_to_start_both_servers_and_hides_passwords(free_url: str) -> None:
    result = scribe(
        "up",
        SCRIBE_AMQP_URL=f"amqp://guest:hunter2@{free_url}/",
        SCRIBE_DATABASE_URL=f"postgresql://scribe:hunter2@{free_url}/scribe",
    )
    assert result.exit_code == 2
    assert "RabbitMQ is not reachable at amqp://guest:***@" in result.stderr
    assert "PostgreSQL is not reachable at postgresql://scribe:***@" in result.stderr
    assert "hunter2" not in result.stderr


@pytest.fixture
def free_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{sock.getsockname()[1]}"


def test_the_body_of_an_api_error_that_is_not_json_is_still_shown(api: FakeApi) -> None:
    api.handler = lambda r: httpx.Response(502, text="Bad Gateway")
    result = scribe("status", "j-1")
    assert result.exit_code == 1
    assert result.stderr.strip() == "error: http_error: Bad Gateway"


def test_publish_needs_a_uri() -> None:
    result = scribe("publish")
    assert result.exit_code == 2
    assert "--uri" in result.output


class _RecordingSupervisor:
    """Records what `start_stack` would start; every child 'starts' and migrations pass."""

    def __init__(self) -> None:
        self.started: list[Any] = []

    def say(self, *_args: Any) -> None:
        pass

    async def run_once(self, _spec: Any) -> int:
        return 0

    async def start(self, spec: Any) -> None:
        self.started.append(spec)


async def test_up_starts_one_single_threaded_transcriber_per_core_by_default() -> None:
    import os

    from scribe_cli.commands.stack import default_transcribers, start_stack

    supervisor = _RecordingSupervisor()
    assert await start_stack(supervisor, default_transcribers()) == 0  # type: ignore[arg-type]
    transcribers = [s for s in supervisor.started if s.name.startswith("transcriber")]
    assert len(transcribers) == len(os.sched_getaffinity(0))
    assert {s.env["SCRIBE_TRANSCRIBER_CPU_THREADS"] for s in transcribers} == {"1"}
    ports = {s.env["SCRIBE_TRANSCRIBER_HEALTH_PORT"] for s in transcribers}
    assert len(ports) == len(transcribers)


def test_what_others_wrote_is_printed_as_written_never_as_markup(
    api: FakeApi, tmp_path: Path
) -> None:
    # Whisper writes "[laughs]"; a user names a file "[draft]"; an error quotes either. To
    # rich, "[laughs]" is a style tag (dropped) and "[/]" a closing one (a crash).
    audio = tmp_path / "[draft] talk.wav"
    audio.write_bytes(b"RIFF....WAVE")
    transcript = "[laughs] Hello [/] there [bold]friend[/bold].\n"
    api.handler = scripted(
        {
            "/v1/transcriptions": [httpx.Response(202, json={"id": "j-7", "status": "queued"})],
            "/v1/transcriptions/j-7": [job("completed", progress=1.0)],
            "/v1/transcriptions/j-7/transcript.txt": [httpx.Response(200, text=transcript)],
        }
    )
    result = scribe("submit", str(audio), "--wait")
    assert result.exit_code == 0, result.output
    assert "[draft] talk.wav → job j-7 (queued)" in result.stdout
    assert "[draft] talk.wav (j-7)" in result.stdout
    assert result.stdout.rstrip().endswith(transcript.strip())

    failing = {"code": "corrupt_audio", "message": "cannot decode [/] [laughs]"}
    api.handler = scripted(
        {
            "/v1/transcriptions": [httpx.Response(202, json={"id": "j-8", "status": "queued"})],
            "/v1/transcriptions/j-8": [job("failed", error=failing)],
        }
    )
    result = scribe("submit", str(audio), "--wait")
    assert result.exit_code == 1, result.output
    assert "[draft] talk.wav: failed corrupt_audio: cannot decode [/] [laughs]" in result.stderr

    api.handler = lambda r: httpx.Response(
        200, json={"id": "j-8", "status": "failed", "error": failing}
    )
    result = scribe("status", "j-8")
    assert result.exit_code == 0, result.output
    assert "corrupt_audio: cannot decode [/] [laughs]" in result.stdout

    api.handler = lambda r: error(422, "invalid_request", "bad [/] value in [query]")
    result = scribe("status", "j-9")
    assert result.exit_code == 1
    assert result.stderr.strip() == "error: invalid_request: bad [/] value in [query]"
