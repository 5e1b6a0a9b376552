"""S3 clients side by side on a real SeaweedFS, and ingest's memory on a presigned upload.

Part 1 (the client choice): each candidate, in a process of its own so its peak RSS is its
own, uploads one object of N MiB (streamed in 8 MiB parts) and downloads it streaming
(1 MiB reads, nothing kept): aiobotocore (async, botocore's own signing and config),
obstore (Rust object_store, async), and botocore's sync client in a thread (what boto3
in `asyncio.to_thread` amounts to).

Part 2 (the target): a lone `scribe-ingest` with `SCRIBE_MEDIA_URL=s3://...`; the client
PUTs a 1 GiB WAV to a presigned URL, then submits it by id; ingest's VmRSS is sampled
while it HEADs and probes the object through ranged reads. Target: growth under 50 MB.
Then an HTTP upload is cut off mid-stream and the bucket's incomplete multipart uploads
are counted (must be 0).

    uv run python -m bench object_store          # 256 MiB objects, 1 GiB presigned
    uv run python -m bench object_store --quick   # 32 MiB / 64 MiB
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, Final

import httpx

from bench.common import API_HEADERS, Result, RssSampler, status_kib
from bench.ingest_upload import BLOCK, CHUNK, wav_header
from tests.support.ports import free_port
from tests.support.servers import RabbitServer, SeaweedServer
from tests.support.stack import stop_processes
from tests.support.waiting import eventually

AMQP: Final = os.environ.get("SCRIBE_BENCH_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
MANAGEMENT: Final = os.environ.get("SCRIBE_BENCH_MANAGEMENT_URL", "http://127.0.0.1:15672")
CLIENTS: Final = ("aiobotocore", "obstore", "botocore-thread")
PART: Final = 8 * 1024 * 1024
READ: Final = 1024 * 1024


def _payload(total: int) -> Iterator[bytes]:
    block = os.urandom(PART)
    left = total
    while left > 0:
        piece = block[: min(PART, left)]
        left -= len(piece)
        yield piece


async def _aiobotocore(bucket: str, key: str, total: int) -> tuple[float, float]:
    from scribe_runtime.objectstore import open_s3_client

    async with open_s3_client() as s3:
        started = time.perf_counter()
        upload = await s3.create_multipart_upload(Bucket=bucket, Key=key)
        parts = []
        for number, piece in enumerate(_payload(total), start=1):
            answer = await s3.upload_part(
                Bucket=bucket, Key=key, UploadId=upload["UploadId"], PartNumber=number, Body=piece
            )
            parts.append({"ETag": answer["ETag"], "PartNumber": number})
        await s3.complete_multipart_upload(
            Bucket=bucket,
            Key=key,
            UploadId=upload["UploadId"],
            MultipartUpload={"Parts": parts},  # type: ignore[typeddict-item]
        )
        put_s = time.perf_counter() - started
        started = time.perf_counter()
        response = await s3.get_object(Bucket=bucket, Key=key)
        async with response["Body"] as body:
            while await body.read(READ):
                pass
        return put_s, time.perf_counter() - started


async def _obstore(bucket: str, key: str, total: int) -> tuple[float, float]:
    import obstore
    from obstore.store import S3Store

    store = S3Store(
        bucket,
        endpoint=os.environ["AWS_ENDPOINT_URL_S3"],
        access_key_id=os.environ["AWS_ACCESS_KEY_ID"],
        secret_access_key=os.environ["AWS_SECRET_ACCESS_KEY"],
        region=os.environ["AWS_REGION"],
        client_options={"allow_http": True},
        virtual_hosted_style_request=False,
    )

    async def pieces() -> AsyncIterator[bytes]:
        for piece in _payload(total):
            yield piece

    started = time.perf_counter()
    await obstore.put_async(store, key, pieces(), chunk_size=PART, max_concurrency=1)
    put_s = time.perf_counter() - started
    started = time.perf_counter()
    response = await obstore.get_async(store, key)
    async for _chunk in response.stream(min_chunk_size=READ):
        pass
    return put_s, time.perf_counter() - started


async def _botocore_thread(bucket: str, key: str, total: int) -> tuple[float, float]:
    import botocore.session

    s3 = botocore.session.get_session().create_client(
        "s3", endpoint_url=os.environ["AWS_ENDPOINT_URL_S3"], region_name=os.environ["AWS_REGION"]
    )

    def put() -> None:
        upload = s3.create_multipart_upload(Bucket=bucket, Key=key)
        parts = []
        for number, piece in enumerate(_payload(total), start=1):
            answer = s3.upload_part(
                Bucket=bucket, Key=key, UploadId=upload["UploadId"], PartNumber=number, Body=piece
            )
            parts.append({"ETag": answer["ETag"], "PartNumber": number})
        s3.complete_multipart_upload(
            Bucket=bucket, Key=key, UploadId=upload["UploadId"], MultipartUpload={"Parts": parts}
        )

    def get() -> None:
        body = s3.get_object(Bucket=bucket, Key=key)["Body"]
        while body.read(READ):
            pass

    started = time.perf_counter()
    await asyncio.to_thread(put)
    put_s = time.perf_counter() - started
    started = time.perf_counter()
    await asyncio.to_thread(get)
    return put_s, time.perf_counter() - started


def one(client: str, bucket: str, total: int) -> dict[str, float]:
    """Run one candidate in this process; its figures (peak RSS from VmHWM)."""
    runner = {
        "aiobotocore": _aiobotocore,
        "obstore": _obstore,
        "botocore-thread": _botocore_thread,
    }[client]
    baseline = status_kib(os.getpid(), "VmRSS") / 1024
    cpu = time.process_time()
    put_s, get_s = asyncio.run(runner(bucket, f"bench/{client}", total))
    return {
        "put_mib_s": total / 1024**2 / put_s,
        "get_mib_s": total / 1024**2 / get_s,
        "cpu_s": time.process_time() - cpu,
        "peak_rss_growth_mib": status_kib(os.getpid(), "VmHWM") / 1024 - baseline,
    }


def compare(server: SeaweedServer, total: int) -> dict[str, dict[str, float]]:
    figures = {}
    bucket = server.create_bucket()
    env = os.environ | server.env()
    for client in CLIENTS:
        done = subprocess.run(
            [sys.executable, "-m", "bench.object_store", "--one", client, bucket, str(total)],
            env=env,
            capture_output=True,
            text=True,
            check=False,
            timeout=900,
        )
        lines = done.stdout.strip().splitlines()
        if not lines:
            raise RuntimeError(f"{client} exited {done.returncode}: {done.stderr[-2000:]}")
        # An exit code is kept: obstore's runtime has aborted (SIGABRT) at exit here.
        figures[client] = json.loads(lines[-1]) | {"exit_code": done.returncode}
    server.delete_bucket(bucket)
    return figures


def presigned(server: SeaweedServer, total: int) -> dict[str, float]:
    """Ingest's RSS while it probes a presigned `total`-byte upload; orphans after an abort."""
    bucket = server.create_bucket()
    rabbit = RabbitServer(AMQP, MANAGEMENT)
    vhost = f"scribe-bench-{uuid.uuid4().hex[:8]}"
    amqp_url = rabbit.create_vhost(vhost)
    port = free_port()
    media = Path(tempfile.mkdtemp(prefix="scribe-bench-media-"))
    env = (
        os.environ
        | server.env()
        | {
            "SCRIBE_AMQP_URL": amqp_url,
            "SCRIBE_MEDIA_ROOT": str(media),
            "SCRIBE_MEDIA_URL": f"s3://{bucket}/media",
            "SCRIBE_INGEST_PORT": str(port),
            "SCRIBE_INGEST_MAX_UPLOAD_BYTES": str(total + 1024 * 1024),
            "SCRIBE_MAX_DURATION_SECONDS": str(24 * 3600),
            "SCRIBE_LOG_FORMAT": "json",
            "SCRIBE_LOG_LEVEL": "WARNING",
        }
    )
    ingest = subprocess.Popen([str(Path(sys.executable).with_name("scribe-ingest"))], env=env)
    try:
        with httpx.Client(
            base_url=f"http://127.0.0.1:{port}",
            timeout=httpx.Timeout(900, connect=5),
            headers=API_HEADERS,
        ) as client:
            eventually(
                lambda: client.get("/readyz").status_code == 200,
                within=60,
                interval=0.2,
                what="scribe-ingest ready",
                ignoring=(httpx.HTTPError,),
            )
            data_bytes = (total - 44) // BLOCK * BLOCK
            noise = bytes(b & 0x0F if i % 2 else b for i, b in enumerate(os.urandom(CHUNK)))

            def wav() -> Iterator[bytes]:
                yield wav_header(data_bytes)
                left = data_bytes
                while left > 0:
                    piece = noise[: min(CHUNK, left)]
                    left -= len(piece)
                    yield piece

            # Warm-up: a small presigned upload, so first-use imports are in the baseline.
            for size, body in ((data_bytes, wav()),):
                del size
                small = client.post("/v1/uploads").json()
                tiny = wav_header(48000 * BLOCK) + bytes(48000 * BLOCK)
                httpx.put(small["url"], content=tiny, timeout=60).raise_for_status()
                warm = client.post("/v1/transcriptions", json={"upload_id": small["id"]})
                assert warm.status_code == 202, warm.text
                target = client.post("/v1/uploads").json()
                started = time.perf_counter()
                httpx.put(
                    target["url"],
                    content=body,
                    headers={"Content-Length": str(44 + data_bytes)},
                    timeout=900,
                ).raise_for_status()
                put_s = time.perf_counter() - started
            baseline = status_kib(ingest.pid, "VmRSS") / 1024
            sampler = RssSampler({"ingest": ingest.pid})
            sampler.start()
            started = time.perf_counter()
            answer = client.post("/v1/transcriptions", json={"upload_id": target["id"]})
            submit_s = time.perf_counter() - started
            peak = sampler.stop()["ingest"]
            assert answer.status_code == 202, answer.text
            orphans = _aborted_upload_orphans(port, server, bucket, total // 2)
        return {
            "object_mib": (44 + data_bytes) / 1024**2,
            "put_s": put_s,
            "submit_probe_s": submit_s,
            "ingest_baseline_rss_mib": baseline,
            "ingest_peak_rss_mib": peak,
            "ingest_rss_growth_mib": peak - baseline,
            "incomplete_uploads_after_abort": orphans,
        }
    finally:
        stop_processes([ingest], timeout=20)
        rabbit.delete_vhost(vhost)
        server.delete_bucket(bucket)


def _aborted_upload_orphans(port: int, server: SeaweedServer, bucket: str, size: int) -> int:
    """Send half of a `size`-byte multipart upload, hang up; incomplete uploads left after."""
    boundary = "scribe-bench-abort"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\n'
        "Content-Type: audio/wav\r\n\r\n"
    ).encode()
    request = (
        "POST /v1/transcriptions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Authorization: {API_HEADERS['Authorization']}\r\n"
        f"Content-Type: multipart/form-data; boundary={boundary}\r\n"
        f"Content-Length: {size}\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(request + head + wav_header(size))
        block = bytes(1024 * 1024)
        for _ in range(size // 2 // len(block)):
            sock.sendall(block)
        with server.client() as s3:
            eventually(
                lambda: bool(s3.list_multipart_uploads(Bucket=bucket).get("Uploads")),
                within=60,
                what="a multipart upload in flight",
            )
    with server.client() as s3:

        def left() -> int:
            return len(s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []))

        eventually(lambda: left() == 0, within=60, what="the aborted upload's parts removed")
        return left()


def run(quick: bool = False) -> Result:
    compare_mib = 32 if quick else 256
    presigned_mib = 64 if quick else 1024
    with tempfile.TemporaryDirectory(prefix="scribe-bench-s3-") as base:
        server = SeaweedServer.create(Path(base))
        server.start()
        try:
            clients = compare(server, compare_mib * 1024**2)
            target = presigned(server, presigned_mib * 1024**2)
        finally:
            server.stop()
    rows: list[list[Any]] = [
        [
            name,
            round(f["put_mib_s"], 1),
            round(f["get_mib_s"], 1),
            round(f["cpu_s"], 2),
            round(f["peak_rss_growth_mib"], 1),
        ]
        for name, f in clients.items()
    ]
    return Result(
        name="object_store",
        title=f"S3 clients on SeaweedFS ({compare_mib} MiB object), presigned upload",
        columns=["client", "put MiB/s", "get MiB/s", "CPU s", "peak RSS growth MiB"],
        rows=rows,
        figures={"clients": clients, "presigned": target},
        settings={"object_mib": compare_mib, "presigned_mib": presigned_mib, "part_mib": 8},
        notes=[
            f"presigned {target['object_mib']:.0f} MiB: PUT {target['put_s']:.1f} s, "
            f"submit+probe {target['submit_probe_s']:.1f} s, ingest RSS growth "
            f"{target['ingest_rss_growth_mib']:.1f} MiB (target < 50)",
            f"incomplete multipart uploads after an aborted upload: "
            f"{target['incomplete_uploads_after_abort']}",
        ],
    )


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--one":
        print(json.dumps(one(sys.argv[2], sys.argv[3], int(sys.argv[4]))))
    else:
        print(run("--quick" in sys.argv).table())
