"""Composition root of `scribe-transcriber`: load the model once, consume, stop gracefully.

The process shell (health endpoint, signals, start/stop, lifecycle log lines) is
`scribe_runtime.worker.Worker`. SIGTERM/SIGINT: the subscriber stops taking messages; the
job in hand may finish within `graceful_shutdown_seconds` (its outcome published, then
acked); past that the connection is closed with the message unacked, so RabbitMQ hands it
to another worker (never lost) and the model is told to stop at its next segment.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import socket
from collections.abc import Callable, Sequence

import structlog
from faststream.rabbit import RabbitBroker

from contracts.audio import AudioUploadedV1
from contracts.chunks import TranscriptionChunkRequestedV1
from contracts.envelope import Event
from scribe_runtime import aio
from scribe_runtime.amqp import HEADER_POOL, Delivery, route_copy
from scribe_runtime.cancellations import FilesystemCancelMarks
from scribe_runtime.consumer import subscribe_events
from scribe_runtime.logging import configure_logging
from scribe_runtime.messaging import dead_letter, make_broker
from scribe_runtime.publishing import EventPublisher
from scribe_runtime.settings import SharedSettings
from scribe_runtime.topology import (
    EVENTS_EXCHANGE,
    TRANSCRIBER_QUEUE,
    QueueSpec,
    declare_topology,
    event_routing_key,
    pool_queue,
)
from scribe_runtime.worker import Worker, producer_name, stop_on_signals
from transcriber.admission import Admission
from transcriber.allocator import release_freed_memory, share_one_arena
from transcriber.chunk_store import ChunkStore, FileChunkStore, S3ChunkStore
from transcriber.chunking import ChunkPolicy
from transcriber.diarization import build_diarizer
from transcriber.engine import FasterWhisperEngine, SpeechEngine
from transcriber.long_audio import LongAudio
from transcriber.router import PoolRouter
from transcriber.service import PUBLISHES, JobPolicy, Transcriber
from transcriber.settings import TranscriberSettings
from transcriber.sources import FileSource, HttpSource, S3Source, UriSource, guarded_resolver

SERVICE = "scribe-transcriber"
INFERENCE_STOP_SECONDS = 30.0
"""After a hand-back, how long the model may take to reach a segment boundary and stop."""
log = structlog.get_logger(__name__)


def worker_name(settings: TranscriberSettings) -> str:
    """Who took a job, as `transcription.started` says."""
    return settings.worker_name or f"transcriber-{os.getpid()}@{socket.gethostname()}"


def served_pool(settings: TranscriberSettings) -> QueueSpec:
    """The pool queue this worker consumes: its model's (`topology.pool_queue`).

    By the setting, not the engine: an injected engine (the benchmarks' instant one) serves
    the pool of the configured model.
    """
    return pool_queue(settings.resolved_model_name())


def long_audio(
    shared: SharedSettings, settings: TranscriberSettings, store: ChunkStore | None = None
) -> LongAudio:
    """How this worker splits long audio, from the settings."""
    return LongAudio(
        store=store or FileChunkStore(shared.media_root),
        threshold_seconds=settings.chunk_threshold_seconds,
        max_duration_seconds=shared.max_duration_seconds,
        policy=ChunkPolicy(
            chunk_seconds=settings.chunk_seconds,
            search_seconds=settings.chunk_search_seconds,
            overlap_seconds=settings.chunk_overlap_seconds,
            min_silence_seconds=settings.chunk_min_silence_seconds,
        ),
    )


def build(
    shared: SharedSettings,
    settings: TranscriberSettings,
    engine: SpeechEngine,
    *,
    chunk_store: ChunkStore | None = None,
    after_work: Callable[[], object] | None = None,
) -> tuple[RabbitBroker, Transcriber]:
    """The broker with the router and the transcriber subscribed, on the real adapters.

    `after_work`: run on the worker thread after each job's and each chunk's blocking work
    (`Transcriber`).
    """
    pool = served_pool(settings)
    broker = make_broker(
        shared.amqp_url,
        service=SERVICE,
        prefetch=1,
        graceful_timeout=settings.graceful_shutdown_seconds,
    )

    source = UriSource(
        FileSource(shared.media_root),
        HttpSource(
            max_bytes=settings.http_max_bytes,
            timeout_seconds=settings.http_timeout_seconds,
            connect_timeout_seconds=settings.http_connect_timeout_seconds,
            max_redirects=settings.http_max_redirects,
            attempts=settings.fetch_attempts,
            download_dir=settings.download_dir,
            resolver=guarded_resolver(shared),
        ),
        S3Source(
            media=shared.media(),
            grants=shared.s3_grants(),
            max_bytes=settings.s3_max_bytes,
            download_dir=settings.download_dir,
        ),
    )

    async def dead_letter_here(delivery: Delivery, *, code: str, reason: str) -> None:
        await dead_letter(broker, delivery, queue=pool.name, code=code, reason=reason)

    async def dead_letter_intake(delivery: Delivery, *, code: str, reason: str) -> None:
        await dead_letter(broker, delivery, queue=TRANSCRIBER_QUEUE.name, code=code, reason=reason)

    async def forward(delivery: Delivery, routing_key: str, model: str) -> None:
        await route_copy(
            broker,
            delivery,
            exchange=EVENTS_EXCHANGE,
            routing_key=routing_key,
            headers={**delivery.headers, HEADER_POOL: model},
        )

    publisher = EventPublisher(broker, PUBLISHES)

    async def publish(event: Event) -> None:
        # A long job's chunks go to the pool of its model, like the job itself.
        await publisher.publish(event, routing_key=event_routing_key(event))

    router = PoolRouter(
        default_model=settings.default_model,
        forward=forward,
        publish=publish,
        admission=Admission(shared.tenants),
        dead_letter=dead_letter_intake,
        producer=producer_name(SERVICE),
    )
    service = Transcriber(
        engine=engine,
        source=source,
        publish=publish,
        admission=Admission(shared.tenants),
        dead_letter=dead_letter_here,
        worker=worker_name(settings),
        producer=producer_name(SERVICE),
        policy=JobPolicy(
            word_timestamps=settings.word_timestamps,
            progress_min_fraction=settings.progress_min_fraction,
            progress_min_interval_seconds=settings.progress_min_interval_seconds,
            delivery_limit=pool.delivery_limit,
            cancel_poll_seconds=settings.cancel_poll_seconds,
        ),
        marks=FilesystemCancelMarks(shared.media_root),
        diarizer=build_diarizer(
            engine=settings.diarization_engine,
            segmentation_model=settings.diarization_segmentation_model,
            embedding_model=settings.diarization_embedding_model,
            max_speakers=settings.diarization_max_speakers,
            threads=settings.cpu_threads,
        ),
        long_audio=long_audio(shared, settings, chunk_store),
        after_work=after_work,
    )
    # Routing is a confirmed publish per upload: many in hand at once, on its own channel.
    subscribe_events(
        broker,
        TRANSCRIBER_QUEUE,
        (AudioUploadedV1,),
        router.on_audio_uploaded,
        prefetch=settings.router_prefetch,
    )
    # One job at a time per process: a second message would only wait behind the model.
    subscribe_events(broker, pool, (AudioUploadedV1,), service.on_audio_uploaded, prefetch=1)
    # One chunk at a time, on its own channel: k idle workers of the pool take one job's
    # chunks in parallel. A worker may hold an upload and a chunk at once; the model serves one.
    subscribe_events(
        broker,
        pool_queue(settings.resolved_model_name(), "chunk"),
        (TranscriptionChunkRequestedV1,),
        service.on_chunk_requested,
        prefetch=1,
    )
    return broker, service


async def serve(
    shared: SharedSettings,
    settings: TranscriberSettings,
    stop: asyncio.Event | None = None,
    *,
    engine: SpeechEngine | None = None,
) -> bool:
    """Run until `stop` is set (SIGTERM/SIGINT set it when not given).

    `engine` replaces faster-whisper for code that calls `serve` itself (the control-plane
    benchmark's instant engine); no setting selects it, so `main` always loads the model.
    Returns False when inference was still running at the end (the process must not wait
    for it, nor let the interpreter tear down around a model in use).
    """
    stop = stop or stop_on_signals()  # before the model loads: a SIGTERM meanwhile counts
    # A job's buffers go back to the OS when it ends; not after an injected engine's
    # (the control-plane benchmark's), which allocates nothing worth a trim per job.
    after_work = release_freed_memory if engine is None else None
    if engine is None:
        model = await asyncio.to_thread(
            lambda: FasterWhisperEngine(settings, max_duration_seconds=shared.max_duration_seconds)
        )
        log.info(
            "model_loaded",
            model=model.model_name,
            device=model.device,
            compute_type=model.compute_type,
            cpu_threads=settings.cpu_threads,
            beam_size=settings.beam_size,
            vad_filter=settings.vad_filter,
            batched=model.batched,
            batch_size=settings.batch_size if model.batched else None,
        )
        engine = model
    else:
        log.info("engine_injected", model=engine.model_name)
    # Declaring its pool is what makes the model served: the router finds its queue.
    await declare_topology(
        shared.amqp_url,
        pools=(settings.resolved_model_name(),),
        initial_group_size=shared.amqp_quorum_initial_group_size,
    )
    store: ChunkStore | None = None
    if shared.media().is_s3:
        store = S3ChunkStore(shared.media(), asyncio.get_running_loop(), settings.download_dir)
    broker, service = build(shared, settings, engine, chunk_store=store, after_work=after_work)
    stopped_cleanly = False

    async def hand_back() -> dict[str, object]:
        nonlocal stopped_cleanly
        if service.busy or service.inferring:
            # The connection is closed, so RabbitMQ already requeued the message; stop the
            # model at its next segment boundary so the process can exit.
            log.warning("transcriber_job_handed_back")
        service.cancel_in_flight()
        stopped_cleanly = await service.wait_idle(INFERENCE_STOP_SECONDS)
        return {"inference_stopped": stopped_cleanly}

    await Worker(
        SERVICE, broker, health_host=settings.health_host, health_port=settings.health_port
    ).run(
        stop,
        ready={
            "queue": served_pool(settings).name,
            "pool": settings.resolved_model_name(),
            "worker": worker_name(settings),
        },
        stopping=lambda: {
            "job_in_hand": service.busy,
            "grace_seconds": settings.graceful_shutdown_seconds,
        },
        after_stop=hand_back,
    )
    return stopped_cleanly


def main(argv: Sequence[str] | None = None) -> None:
    """`scribe-transcriber`: settings from the environment (`SCRIBE_`, `SCRIBE_TRANSCRIBER_`)."""
    argparse.ArgumentParser(
        prog="scribe-transcriber",
        description="Scribe's speech-to-text worker: audio.uploaded.v1 in, transcripts out.",
        epilog="Configured by environment variables (SCRIBE_*, SCRIBE_TRANSCRIBER_*); see README.",
    ).parse_args(argv)
    shared = SharedSettings()
    settings = TranscriberSettings()
    configure_logging(SERVICE, shared.log_level, shared.log_format)
    share_one_arena()  # before the model's threads start (see transcriber.allocator)
    if not aio.run(serve(shared, settings)):
        # The job is already back in the queue; a model still mid-window must not keep the
        # process alive, and tearing the interpreter down under it can crash the process.
        logging.shutdown()
        os._exit(0)


if __name__ == "__main__":
    main()
