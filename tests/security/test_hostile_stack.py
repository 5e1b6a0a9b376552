"""A hostile user against `scribe up`, started as a user starts it: two tenants' keys
configured with `scribe-ingest hash-key`, credentials in the broker and database URLs,
in console and in JSON log format.

While `/healthz` is polled from another thread, the suite throws what once stalled,
crashed or leaked: clients vanishing mid-upload, edge-of-calendar dates, forged cursors,
huge and crowded headers, slow headers and slow bodies. It asserts, with counts printed,
that `/healthz` p99 stays under 250 ms, that every answer is a 2xx or a 4xx with a stable
`code` (never a 5xx), and that no key, password or secret appears in any service's log.
A full disk cannot be injected into `scribe up`; `services/ingest/tests/test_storage.py`
covers it through `wire()`.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import signal
import statistics
import subprocess
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from services.ingest.tests import samples
from tests.e2e.test_cli import cli_env
from tests.support import probes
from tests.support.stack import BIN
from tests.support.waiting import eventually, eventually_async

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

KEYS = {
    "acme": "scribe_hostile-acme-7d3f0a9c1b2e4f6a8d0c2e4f6a8b0d2f",
    "globex": "scribe_hostile-globex-1a3c5e7f9b1d3f5a7c9e1b3d5f7a9c1e",
}
DB_PASSWORD = "hostile-db-passw0rd-5e1f"
CURSOR_SECRET = "hostile-cursor-secret-9b7d5f3a1c"
N = 8  # of each hostile kind
BOUNDARY = "hostile"


def digest_entry(tenant: str, key: str, env: dict[str, str]) -> dict[str, str]:
    """The `SCRIBE_INGEST_API_KEYS` entry `scribe-ingest hash-key` prints for `key`."""
    printed = subprocess.run(
        [str(BIN / "scribe-ingest"), "hash-key", "--tenant", tenant, "--stdin"],
        input=key + "\n",
        capture_output=True,
        text=True,
        env=env,
        check=True,
    ).stdout
    line = next(x for x in printed.splitlines() if x.startswith("SCRIBE_INGEST_API_KEYS entry:"))
    entry: dict[str, str] = json.loads(line.split(":", 1)[1])
    return entry


@dataclass
class Outcomes:
    """Every answer the suite got: (what, status, code); None status = closed, no answer."""

    seen: list[tuple[str, int | None, str | None]] = field(default_factory=list)

    def add(self, what: str, status: int | None, body: bytes | str | None) -> None:
        code = None
        if body:
            with contextlib.suppress(ValueError, AttributeError):
                code = json.loads(body).get("code")
        self.seen.append((what, status, code))


class HealthProbe(threading.Thread):
    """`/healthz` latency, measured from its own thread so the attack's loop does not skew it."""

    def __init__(self, api: str) -> None:
        super().__init__(daemon=True)
        self.api = api
        self.latencies: list[float] = []
        self.statuses: list[int] = []
        self.stopping = threading.Event()

    def run(self) -> None:
        with httpx.Client(timeout=10) as http:
            while not self.stopping.is_set():
                started = time.perf_counter()
                status = http.get(f"{self.api}/healthz").status_code
                self.latencies.append(time.perf_counter() - started)
                self.statuses.append(status)
                time.sleep(0.05)


async def raw(port: int, head: bytes) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(head)
    await writer.drain()
    return reader, writer


async def answer(reader: asyncio.StreamReader) -> tuple[int | None, bytes]:
    try:
        data = await asyncio.wait_for(reader.read(), timeout=60)
    except ConnectionError:
        return None, b""
    if not data:
        return None, b""
    line, _, rest = data.partition(b"\r\n")
    return int(line.split()[1]), rest.partition(b"\r\n\r\n")[2]


def upload_head(key: str, size: int = 6_000_000) -> bytes:
    part = (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\n'
        "Content-Type: audio/wav\r\n\r\n"
    ).encode()
    return (
        f"POST /v1/transcriptions HTTP/1.1\r\nHost: ingest\r\nAuthorization: Bearer {key}\r\n"
        f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n"
        f"Content-Length: {size}\r\n\r\n"
    ).encode() + part


def forged(kind: str, position: list[object], scope: str) -> str:
    raw_json = json.dumps({"v": 1, "k": kind, "s": scope, "p": position}).encode()
    return base64.urlsafe_b64encode(raw_json).rstrip(b"=").decode()


