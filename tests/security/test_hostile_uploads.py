"""A hostile upload corpus, each item with its expected outcome.

Every item goes through the real ingest app (real broker, real media store on disk). For
each: the status and stable code expected; never a 5xx; no file outside the media root;
nothing left in the media root's temp area; an accepted file only under its content address.
"""

from __future__ import annotations

import hashlib
import io
import struct
import tempfile
import wave
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from services.ingest.tests import samples
from tests.security.support import client, files_under, running_app

pytestmark = pytest.mark.integration

MAX_UPLOAD_BYTES = 300_000
MAX_DURATION_SECONDS = 5.0
BOUNDARY = "hostile-boundary-7d3f"
WAV_1S = samples.wav_bytes(1.0)


@dataclass(frozen=True)
class Body:
    """A raw request: content type and body bytes (or chunks, sent without Content-Length)."""

    content_type: str
    data: bytes | list[bytes]
    headers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Case:
    name: str
    body: Callable[[], Body]
    status: int
    code: str | None
    original_filename: str | None = None
    """For accepted uploads: the file name the job records (a name, never a path)."""


def part(name: str, data: bytes, filename: str | bytes | None = None, ctype: str = "") -> bytes:
    disposition = f'form-data; name="{name}"'.encode()
    if filename is not None:
        raw = filename if isinstance(filename, bytes) else filename.encode()
        disposition += b'; filename="' + raw + b'"'
    head = b"Content-Disposition: " + disposition + b"\r\n"
    if ctype:
        head += f"Content-Type: {ctype}\r\n".encode()
    return b"--" + BOUNDARY.encode() + b"\r\n" + head + b"\r\n" + data + b"\r\n"


def form(*parts: bytes, close: bool = True) -> Body:
    end = b"--" + BOUNDARY.encode() + b"--\r\n" if close else b""
    return Body(f"multipart/form-data; boundary={BOUNDARY}", b"".join(parts) + end)


def upload(data: bytes, filename: str | bytes = "audio.wav", ctype: str = "audio/wav") -> Body:
    return form(part("file", data, filename, ctype))


def wav_declaring(frames_declared: int, seconds_present: float) -> bytes:
    """A WAV whose data chunk declares `frames_declared` frames, with `seconds_present` there."""
    data = samples.tone_pcm(seconds_present)
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(samples.RATE)
        w.writeframes(b"")
    header = bytearray(out.getvalue())
    struct.pack_into("<I", header, 4, 0xFFFFFFFF)  # RIFF size: unknown, as streaming writers say
    struct.pack_into("<I", header, 40, frames_declared * 2 if frames_declared else 0xFFFFFFFF)
    return bytes(header) + data


def flac_claiming(seconds_claimed: float, seconds_present: float) -> bytes:
    """A FLAC whose STREAMINFO total-samples field says `seconds_claimed`."""
    data = bytearray(samples.flac_bytes(seconds_present))
    assert data[:4] == b"fLaC"
    info = 8  # "fLaC" + the metadata block header
    total = int(seconds_claimed * samples.RATE)
    # STREAMINFO bytes 13..17: 4 bits of bits-per-sample, then the 36-bit sample count.
    packed = int.from_bytes(data[info + 13 : info + 18], "big")
    packed = (packed & ~((1 << 36) - 1)) | total
    data[info + 13 : info + 18] = packed.to_bytes(5, "big")
    return bytes(data)


def zero_rate_wav() -> bytes:
    data = bytearray(WAV_1S)
    struct.pack_into("<I", data, 24, 0)  # sample rate 0
    struct.pack_into("<I", data, 28, 0)  # byte rate 0
    return bytes(data)


