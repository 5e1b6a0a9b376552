"""Media on a real S3 server (SeaweedFS): ingest's streaming store, the worker's reads, scope.

No mock: every request goes to the `weed mini` the `seaweed` fixture started, each test
in a bucket of its own.
"""

from __future__ import annotations

import hashlib
import uuid
from pathlib import Path
from typing import Any

import pytest

from contracts.errors import ErrorCode
from indexer.media import LocalMediaEraser, StoreMediaEraser, UnerasableMediaError
from ingest.failures import UnavailableError
from ingest.object_media import S3MediaStore
from ingest.uploads import probe_in_thread
from scribe_runtime.netguard import ForbiddenUrlError, resolve_public_url
from scribe_runtime.objectstore import (
    PART_BYTES,
    MediaUrl,
    S3Location,
    open_s3_client,
    parse_grants,
)
from scribe_runtime.retry import TransientError
from services.ingest.tests import samples
from tests.support.servers import SeaweedServer
from transcriber.errors import JobFailure
from transcriber.sources import S3Source

pytestmark = pytest.mark.integration


@pytest.fixture
def s3_env(seaweed: SeaweedServer, monkeypatch: pytest.MonkeyPatch) -> SeaweedServer:
    for name, value in seaweed.env().items():
        monkeypatch.setenv(name, value)
    return seaweed


def _uploads_left(seaweed: SeaweedServer, bucket: str) -> list[Any]:
    with seaweed.client() as s3:
        uploads: list[Any] = s3.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
        return uploads


