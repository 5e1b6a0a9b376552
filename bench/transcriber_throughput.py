"""Throughput of the transcriber worker against plain faster-whisper, same clips, same settings.

Plain: one `WhisperModel` in this process transcribes each LibriSpeech clip in turn.
Worker: a real `scribe-transcriber` process on a fresh RabbitMQ vhost; every clip is
published as `audio.uploaded.v1` at once and the clock stops at the last
`transcript.completed.v1`. Both exclude model loading. Prints audio-seconds per
wall-second for each, their ratio, and both WERs (the pipeline must not change the text).

    uv run python -m bench.transcriber_throughput [--limit N] [--threads N]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import tempfile
import time
from pathlib import Path

from bench.wer import DEFAULT_MANIFEST, Clip, corpus_wer, librispeech_clips
from contracts.transcription import TranscriptCompletedV1, TranscriptionFailedV1
from scribe_runtime.messaging import make_broker, publish_event
from scribe_runtime.topology import declare_topology
from tests.support.servers import LOCAL_AMQP, RabbitServer
from tests.support.workers import (
    EventTap,
    WorkerProcess,
    upload,
    wait_for_consumers,
)
from transcriber.settings import TranscriberSettings

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach a model hub from a benchmark


def plain(clips: list[Clip], settings: TranscriberSettings) -> tuple[float, list[str]]:
    """Wall seconds and texts of plain faster-whisper over the clips."""
    from faster_whisper import WhisperModel

    model = WhisperModel(
        settings.model, device="cpu", compute_type="int8", cpu_threads=settings.cpu_threads
    )
    texts = []
    started = time.perf_counter()
    for clip in clips:
        segments, _info = model.transcribe(
            str(clip.path),
            language="en",
            beam_size=settings.beam_size,
            vad_filter=settings.vad_filter,
        )
        texts.append(" ".join(s.text.strip() for s in segments))
    return time.perf_counter() - started, texts


async def through_worker(
    clips: list[Clip], settings: TranscriberSettings, amqp_url: str
) -> tuple[float, list[str]]:
    """Wall seconds (first publish to last completion) and texts through a worker process."""
    await declare_topology(amqp_url)
    with tempfile.TemporaryDirectory(prefix="scribe-bench-") as tmp:
        media = Path(tmp) / "media"
        media.mkdir()
        jobs = []
        for i, clip in enumerate(clips):
            target = media / f"{i:03d}-{clip.path.name}"
            shutil.copyfile(clip.path, target)
            jobs.append(upload(target, language="en"))
        tap = EventTap(amqp_url)
        await tap.start()
        worker = WorkerProcess(
            "bench-worker",
            amqp_url,
            media,
            Path(tmp),
            SCRIBE_TRANSCRIBER_CPU_THREADS=str(settings.cpu_threads),
            SCRIBE_TRANSCRIBER_BEAM_SIZE=str(settings.beam_size),
            SCRIBE_TRANSCRIBER_DEVICE="cpu",
            SCRIBE_TRANSCRIBER_COMPUTE_TYPE="int8",
            SCRIBE_TRANSCRIBER_VAD_FILTER=str(settings.vad_filter).lower(),
            SCRIBE_LOG_LEVEL="WARNING",
        )
        try:
            await wait_for_consumers(amqp_url, 1)
            broker = make_broker(amqp_url, service="bench")
            async with broker:
                await broker.start()
                started = time.perf_counter()
                await asyncio.gather(*(publish_event(broker, job) for job in jobs))
                await tap.wait_until(
                    lambda: (
                        len(tap.of(TranscriptCompletedV1)) + len(tap.of(TranscriptionFailedV1))
                        >= len(jobs)
                    ),
                    seconds=3600,
                )
                wall = time.perf_counter() - started
            failed = tap.of(TranscriptionFailedV1)
            if failed:
                raise SystemExit(f"{len(failed)} jobs failed: {failed[0].message}")
            done = [tap.of(TranscriptCompletedV1, job.job_id)[0] for job in jobs]
            texts = [d.text for d in done]
            busy = sum(d.processing_seconds or 0.0 for d in done)
            print(f"worker: {busy:.2f}s inside jobs (fetch, decode, inference) of {wall:.2f}s")
        finally:
            worker.stop()
            await tap.close()
    return wall, texts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--manifest", type=Path, default=DEFAULT_MANIFEST)
    parser.add_argument("--limit", type=int, default=None, help="only the first N clips")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for inference")
    parser.add_argument("--amqp-url", default=os.environ.get("SCRIBE_TEST_AMQP_URL", LOCAL_AMQP))
    args = parser.parse_args()
    if not args.manifest.exists():
        print(f"no manifest at {args.manifest}: nothing to measure (needs ../shared/audio)")
        return
    clips = librispeech_clips(args.manifest)[: args.limit]
    settings = TranscriberSettings(
        **({"cpu_threads": args.threads} if args.threads else {}), health_port=None
    )
    audio = sum(c.duration for c in clips)
    refs = [c.reference for c in clips]
    print(
        f"clips={len(clips)} audio={audio:.1f}s model={settings.resolved_model_name()} "
        f"cpu int8 threads={settings.cpu_threads} beam={settings.beam_size} "
        f"vad={settings.vad_filter}"
    )

    plain_wall, plain_texts = plain(clips, settings)
    with RabbitServer.at(args.amqp_url).fresh_vhost("scribe-bench") as vhost_url:
        worker_wall, worker_texts = asyncio.run(through_worker(clips, settings, vhost_url))

    plain_rate, worker_rate = audio / plain_wall, audio / worker_wall
    print(f"{'path':<16} {'wall s':>8} {'audio s/wall s':>15} {'WER %':>7}")
    print(
        f"{'faster-whisper':<16} {plain_wall:>8.2f} {plain_rate:>15.2f} "
        f"{corpus_wer(refs, plain_texts):>7.2f}"
    )
    print(
        f"{'worker':<16} {worker_wall:>8.2f} {worker_rate:>15.2f} "
        f"{corpus_wer(refs, worker_texts):>7.2f}"
    )
    print(f"ratio worker/plain throughput = {worker_rate / plain_rate:.3f}")


if __name__ == "__main__":
    main()
