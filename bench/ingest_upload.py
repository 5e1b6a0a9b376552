"""Upload 1 GB to a real `scribe-ingest` process; print its memory growth and throughput.

Starts `scribe-ingest` against a throwaway RabbitMQ vhost and a temp media root, warms it
up with a small upload (so libraries loaded on first use are in the baseline), then streams
one large WAV (48 kHz stereo noise, generated on the fly, never held in memory) as
multipart and samples the server's VmRSS from /proc while it streams, hashes, stores,
decodes and publishes. Target (DESIGN.md): at most 50 MB of growth for 1 GB.

    uv run python -m bench.ingest_upload              # 1 GB
    uv run python -m bench.ingest_upload --size-mb 64 # a quick check
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

import aio_pika
import httpx

from bench.common import API_HEADERS, RssSampler, status_kib
from tests.support.ports import free_port
from tests.support.servers import RabbitServer
from tests.support.stack import stop_processes
from tests.support.waiting import eventually

AMQP: Final = os.environ.get("SCRIBE_BENCH_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
MANAGEMENT: Final = os.environ.get("SCRIBE_BENCH_MANAGEMENT_URL", "http://127.0.0.1:15672")
RATE: Final = 48000
CHANNELS: Final = 2
BLOCK: Final = CHANNELS * 2
CHUNK: Final = 256 * 1024
BOUNDARY: Final = "scribe-bench-boundary-7f3a"


def wav_header(data_bytes: int) -> bytes:
    """A 16-bit PCM WAV header declaring exactly `data_bytes` of samples."""
    return (
        b"RIFF"
        + struct.pack("<I", 36 + data_bytes)
        + b"WAVEfmt "
        + struct.pack("<IHHIIHH", 16, 1, CHANNELS, RATE, RATE * BLOCK, BLOCK, 16)
        + b"data"
        + struct.pack("<I", data_bytes)
    )


def multipart_upload(total_bytes: int) -> tuple[int, Iterator[bytes]]:
    """Content length and body of a multipart upload of a `total_bytes` WAV."""
    data_bytes = (total_bytes - 44) // BLOCK * BLOCK
    head = (
        f"--{BOUNDARY}\r\n"
        'Content-Disposition: form-data; name="language"\r\n\r\nen\r\n'
        f"--{BOUNDARY}\r\n"
        'Content-Disposition: form-data; name="file"; filename="bench.wav"\r\n'
        "Content-Type: audio/wav\r\n\r\n"
    ).encode() + wav_header(data_bytes)
    tail = f"\r\n--{BOUNDARY}--\r\n".encode()
    # Quiet noise: random low bits; one chunk reused, so the client stays small too.
    noise = bytes(b & 0x0F if i % 2 else b for i, b in enumerate(os.urandom(CHUNK)))

    def body() -> Iterator[bytes]:
        yield head
        left = data_bytes
        while left > 0:
            piece = noise[: min(CHUNK, left)]
            left -= len(piece)
            yield piece
        yield tail

    return len(head) + data_bytes + len(tail), body()


def _queue_depth(amqp_url: str, queue: str) -> int:
    """Exact message count (the management API's lags by seconds)."""

    async def depth() -> int:
        connection = await aio_pika.connect(amqp_url)
        async with connection:
            channel = await connection.channel()
            declared = await channel.declare_queue(queue, passive=True)
            count = declared.declaration_result.message_count
            return int(count) if count is not None else -1

    return asyncio.run(depth())


def _command() -> list[str]:
    script = Path(sys.executable).with_name("scribe-ingest")
    return [str(script)] if script.exists() else [sys.executable, "-m", "ingest.main"]


def run(size_mb: int) -> dict[str, Any]:
    """Upload `size_mb` MiB; print and return the figures (sizes in MiB, times in s)."""
    total = size_mb * 1024 * 1024
    vhost = f"scribe-bench-{uuid.uuid4().hex[:8]}"
    media = Path(tempfile.mkdtemp(prefix="scribe-bench-media-"))
    port = free_port()
    rabbit = RabbitServer(AMQP, MANAGEMENT)
    amqp_url = rabbit.create_vhost(vhost)
    env = os.environ | {
        "SCRIBE_AMQP_URL": amqp_url,
        "SCRIBE_MEDIA_ROOT": str(media),
        "SCRIBE_INGEST_PORT": str(port),
        "SCRIBE_INGEST_MAX_UPLOAD_BYTES": str(total + 1024 * 1024),
        "SCRIBE_MAX_DURATION_SECONDS": str(24 * 3600),
        "SCRIBE_LOG_FORMAT": "json",
        "SCRIBE_LOG_LEVEL": "WARNING",
    }
    server = subprocess.Popen(_command(), env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(
            base_url=base, timeout=httpx.Timeout(600, connect=5), headers=API_HEADERS
        ) as client:

            def ready() -> bool:
                if server.poll() is not None:
                    raise SystemExit(f"scribe-ingest exited with {server.returncode}")
                return client.get("/readyz").status_code == 200

            eventually(
                ready,
                within=30,
                interval=0.1,
                what="scribe-ingest ready",
                ignoring=(httpx.HTTPError,),
            )

            length, body = multipart_upload(2 * 1024 * 1024)
            warm = client.post(
                "/v1/transcriptions",
                content=body,
                headers={
                    "Content-Type": f"multipart/form-data; boundary={BOUNDARY}",
                    "Content-Length": str(length),
                },
            )
            assert warm.status_code == 202, warm.text
            baseline_kib = status_kib(server.pid, "VmRSS")
            hwm_before_kib = status_kib(server.pid, "VmHWM")

            sampler = RssSampler({"ingest": server.pid})
            sampler.start()
            length, body = multipart_upload(total)
            started = time.perf_counter()
            response = client.post(
                "/v1/transcriptions",
                content=body,
                headers={
                    "Content-Type": f"multipart/form-data; boundary={BOUNDARY}",
                    "Content-Length": str(length),
                },
            )
            elapsed = time.perf_counter() - started
            peak_mib = sampler.stop()["ingest"]
            hwm_after_kib = status_kib(server.pid, "VmHWM")
        if response.status_code != 202:
            raise SystemExit(f"upload answered {response.status_code}: {response.text}")
        queued = _queue_depth(env["SCRIBE_AMQP_URL"], "transcriber.audio-uploaded")
        growth_mb = peak_mib - baseline_kib / 1024
        print(f"upload size            {length / 1024**2:10.1f} MiB (WAV, {RATE} Hz stereo)")
        print(f"audio duration         {(total - 44) / (RATE * BLOCK) / 3600:10.2f} h")
        print(f"wall time (202)        {elapsed:10.2f} s")
        print(f"throughput             {length / 1024**2 / elapsed:10.1f} MiB/s")
        print(f"baseline RSS           {baseline_kib / 1024:10.1f} MiB")
        print(f"peak RSS (sampled)     {peak_mib:10.1f} MiB")
        print(f"peak RSS growth        {growth_mb:10.1f} MiB   (target <= 50)")
        print(
            f"VmHWM before / after   {hwm_before_kib / 1024:6.1f} / {hwm_after_kib / 1024:.1f} MiB"
        )
        print(f"events queued          {queued:10d}   (warm-up + upload = 2)")
        return {
            "upload_mib": length / 1024**2,
            "wall_s": elapsed,
            "mib_per_s": length / 1024**2 / elapsed,
            "baseline_rss_mib": baseline_kib / 1024,
            "peak_rss_mib": peak_mib,
            "peak_rss_growth_mib": growth_mb,
            "events_queued": queued,
        }
    finally:
        stop_processes([server], timeout=20)
        shutil.rmtree(media, ignore_errors=True)
        rabbit.delete_vhost(vhost)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--size-mb", type=int, default=1024, help="upload size in MiB")
    args = parser.parse_args()
    run(args.size_mb)


if __name__ == "__main__":
    main()