CASES = [
    # --- the bytes are not (usable) audio, whatever the name and Content-Type say ---
    Case("empty-file", lambda: upload(b""), 415, "unsupported_media"),
    Case("text-named-wav", lambda: upload(samples.PLAIN_TEXT), 415, "unsupported_media"),
    Case(
        "png-as-mp3",
        lambda: upload(samples.png_bytes(), "cover.mp3", "audio/mpeg"),
        415,
        "unsupported_media",
    ),
    Case(
        "html-as-audio",
        lambda: upload(b"<html><script>alert(1)</script></html>" * 50, "x.ogg", "audio/ogg"),
        415,
        "unsupported_media",
    ),
    Case("wav-header-only", lambda: upload(samples.wav_header_only()), 415, "unsupported_media"),
    Case(
        "wav-truncated",
        lambda: upload(samples.truncated(samples.wav_bytes(2.0))),
        415,
        "unsupported_media",
    ),
    Case(
        "flac-truncated",
        lambda: upload(samples.truncated(samples.flac_bytes(2.0)), "a.flac"),
        415,
        "unsupported_media",
    ),
    Case("wav-zero-sample-rate", lambda: upload(zero_rate_wav()), 415, "unsupported_media"),
    Case(
        "mp3-id3-tag-only",
        lambda: upload(b"ID3\x04\x00\x00\x00\x00\x00\x00" + b"\x00" * 4000, "a.mp3"),
        415,
        "unsupported_media",
    ),
    # --- containers that refer to other files or URLs: refused without opening them ---
    Case("hls-playlist", lambda: upload(samples.playlist_bytes()), 415, "unsupported_media"),
    Case(
        "m3u-local-file",
        lambda: upload(b"#EXTM3U\n#EXTINF:10,\nfile:///etc/passwd\n", "list.m3u"),
        415,
        "unsupported_media",
    ),
    Case(
        "ffconcat-local-files",
        lambda: upload(b"ffconcat version 1.0\nfile '/etc/passwd'\nfile 'secret.wav'\n"),
        415,
        "unsupported_media",
    ),
    Case(
        "sdp-rtp-stream",
        lambda: upload(
            b"v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=x\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
            b"m=audio 5004 RTP/AVP 0\r\n",
            "a.sdp",
        ),
        415,
        "unsupported_media",
    ),
    # --- sizes and durations: enforced while streaming and by decoded samples ---
    Case(
        "longer-than-the-limit",
        lambda: upload(samples.wav_bytes(8.0)),
        413,
        "audio_too_long",
    ),
    Case(
        "wav-header-hides-its-length",  # data size 0xFFFFFFFF, 8 s of samples follow
        lambda: upload(wav_declaring(0, 8.0)),
        413,
        "audio_too_long",
    ),
    Case(
        "flac-streaminfo-claims-1s-holds-8s",
        lambda: upload(flac_claiming(1.0, 8.0), "a.flac"),
        413,
        "audio_too_long",
    ),
    Case(
        "larger-than-the-limit-streamed",  # chunked: no Content-Length to refuse up front
        lambda: Body(
            f"multipart/form-data; boundary={BOUNDARY}",
            [
                part("file", b"", "big.wav")[:-2],
                *([b"\0" * 65536] * 6),
                b"\r\n--" + BOUNDARY.encode() + b"--\r\n",
            ],
        ),
        413,
        "file_too_large",
    ),
    # --- file names: metadata only, never a path ---
    Case(
        "filename-traversal",
        lambda: upload(WAV_1S, "../../../../etc/cron.d/evil.wav"),
        202,
        None,
        "evil.wav",
    ),
    Case("filename-absolute", lambda: upload(WAV_1S, "/etc/passwd"), 202, None, "passwd"),
    Case(
        "filename-windows-traversal",
        lambda: upload(WAV_1S, "..\\..\\Windows\\System32\\evil.wav"),
        202,
        None,
        "evil.wav",
    ),
    Case("filename-dotdot-only", lambda: upload(WAV_1S, ".."), 202, None, None),
    Case(
        "filename-terminal-escapes",
        lambda: upload(WAV_1S, b"\x1b[31mred\x07.wav"),
        202,
        None,
        "[31mred.wav",
    ),
    Case("filename-1k-chars", lambda: upload(WAV_1S, "a" * 1000 + ".wav"), 202, None, "a" * 255),
    Case(  # the multipart parser caps a part's headers
        "filename-10k-chars",
        lambda: upload(WAV_1S, "a" * 10_000 + ".wav"),
        400,
        "malformed_request",
    ),
    # --- malformed forms and bodies ---
    Case(
        "multipart-without-boundary",
        lambda: Body("multipart/form-data", WAV_1S),
        400,
        "malformed_request",
    ),
    Case(
        "multipart-never-closed",
        lambda: form(part("file", WAV_1S, "a.wav"), close=False),
        400,
        "malformed_request",
    ),
    Case(
        "two-files",
        lambda: form(part("file", WAV_1S, "a.wav"), part("file", WAV_1S, "b.wav")),
        422,
        "validation_error",
    ),
    Case(
        "too-many-parts",
        lambda: form(*(part(f"f{i}", b"x") for i in range(40))),
        400,
        "malformed_request",
    ),
    Case(
        "oversized-field",
        lambda: form(part("language", b"e" * 100_000), part("file", WAV_1S, "a.wav")),
        422,
        "validation_error",
    ),
    Case(
        "model-as-a-path",
        lambda: form(part("model", b"../../../models/evil"), part("file", WAV_1S, "a.wav")),
        422,
        "model_unavailable",  # a name no pool serves, never a path a worker would open
    ),
    Case(
        "non-utf8-field",
        lambda: form(part("language", b"\xff\xfe"), part("file", WAV_1S, "a.wav")),
        422,
        "validation_error",
    ),
    Case("text-plain-body", lambda: Body("text/plain", b"hello"), 415, "unsupported_content_type"),
    Case(
        "json-nested-too-deep",
        lambda: Body("application/json", b"[" * 60_000 + b"]" * 60_000),
        413,  # over the 64 KiB JSON limit before it is parsed
        "request_too_large",
    ),
    Case(
        "json-nested-deep-under-the-limit",
        lambda: Body("application/json", b"[" * 30_000 + b"]" * 30_000),
        400,
        "malformed_request",
    ),
    Case(
        "json-audio-url-local-file",
        lambda: Body("application/json", b'{"audio_url": "file:///etc/passwd"}'),
        422,
        "invalid_audio_url",
    ),
    Case(
        "json-audio-url-metadata",
        lambda: Body("application/json", b'{"audio_url": "http://169.254.169.254/latest/"}'),
        422,
        "invalid_audio_url",
    ),
    Case(
        "idempotency-key-with-control-characters",
        lambda: Body(
            f"multipart/form-data; boundary={BOUNDARY}",
            upload(WAV_1S).data,
            (("Idempotency-Key", "key\twith\ttabs"),),
        ),
        422,
        "validation_error",
    ),
]


