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
from collections.abc import Sequence

import structlog
from faststream.rabbit import RabbitBroker

from contracts.audio import AudioUploadedV1
from scribe_runtime import aio
from scribe_runtime.amqp import Delivery
from scribe_runtime.cancellations import FilesystemCancelMarks
from scribe_runtime.consumer import subscribe_events
from scribe_runtime.logging import configure_logging
from scribe_runtime.messaging import dead_letter, make_broker
from scribe_runtime.publishing import EventPublisher
from scribe_runtime.settings import SharedSettings
from scribe_runtime.topology import TRANSCRIBER_QUEUE, declare_topology
from scribe_runtime.worker import Worker, producer_name, stop_on_signals
from transcriber.admission import Admission
from transcriber.engine import FasterWhisperEngine, SpeechEngine
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


def build(
    shared: SharedSettings, settings: TranscriberSettings, engine: SpeechEngine
) -> tuple[RabbitBroker, Transcriber]:
    """The broker with the transcriber subscribed, wired to the real adapters."""
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
        await dead_letter(broker, delivery, queue=TRANSCRIBER_QUEUE.name, code=code, reason=reason)

    service = Transcriber(
        engine=engine,
        source=source,
        publish=EventPublisher(broker, PUBLISHES).publish,
        admission=Admission(shared.tenants),
        dead_letter=dead_letter_here,
        worker=worker_name(settings),
        producer=producer_name(SERVICE),
        policy=JobPolicy(
            word_timestamps=settings.word_timestamps,
            progress_min_fraction=settings.progress_min_fraction,
            progress_min_interval_seconds=settings.progress_min_interval_seconds,
            delivery_limit=TRANSCRIBER_QUEUE.delivery_limit,
            cancel_poll_seconds=settings.cancel_poll_seconds,
        ),
        marks=FilesystemCancelMarks(shared.media_root),
    )
    # One job at a time per process: a second message would only wait behind the model.
    subscribe_events(
        broker, TRANSCRIBER_QUEUE, (AudioUploadedV1,), service.on_audio_uploaded, prefetch=1
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
    if engine is None:
        model = await asyncio.to_thread(FasterWhisperEngine, settings)
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
    await declare_topology(
        shared.amqp_url, initial_group_size=shared.amqp_quorum_initial_group_size
    )
    broker, service = build(shared, settings, engine)
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
        ready={"queue": TRANSCRIBER_QUEUE.name, "worker": worker_name(settings)},
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
    if not aio.run(serve(shared, settings)):
        # The job is already back in the queue; a model still mid-window must not keep the
        # process alive, and tearing the interpreter down under it can crash the process.
        logging.shutdown()
        os._exit(0)


if __name__ == "__main__":
    main()