def _keys(seaweed: SeaweedServer, bucket: str) -> list[str]:
    with seaweed.client() as s3:
        return sorted(o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", []))


async def test_an_upload_streams_in_parts_and_lands_at_its_content_address(
    s3_env: SeaweedServer, s3_bucket: str
) -> None:
    # 2.5 parts of audio: a multipart upload with a short last part.
    audio = samples.wav_bytes(seconds=(PART_BYTES * 2.5) / 32_000)
    async with open_s3_client() as client:
        store = S3MediaStore(client, S3Location(s3_bucket, "media"))
        upload = store.begin(len(audio))
        for offset in range(0, len(audio), 256 * 1024):
            await upload.write(audio[offset : offset + 256 * 1024])
        sha256 = await upload.finish()
        probe = await probe_in_thread(upload, 3600)
        stored = await upload.commit("acme")
        store.keep(stored)
        await upload.discard()

    assert sha256 == hashlib.sha256(audio).hexdigest()
    assert probe.content_type == "audio/wav"
    key = f"media/acme/{sha256[:2]}/{sha256}"
    assert stored.uri == f"s3://{s3_bucket}/{key}"
    assert _keys(s3_env, s3_bucket) == [key]  # the temp object is gone
    assert _uploads_left(s3_env, s3_bucket) == []
    with s3_env.client() as s3:
        body = s3.get_object(Bucket=s3_bucket, Key=key)["Body"].read()
    assert body == audio


async def test_a_discarded_upload_leaves_no_parts_and_no_object(
    s3_env: SeaweedServer, s3_bucket: str
) -> None:
    async with open_s3_client() as client:
        store = S3MediaStore(client, S3Location(s3_bucket, "media"))
        upload = store.begin(10 * PART_BYTES)
        await upload.write(b"\0" * (PART_BYTES + 1024))  # one part uploaded
        assert len(_uploads_left(s3_env, s3_bucket)) == 1
        await upload.discard()  # what a disconnect or a refusal does

    assert _uploads_left(s3_env, s3_bucket) == []
    assert _keys(s3_env, s3_bucket) == []


async def test_deleting_a_stored_object_removes_it_and_only_inside_the_store(
    s3_env: SeaweedServer, s3_bucket: str
) -> None:
    with s3_env.client() as s3:
        s3.put_object(Bucket=s3_bucket, Key="media/acme/ab/abc", Body=b"x")
        s3.put_object(Bucket=s3_bucket, Key="elsewhere/file", Body=b"x")
    async with open_s3_client() as client:
        store = S3MediaStore(client, S3Location(s3_bucket, "media"))
        assert await store.delete(f"s3://{s3_bucket}/media/acme/ab/abc") is True
        assert await store.delete(f"s3://{s3_bucket}/media/acme/ab/abc") is False
        with pytest.raises(ValueError, match="outside"):
            await store.delete(f"s3://{s3_bucket}/elsewhere/file")
    assert _keys(s3_env, s3_bucket) == ["elsewhere/file"]


async def test_a_store_that_is_away_answers_503_not_500(
    monkeypatch: pytest.MonkeyPatch, s3_env: SeaweedServer
) -> None:
    from tests.support.ports import free_port

    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", f"http://127.0.0.1:{free_port()}")
    async with open_s3_client() as client:
        upload = S3MediaStore(client, S3Location("nowhere", "media")).begin(1024)
        await upload.write(b"x" * 100)
        with pytest.raises(UnavailableError) as refused:
            await upload.finish()
        await upload.discard()
    assert refused.value.code == "media_store_unavailable"


def _source(bucket: str, **grants: list[str]) -> S3Source:
    return S3Source(
        media=MediaUrl(s3=S3Location(bucket, "media")),
        grants=parse_grants(grants),
        max_bytes=1024**3,
    )


async def test_the_worker_reads_its_tenants_object_streaming(
    s3_env: SeaweedServer, s3_bucket: str
) -> None:
    data = b"RIFF" + bytes(range(256)) * 10_000
    with s3_env.client() as s3:
        s3.put_object(Bucket=s3_bucket, Key="media/acme/aa/a1", Body=data)
        s3.put_object(Bucket=s3_bucket, Key="inbox/acme/call.wav", Body=data)
    source = _source(s3_bucket, acme=[f"s3://{s3_bucket}/inbox/acme/"])
    for key in ("media/acme/aa/a1", "inbox/acme/call.wav"):
        async with source.fetch(f"s3://{s3_bucket}/{key}", tenant_id="acme") as audio:
            assert audio.path.read_bytes() == data
        assert not audio.path.exists()  # the temp copy goes with the context


class _NoClient:
    async def __aenter__(self) -> Any:
        raise AssertionError("a refused URI must not reach the store")

    async def __aexit__(self, *_exc: object) -> None:
        return None


@pytest.mark.parametrize(
    ("key_of", "says"),
    [
        (lambda b: f"s3://{b}/media/globex/aa/a1", "outside its prefixes"),
        (lambda b: f"s3://{b}/inbox/globex/call.wav", "outside its prefixes"),
        (lambda b: "s3://not-configured/media/acme/aa/a1", "not configured"),
    ],
    ids=["another-tenants-store-prefix", "another-tenants-grant", "bucket-not-configured"],
)
async def test_an_s3_uri_outside_the_tenants_prefixes_is_refused_before_any_request(
    s3_bucket: str, key_of: Any, says: str
) -> None:
    source = S3Source(
        media=MediaUrl(s3=S3Location(s3_bucket, "media")),
        grants=parse_grants(
            {"acme": [f"s3://{s3_bucket}/inbox/acme/"], "globex": [f"s3://{s3_bucket}/inbox/"]}
        ),
        max_bytes=1024,
        open_client=_NoClient,
    )
    with pytest.raises(JobFailure) as refused:
        async with source.fetch(key_of(s3_bucket), tenant_id="acme"):
            pass
    assert refused.value.code == ErrorCode.SOURCE_FORBIDDEN
    assert says in str(refused.value)


async def test_a_missing_object_fails_the_job_and_a_store_away_is_transient(
    s3_env: SeaweedServer, s3_bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.support.ports import free_port

    source = _source(s3_bucket)
    with pytest.raises(JobFailure) as missing:
        async with source.fetch(f"s3://{s3_bucket}/media/acme/no/such", tenant_id="acme"):
            pass
    assert missing.value.code == ErrorCode.SOURCE_NOT_FOUND

    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", f"http://127.0.0.1:{free_port()}")
    with pytest.raises(TransientError):
        async with source.fetch(f"s3://{s3_bucket}/media/acme/aa/a1", tenant_id="acme"):
            pass


async def test_a_private_address_passes_the_guard_only_as_the_configured_store(
    seaweed: SeaweedServer,
) -> None:
    store = seaweed.endpoint + "/bucket/key?X-Amz-Signature=abc"
    allowed = frozenset({("127.0.0.1", seaweed.ports["s3.port"])})
    resolved = await resolve_public_url(store, allowed=allowed)
    assert resolved.addresses == ("127.0.0.1",)
    for url in (store, "http://127.0.0.1:9/x", "http://169.254.169.254/latest/meta-data"):
        with pytest.raises(ForbiddenUrlError, match="non-public"):
            await resolve_public_url(url, allowed=frozenset() if url == store else allowed)


async def test_deleting_a_job_erases_its_object_and_keeps_a_producers(
    s3_env: SeaweedServer, s3_bucket: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    with s3_env.client() as s3:
        s3.put_object(Bucket=s3_bucket, Key="media/acme/ab/abc", Body=b"x")
        s3.put_object(Bucket=s3_bucket, Key="producer/acme/talk.wav", Body=b"x")
    eraser = StoreMediaEraser(LocalMediaEraser(tmp_path), S3Location(s3_bucket, "media"))

    await eraser.delete_media(f"s3://{s3_bucket}/media/acme/ab/abc")
    await eraser.delete_media(f"s3://{s3_bucket}/media/acme/ab/abc")  # idempotent
    await eraser.delete_media(f"s3://{s3_bucket}/producer/acme/talk.wav")  # not ours: kept

    assert _keys(s3_env, s3_bucket) == ["producer/acme/talk.wav"]
    with pytest.raises(UnerasableMediaError):
        await StoreMediaEraser(LocalMediaEraser(tmp_path), None).delete_media(
            f"s3://{s3_bucket}/media/acme/ab/abc"
        )
    from tests.support.ports import free_port

    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", f"http://127.0.0.1:{free_port()}")
    with pytest.raises(TransientError):  # the store away: the request is retried
        await eraser.delete_media(f"s3://{s3_bucket}/media/acme/cd/cde")


async def test_deleting_a_long_job_erases_its_chunk_prefix_only(
    s3_env: SeaweedServer, s3_bucket: str, tmp_path: Path
) -> None:
    job, other = uuid.uuid4(), uuid.uuid4()
    with s3_env.client() as s3:
        for i in range(3):
            s3.put_object(Bucket=s3_bucket, Key=f"media/acme/chunks/{job}/{i:04d}.wav", Body=b"x")
        s3.put_object(Bucket=s3_bucket, Key=f"media/acme/chunks/{other}/0000.wav", Body=b"x")
        s3.put_object(Bucket=s3_bucket, Key=f"media/acme/chunks/{job}-not-it/0000.wav", Body=b"x")
    eraser = StoreMediaEraser(LocalMediaEraser(tmp_path), S3Location(s3_bucket, "media"))
    await eraser.delete_chunks("acme", job)
    await eraser.delete_chunks("acme", job)  # idempotent
    assert _keys(s3_env, s3_bucket) == sorted(
        [f"media/acme/chunks/{other}/0000.wav", f"media/acme/chunks/{job}-not-it/0000.wav"]
    )


async def test_a_long_jobs_chunks_go_to_the_tenants_prefix_and_read_back(
    s3_env: SeaweedServer, s3_bucket: str, tmp_path: Path
) -> None:
    import asyncio
    import uuid
    import wave

    from transcriber.audio import StreamedAudio
    from transcriber.chunk_store import S3ChunkStore
    from transcriber.chunking import ChunkPolicy, plan_chunks

    source_wav = tmp_path / "long.wav"
    with wave.open(str(source_wav), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(16000)
        out.writeframes(bytes(2 * 16000 * 70))  # 70 s of silence
    media = MediaUrl(s3=S3Location(s3_bucket, "media"))
    store = S3ChunkStore(media, asyncio.get_running_loop(), staging=tmp_path / "staging")
    job = uuid.uuid4()
    planned = await asyncio.to_thread(
        plan_chunks,
        StreamedAudio(source_wav, max_duration_seconds=3600),
        estimated_seconds=70.0,
        policy=ChunkPolicy(chunk_seconds=30.0, search_seconds=8.0),
        sink=store.sink("acme", job),
    )
    assert len(planned.cuts) == 3
    assert _keys(s3_env, s3_bucket) == [f"media/acme/chunks/{job}/{i:04d}.wav" for i in range(3)]
    # A work item the broker confirmed is marked beside its chunk (the planner's thread).
    sink = store.sink("acme", job)
    await asyncio.to_thread(sink.mark_published, 1)
    assert [await asyncio.to_thread(sink.is_published, i) for i in range(3)] == [
        False,
        True,
        False,
    ]
    assert f"media/acme/chunks/{job}/0001.published" in _keys(s3_env, s3_bucket)
    with s3_env.client() as s3:
        s3.delete_object(Bucket=s3_bucket, Key=f"media/acme/chunks/{job}/0001.published")
    assert not list((tmp_path / "staging").iterdir()), "staged chunk files are removed"
    source = _source(s3_bucket)
    for cut in planned.cuts:
        async with source.fetch(cut.uri, tenant_id="acme") as audio:
            with wave.open(str(audio.path), "rb") as chunk:
                assert chunk.getnframes() == cut.end - cut.start
        # Another tenant's job cannot name it.
        with pytest.raises(JobFailure) as refused:
            async with source.fetch(cut.uri, tenant_id="globex"):
                pass
        assert refused.value.code == ErrorCode.SOURCE_FORBIDDEN
