"""Transcriber workers as processes, and an event tap: the transcriber's tests and benchmark."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import time
import wave
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar
from uuid import UUID, uuid4

import aio_pika
from aio_pika.abc import AbstractIncomingMessage

from contracts import routing
from contracts.audio import AudioUploadedV1, TranscriptionOptions
from contracts.envelope import Event
from scribe_runtime.messaging import make_broker, publish_event
from scribe_runtime.topology import pool_queue
from tests.speech import CACHE, SCRIPTS, synthesize
from tests.support.stack import TRANSCRIBER, start_process, stop_processes
from tests.support.waiting import eventually_async

E = TypeVar("E", bound=Event)

DOWNSTREAM = "test.downstream"


class EventTap:
    """A downstream queue the test binds to every transcription event, decoded as they come."""

    def __init__(self, amqp_url: str) -> None:
        self.amqp_url = amqp_url
        self.events: list[Event] = []
        self.arrived: list[float] = []
        """When each of `events` was heard (`time.perf_counter()`), in the same order."""
        self._changed = asyncio.Event()
        self._connection: aio_pika.abc.AbstractRobustConnection | None = None

    async def start(self) -> None:
        self._connection = await aio_pika.connect_robust(self.amqp_url)
        channel = await self._connection.channel()
        exchange = await channel.declare_exchange(
            routing.EXCHANGE, aio_pika.ExchangeType.TOPIC, durable=True
        )
        queue = await channel.declare_queue(
            DOWNSTREAM, durable=True, arguments={"x-queue-type": "quorum"}
        )
        for key in (
            "transcription.*.v1",
            "transcription.chunk.*.v1",
            "pool.#.chunk-requested",  # a long job's work items, sent to their pool
            "transcript.completed.v1",
        ):
            await queue.bind(exchange, routing_key=key)
        await queue.consume(self._on_message)

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        event = routing.decode_event(message.body, message.type)
        self.arrived.append(time.perf_counter())
        self.events.append(event)
        await message.ack()
        self._changed.set()

    async def close(self) -> None:
        if self._connection is not None:
            await self._connection.close()

    def heard_at(self, event: Event) -> float:
        """When `event` was first heard (`time.perf_counter()`)."""
        return self.arrived[next(i for i, e in enumerate(self.events) if e is event)]

    def of(self, cls: type[E], job_id: UUID | None = None) -> list[E]:
        return [
            e for e in self.events if isinstance(e, cls) and (job_id is None or e.job_id == job_id)
        ]

    async def wait_until(self, condition: Callable[[], bool], seconds: float = 120.0) -> None:
        async with asyncio.timeout(seconds):
            while not condition():
                self._changed.clear()
                await self._changed.wait()

    async def wait_for(self, cls: type[E], job_id: UUID, seconds: float = 120.0) -> E:
        await self.wait_until(lambda: bool(self.of(cls, job_id)), seconds)
        return self.of(cls, job_id)[0]


UPLOAD_TENANT = "acme"
"""The tenant of `upload`'s jobs, which `WorkerProcess` workers serve."""


def upload(path: Path, **options: Any) -> AudioUploadedV1:
    return AudioUploadedV1(
        job_id=uuid4(),
        tenant_id=UPLOAD_TENANT,
        correlation_id=uuid4(),
        producer="test",
        audio_uri=path.resolve().as_uri(),  # type: ignore[arg-type]
        options=TranscriptionOptions.model_validate(options),
    )


DEFAULT_POOL_QUEUE = pool_queue("tiny.en").name
"""Where the default (tiny.en) workers take their jobs from, once the router routed them."""


async def queue_counts(amqp_url: str, queue: str = DEFAULT_POOL_QUEUE) -> tuple[int, int]:
    """(ready messages, consumers) straight from the queue (no management-stats lag)."""
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel()
        declared = await channel.declare_queue(queue, passive=True)
        result = declared.declaration_result
        return result.message_count or 0, result.consumer_count or 0


async def wait_for_consumers(
    amqp_url: str, count: int, seconds: float = 120.0, queue: str = DEFAULT_POOL_QUEUE
) -> None:
    """Until `count` workers consume a pool's queue (default: tiny.en's; another process's
    consumers raise no event here: poll the broker)."""

    async def enough() -> bool:
        return (await queue_counts(amqp_url, queue))[1] >= count

    await eventually_async(enough, within=seconds, what=f"{count} consumer(s) on the queue")


def long_speech(repeats: int = 3) -> Path:
    """All the scripts read `repeats` times in a row (about 24 s per repeat), as one WAV."""
    target = CACHE / f"speech-long-{repeats}.wav"
    if target.exists():
        return target
    frames: list[bytes] = []
    params: Any = None
    for _ in range(repeats):
        for text in SCRIPTS.values():
            with wave.open(str(synthesize(text)), "rb") as part:
                params = part.getparams()
                frames.append(part.readframes(part.getnframes()))
    partial = target.with_suffix(".part")
    with wave.open(str(partial), "wb") as out:
        out.setparams(params)
        for chunk in frames:
            out.writeframes(chunk)
    partial.replace(target)
    return target


class WorkerProcess:
    """`scribe-transcriber` as a real process, logs kept in a file for diagnosis."""

    def __init__(
        self, name: str, amqp_url: str, media_root: Path, log_dir: Path, **env: str
    ) -> None:
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        environment = {
            **os.environ,
            "SCRIBE_AMQP_URL": amqp_url,
            "SCRIBE_MEDIA_ROOT": str(media_root),
            "SCRIBE_LOG_FORMAT": "json",
            "SCRIBE_TENANTS": UPLOAD_TENANT,
            "SCRIBE_TRANSCRIBER_WORKER_NAME": name,
            "SCRIBE_TRANSCRIBER_CPU_THREADS": "1",
            "SCRIBE_TRANSCRIBER_HEALTH_PORT": "0",
            "HF_HUB_OFFLINE": "1",
            **env,
        }
        self.log_path.write_bytes(b"")
        self.process = start_process(TRANSCRIBER, environment, self.log_path)

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")

    def signal(self, sig: signal.Signals) -> None:
        self.process.send_signal(sig)

    def wait(self, timeout: float) -> int:
        return self.process.wait(timeout)

    def stop(self) -> None:
        stop_processes([self.process], timeout=30)


async def publish(amqp_url: str, *events: Event) -> None:
    """Publish `events` to `scribe.events`, confirmed, as an external producer would."""
    broker = make_broker(amqp_url, service="test")
    async with broker:
        await broker.start()
        for event in events:
            await publish_event(broker, event)


def put(media: Path, source: Path, name: str) -> Path:
    """Store `source` where the jobs' tenant may read it: a worker reads no other part."""
    target = media / UPLOAD_TENANT / name
    target.parent.mkdir(exist_ok=True)
    shutil.copyfile(source, target)
    return target
