"""The whole stack with `SCRIBE_MEDIA_URL=s3://...` against a real SeaweedFS."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from uuid import uuid4

import aio_pika
import httpx
import pytest

from contracts import AudioUploadedV1
from scribe_runtime.messaging import make_broker, publish_event
from scribe_runtime.topology import BUCKET_EVENTS_EXCHANGE_NAME
from tests.speech import SCRIPTS, synthesize
from tests.support.bucket_events import s3_event
from tests.support.servers import SeaweedServer
from tests.support.stack import Stack, running_stack, wait_for_job
from tests.support.waiting import eventually

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


@pytest.fixture
def s3_stack(
    amqp_url: str, database_url: str, tmp_path: Path, seaweed: SeaweedServer, s3_bucket: str
) -> Iterator[Stack]:
    env = {
        "SCRIBE_MEDIA_URL": f"s3://{s3_bucket}/media",
        "SCRIBE_S3_TENANT_PREFIXES": json.dumps({"default": [f"s3://{s3_bucket}/inbox/default/"]}),
        **seaweed.env(),
    }
    with running_stack(amqp_url, database_url, tmp_path, env=env) as running:
        yield running


def _objects(seaweed: SeaweedServer, bucket: str) -> dict[str, int]:
    with seaweed.client() as s3:
        listing = s3.list_objects_v2(Bucket=bucket).get("Contents", [])
        return {item["Key"]: item["Size"] for item in listing}


def _audio_files_under(root: Path) -> list[Path]:
    # Idempotency records are small JSON files; audio would be a content address.
    return [p for p in root.rglob("*") if p.is_file() and "idempotency" not in p.parts]


async def _publish(amqp_url: str, event: AudioUploadedV1) -> None:
    broker = make_broker(amqp_url, service="e2e-external-producer")
    async with broker:
        await broker.connect()
        await publish_event(broker, event)


def test_an_upload_becomes_an_object_and_a_completed_job_with_nothing_on_local_disk(
    s3_stack: Stack, seaweed: SeaweedServer, s3_bucket: str
) -> None:
    audio = synthesize(SCRIPTS["weather"]).read_bytes()
    with httpx.Client(
        base_url=s3_stack.api, timeout=60, headers={"Authorization": "Bearer dev-insecure-key"}
    ) as client:
        answer = client.post("/v1/transcriptions", files={"file": ("talk.wav", audio, "audio/wav")})
        assert answer.status_code == 202, answer.text
        job = wait_for_job(client, answer.json()["id"])
        assert job["status"] == "completed"
        stored = _objects(seaweed, s3_bucket)
        assert list(stored.values()) == [len(audio)]
        [key] = stored
        assert key.startswith("media/default/")
        assert _audio_files_under(s3_stack.media_root) == []

        # An external producer names an object in the store by s3:// URI.
        with seaweed.client() as s3:
            s3.put_object(Bucket=s3_bucket, Key="media/default/inbox/call.wav", Body=audio)
        event = AudioUploadedV1(
            job_id=uuid4(),
            tenant_id="default",
            producer="e2e-external-producer",
            audio_uri=f"s3://{s3_bucket}/media/default/inbox/call.wav",  # type: ignore[arg-type]
        )
        asyncio.run(_publish(s3_stack.amqp_url, event))
        external = wait_for_job(client, str(event.job_id))
        assert external["status"] == "completed"

        # Another tenant's prefix: refused with its code, the job fails, nothing fetched.
        foreign = AudioUploadedV1(
            job_id=uuid4(),
            tenant_id="default",
            producer="e2e-external-producer",
            audio_uri=f"s3://{s3_bucket}/media/globex/inbox/call.wav",  # type: ignore[arg-type]
        )
        asyncio.run(_publish(s3_stack.amqp_url, foreign))
        failed = wait_for_job(client, str(foreign.job_id), want="failed")
        assert failed["error"]["code"] == "source_forbidden"


def test_a_presigned_upload_is_put_straight_to_the_bucket_then_submitted_by_id(
    s3_stack: Stack, seaweed: SeaweedServer, s3_bucket: str
) -> None:
    audio = synthesize(SCRIPTS["weather"]).read_bytes()
    with httpx.Client(
        base_url=s3_stack.api, timeout=60, headers={"Authorization": "Bearer dev-insecure-key"}
    ) as client:
        target = client.post("/v1/uploads")
        assert target.status_code == 201, target.text
        upload = target.json()
        early = client.post("/v1/transcriptions", json={"upload_id": upload["id"]})
        assert early.status_code == 422
        assert early.json()["code"] == "upload_not_found"

        put = httpx.put(upload["url"], content=audio, timeout=60)
        assert put.status_code == 200, put.text
        assert _objects(seaweed, s3_bucket) == {f"media/default/uploads/{upload['id']}": len(audio)}

        answer = client.post("/v1/transcriptions", json={"upload_id": upload["id"]})
        assert answer.status_code == 202, answer.text
        job = wait_for_job(client, answer.json()["id"])
        assert job["status"] == "completed"
        assert _audio_files_under(s3_stack.media_root) == []


async def _notify(amqp_url: str, body: bytes, times: int) -> None:
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        exchange = await channel.get_exchange(BUCKET_EVENTS_EXCHANGE_NAME)
        for _ in range(times):
            await exchange.publish(aio_pika.Message(body), routing_key="scribe/put")


def test_a_bucket_notification_delivered_twice_ends_as_one_completed_job(
    s3_stack: Stack, seaweed: SeaweedServer, s3_bucket: str
) -> None:
    audio = synthesize(SCRIPTS["weather"]).read_bytes()
    key = "inbox/default/weekly call.wav"
    with seaweed.client() as s3:
        s3.put_object(Bucket=s3_bucket, Key=key, Body=audio)
        head = s3.head_object(Bucket=s3_bucket, Key=key)
    # What the store publishes for that put, delivered twice (notifications are
    # at-least-once), through the whole stack: ingest, transcriber, indexer.
    asyncio.run(_notify(s3_stack.amqp_url, s3_event(s3_bucket, key, head), times=2))
    with httpx.Client(
        base_url=s3_stack.api, timeout=60, headers={"Authorization": "Bearer dev-insecure-key"}
    ) as client:

        def listed() -> list[dict[str, Any]]:
            page = client.get("/v1/transcriptions")
            assert page.status_code == 200, page.text
            return list(page.json()["items"])

        eventually(lambda: len(listed()) >= 1, within=120, what="the notified job is listed")
        [job] = listed()
        wait_for_job(client, job["id"])
        text = client.get(f"/v1/transcriptions/{job['id']}/transcript.txt")
        assert text.status_code == 200, text.text
        assert "weather" in text.text.lower()
        time.sleep(3)  # the second notification has long been consumed: still one job
        assert [j["id"] for j in listed()] == [job["id"]]
        assert _audio_files_under(s3_stack.media_root) == []