@dataclass
class Ingest:
    http: httpx.AsyncClient
    media_root: Path
    temp_dir: Path
    sandbox: Path


@pytest.fixture
async def ingest(
    amqp_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Ingest]:
    temp_dir = tmp_path / "tmp"
    temp_dir.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp_dir))
    media_root = tmp_path / "media"
    app_context = running_app(
        amqp_url,
        "postgresql://scribe_reader@127.0.0.1:1/unused",  # uploads never read the database
        media_root,
        max_upload_bytes=MAX_UPLOAD_BYTES,
        max_duration_seconds=MAX_DURATION_SECONDS,
    )
    async with app_context as app, client(app, "acme") as http:
        yield Ingest(http, media_root, temp_dir, tmp_path)


async def send(http: httpx.AsyncClient, body: Body) -> httpx.Response:
    headers = {"Content-Type": body.content_type, **dict(body.headers)}
    if isinstance(body.data, list):
        chunks = body.data

        async def stream() -> AsyncIterator[bytes]:
            for chunk in chunks:
                yield chunk

        return await http.post("/v1/transcriptions", content=stream(), headers=headers)
    return await http.post("/v1/transcriptions", content=body.data, headers=headers)


def test_the_corpus_is_big_enough() -> None:
    assert len(CASES) >= 20
    assert len({c.name for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
async def test_hostile_upload(ingest: Ingest, case: Case) -> None:
    body = case.body()
    response = await send(ingest.http, body)

    assert response.status_code == case.status, response.text
    if case.code is not None:
        assert response.json()["code"] == case.code
    # Nothing outside the media root; nothing half-written inside it.
    outside = [p for p in files_under(ingest.sandbox) if not p.is_relative_to(ingest.media_root)]
    assert outside == []
    tmp = ingest.media_root / ".tmp"
    assert not tmp.exists() or files_under(tmp) == []
    stored = [p for p in files_under(ingest.media_root) if ".idempotency" not in p.parts]
    if case.status != 202:
        assert stored == []
        return
    # Accepted: stored under its content address only, the client's name kept as metadata.
    job = (await ingest.http.get(response.headers["location"])).status_code
    assert job in (404, 503)  # not indexed here (no indexer); the point is: no 5xx crash
    data = body.data if isinstance(body.data, bytes) else b""
    sha = hashlib.sha256(samples.wav_bytes(1.0)).hexdigest()
    assert data  # every accepted case uploads the same 1 s WAV
    assert stored == [ingest.media_root / "acme" / sha[:2] / sha]


async def test_accepted_names_are_metadata_only(ingest: Ingest, amqp_url: str) -> None:
    """The event (what downstream sees) carries the trimmed name; the path is the hash."""
    import aio_pika

    from contracts import AudioUploadedV1, routing

    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel()
        queue = await channel.declare_queue("test.hostile-names", durable=False)
        await queue.bind(routing.EXCHANGE, routing_key=routing.AUDIO_UPLOADED_V1)
        named = [c for c in CASES if c.status == 202]
        for case in named:
            response = await send(ingest.http, case.body())
            assert response.status_code == 202, case.name
        names = []
        for _ in named:
            message = await queue.get(timeout=10)
            await message.ack()
            event = AudioUploadedV1.model_validate_json(message.body)
            names.append(event.original_filename)
            assert "/" not in str(event.audio_uri).removeprefix("file://").split("/acme/", 1)[1][3:]
    assert sorted(names, key=str) == sorted((c.original_filename for c in named), key=str)