async def attack(api: str, port: int, outcomes: Outcomes) -> None:
    acme = {"Authorization": f"Bearer {KEYS['acme']}"}
    globex = {"Authorization": f"Bearer {KEYS['globex']}"}
    async with httpx.AsyncClient(base_url=api, timeout=60) as http:
        # A normal upload first: the stack works, and there is a job to read.
        accepted = await http.post(
            "/v1/transcriptions",
            files={"file": ("a.wav", samples.wav_bytes(1.0), "audio/wav")},
            headers=acme,
        )
        outcomes.add("upload", accepted.status_code, accepted.text)
        job = accepted.json()["id"]

        async def indexed() -> bool:  # reads are eventually consistent: 404 until indexed
            return (await http.get(f"/v1/transcriptions/{job}", headers=acme)).status_code != 404

        await eventually_async(indexed, within=30, interval=0.1, what=f"job {job} readable")
        for who, headers in (("owner", acme), ("other tenant", globex)):
            r = await http.get(f"/v1/transcriptions/{job}", headers=headers)
            outcomes.add(f"read as {who}", r.status_code, r.text)
            if who == "owner":
                assert not r.json()["audio"]["uri"].startswith("file:")

        # Clients that vanish mid-upload.
        vanishing = [
            await raw(port, upload_head(KEYS["acme"]) + bytes(1_100_000)) for _ in range(N)
        ]
        await asyncio.sleep(0.5)
        for _, writer in vanishing:
            writer.close()
        outcomes.seen += [("disconnect", None, None)] * N

        # Edge-of-calendar dates, forged cursors.
        for when in ("0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00"):
            for path, extra in (("/v1/transcriptions", {}), ("/v1/search", {"q": "fox"})):
                params = {"created_after": when, **extra}
                r = await http.get(path, params=params, headers=acme)
                outcomes.add("extreme date", r.status_code, r.text)
        for position in ([1.0, job, 2**40], [1e300, job, 1], [1.0, job, -1], ["x", 1, 1]):
            r = await http.get(
                "/v1/search",
                params={"q": "fox", "cursor": forged("search", position, "0" * 16)},
                headers=acme,
            )
            outcomes.add("forged cursor", r.status_code, r.text)
        r = await http.get(
            "/v1/transcriptions",
            params={"cursor": forged("jobs", ["0001-01-01T00:00:00+14:00", job], "0" * 16)},
            headers=acme,
        )
        outcomes.add("forged cursor", r.status_code, r.text)

    # Huge and crowded headers.
    for _ in range(N // 2):
        reader, writer = await raw(port, b"GET /healthz HTTP/1.1\r\nHost: ingest\r\nX-Big: ")
        with contextlib.suppress(ConnectionError):
            for _ in range(16):
                writer.write(b"a" * 1024 * 1024)
                await writer.drain()
        status, body = await answer(reader)
        writer.close()
        outcomes.add("huge header", status, body)
    for _ in range(N // 2):
        crowd = b"".join(b"X-H%d: v\r\n" % i for i in range(500))
        reader, writer = await raw(port, b"GET /healthz HTTP/1.1\r\nHost: ingest\r\n" + crowd)
        status, body = await answer(reader)
        writer.close()
        outcomes.add("crowded header", status, body)

    # Slow headers and slow bodies, all at once.
    async def slow_head() -> None:
        reader, writer = await raw(port, b"GET /healthz HTTP/1.1\r\nHost: ingest\r\n")

        async def drip() -> None:
            with contextlib.suppress(ConnectionError):
                while True:
                    await asyncio.sleep(0.5)
                    writer.write(b"X")
                    await writer.drain()

        dripping = asyncio.create_task(drip())
        status, body = await answer(reader)
        dripping.cancel()
        writer.close()
        outcomes.add("slow header", status, body)

    async def slow_body() -> None:
        reader, writer = await raw(port, upload_head(KEYS["globex"]) + bytes(1000))
        status, body = await answer(reader)
        writer.close()
        outcomes.add("slow body", status, body)

    await asyncio.gather(*(slow_head() for _ in range(N)), *(slow_body() for _ in range(N)))

    # Afterwards both tenants are served as if nothing happened.
    async with httpx.AsyncClient(base_url=api, timeout=60) as http:
        for headers in (acme, globex):
            r = await http.post(
                "/v1/transcriptions",
                files={"file": ("b.wav", samples.wav_bytes(1.5), "audio/wav")},
                headers=headers,
            )
            outcomes.add("upload after", r.status_code, r.text)


def secrets_in(text: str, secrets: list[str]) -> list[str]:
    return [s for s in secrets if s in text]


@pytest.mark.parametrize("log_format", ["console", "json"])
def test_a_hostile_tenant_cannot_stall_crash_or_read_the_logs(
    amqp_url: str, database_url: str, tmp_path: Path, log_format: str
) -> None:
    # Trust auth ignores the password, but every service is handed it in its URL.
    parts = urlsplit(database_url)
    with_password = parts._replace(
        netloc=f"{parts.username}:{DB_PASSWORD}@{parts.hostname}:{parts.port}"
    )
    env = cli_env(amqp_url, with_password.geturl(), tmp_path)
    keyring: dict[str, str] = {}
    for tenant, key in KEYS.items():
        keyring |= digest_entry(tenant, key, env)
    env |= {
        "SCRIBE_LOG_FORMAT": log_format,
        "SCRIBE_INGEST_API_KEYS": json.dumps(keyring),
        "SCRIBE_TENANTS": "acme,globex",
        "SCRIBE_INGEST_CURSOR_SECRET": CURSOR_SECRET,
        "SCRIBE_INGEST_MAX_CONCURRENT_UPLOADS_PER_TENANT": str(2 * N),
        "SCRIBE_INGEST_UPLOAD_IDLE_TIMEOUT_SECONDS": "2",
        "SCRIBE_INGEST_UPLOAD_RATE_GRACE_SECONDS": "2",
        "SCRIBE_INGEST_HEADER_TIMEOUT_SECONDS": "3",
    }
    assert DB_PASSWORD in env["SCRIBE_DATABASE_URL"]
    api, port = env["SCRIBE_API_URL"], int(env["SCRIBE_INGEST_PORT"])
    up_log = tmp_path / "up.log"
    up = subprocess.Popen(
        [str(BIN / "scribe"), "up"],
        env=env,
        cwd=tmp_path,
        stdout=up_log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    probe = HealthProbe(api)
    outcomes = Outcomes()
    try:

        def ready() -> bool:
            assert up.poll() is None, up_log.read_text(errors="replace")
            return probes.get(f"{api}/readyz", timeout=2).status_code == 200

        eventually(
            ready,
            within=240,
            interval=0.5,
            what=lambda: f"`scribe up` ready:\n{up_log.read_text(errors='replace')}",
            ignoring=(httpx.HTTPError,),
        )
        probe.start()
        asyncio.run(attack(api, port, outcomes))
    finally:
        probe.stopping.set()
        up.send_signal(signal.SIGINT)
        try:
            up.wait(timeout=60)
        except subprocess.TimeoutExpired:
            up.kill()
            up.wait()
        probe.join(timeout=15)

    # `scribe up` merges every child's output into its own, prefixed by service; any log
    # files a child wrote under .scribe/logs are scanned too.
    logs = {p.name: p.read_text(errors="replace") for p in tmp_path.glob(".scribe/logs/*.log")}
    logs["scribe up"] = up_log.read_text(errors="replace")
    counts = Counter((what, status, code) for what, status, code in outcomes.seen)
    p99 = statistics.quantiles(probe.latencies, n=100)[98] if len(probe.latencies) > 1 else 0.0
    print(f"\n[{log_format}] {len(outcomes.seen)} hostile and normal requests:")
    for (what, status, code), count in sorted(counts.items(), key=str):
        print(f"  {count:3d} x {what}: {status} {code}")
    print(
        f"  /healthz: {len(probe.latencies)} probes, "
        f"p50 {statistics.median(probe.latencies) * 1000:.1f} ms, "
        f"p99 {p99 * 1000:.1f} ms, max {max(probe.latencies) * 1000:.1f} ms"
    )
    print(f"  log files scanned: {sorted(logs)} ({sum(map(len, logs.values()))} characters)")

    assert set(probe.statuses) == {200}
    assert p99 < 0.25
    for what, status, code in outcomes.seen:
        assert status is None or status < 500, (what, status, code)
        if status is not None and status >= 400:
            assert code, (what, status)
    assert ("upload after", 202, None) in outcomes.seen
    assert [s for w, s, _ in outcomes.seen if w == "slow body"] == [408] * N
    secrets = [*KEYS.values(), *keyring, DB_PASSWORD, CURSOR_SECRET, amqp_url]
    for name, text in logs.items():
        assert not secrets_in(text, secrets), name
        assert "Traceback" not in text, name
    merged = logs["scribe up"]
    for service in ("ingest", "indexer", "transcriber-1"):
        assert service in merged  # every child's lines were captured
    assert merged.count("upload_abandoned") == N
    assert "Bearer " not in merged
