"""Long audio, transcriber side: memory flat in the length, fan-out, accuracy, a kill mid-job.

Builds a file of `--minutes` (default 60) from the LibriSpeech clips of
`../shared/audio` (decoded to 16 kHz mono, 0.5 s apart, repeated in manifest order until
long enough; the references concatenated the same way), and a 2-minute file the same way.
Real `scribe-transcriber` processes (tiny.en, 1 thread each, their default chunk
settings) on a throwaway vhost; a tap hears every chunk result. Measured side by side:

- peak RSS of a transcriber on the 2-minute file (one-step path) and on the long file
  (split, every chunk transcribed by it): the ratio (target <= 1.25);
- wall time from publishing the upload until every chunk result is on the broker, with
  2 transcribers x 1 thread against 1 x 1 (target ratio <= 0.6); the indexer's assembly
  lands separately, so this is the transcriber side only;
- WER of the chunk results assembled with `contracts.chunks.assemble_segments` against
  plain faster-whisper (one process, same model, threads and beam) on the same file
  (target within 0.5 points);
- SIGKILL of one of two workers once about half of the chunks are in: every chunk still
  comes back, and the audio transcribed in all (the workers' audio-seconds metric, the
  victim's last scrape included) is at most the file's length plus one chunk.

    uv run python -m bench long-audio [--minutes 60] [--quick]
    uv run python -m bench.long_audio --minutes 60 --fan-out-only   # the fan-out alone
"""

from __future__ import annotations

import argparse
import asyncio
import re
import signal
import sys
import tempfile
import time
import wave
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from bench.common import Result, RssSampler, librispeech, machine, throwaway_vhost
from bench.pipeline import Plain, settings
from bench.wer import corpus_wer
from contracts.chunks import (
    TranscriptionChunkedV1,
    TranscriptionChunkTranscribedV1,
    assemble_segments,
)
from contracts.transcription import TranscriptCompletedV1
from scribe_runtime.topology import declare_topology, pool_queue
from tests.support.ports import free_port
from tests.support.workers import (
    EventTap,
    WorkerProcess,
    publish,
    put,
    upload,
    wait_for_consumers,
)
from transcriber.audio import SAMPLE_RATE, decode_audio
from transcriber.settings import TranscriberSettings

GAP_SECONDS = 0.5
_METRIC = re.compile(r"^scribe_transcriber_audio_seconds_sum\s+([0-9.eE+-]+)$", re.MULTILINE)


def _pcm16(path: Path) -> bytes:
    samples = decode_audio(path, max_duration_seconds=3600).samples
    return np.clip(np.round(samples * 32768), -32768, 32767).astype("<i2").tobytes()


def build_file(
    path: Path, minutes: float, *, ending: tuple[Path, str] | None = None
) -> tuple[Path, str, float]:
    """A WAV of LibriSpeech clips, `minutes` long at least: (path, reference, seconds).

    `ending`: (audio, its text) said last, after the clips, the file still `minutes` long.
    """
    clips = librispeech()
    if not clips:
        raise SystemExit("../shared/audio has no LibriSpeech clips (manifest.tsv)")
    gap = np.zeros(int(GAP_SECONDS * SAMPLE_RATE), dtype="<i2").tobytes()
    last = _pcm16(ending[0]) + gap if ending is not None else b""
    references: list[str] = []
    total = 0
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(SAMPLE_RATE)
        i = 0
        while total + len(last) // 2 < minutes * 60 * SAMPLE_RATE:
            clip = clips[i % len(clips)]
            pcm = _pcm16(clip.path)
            out.writeframes(pcm + gap)
            total += len(pcm) // 2 + len(gap) // 2
            references.append(clip.reference)
            i += 1
        if ending is not None:
            out.writeframes(last)
            total += len(last) // 2
            references.append(ending[1])
    return path, " ".join(references), total / SAMPLE_RATE


async def _audio_seconds(port: int) -> float | None:
    try:
        async with httpx.AsyncClient(timeout=2) as client:
            text = (await client.get(f"http://127.0.0.1:{port}/metrics")).text
    except httpx.HTTPError:
        return None
    match = _METRIC.search(text)
    return float(match.group(1)) if match else 0.0


async def run_workers(
    count: int, path: Path, tmp: Path, *, kill_at_fraction: float | None = None
) -> dict[str, Any]:
    """`count` workers on a fresh vhost take one job (`path`) to its last chunk result."""
    with throwaway_vhost("scribe-bench-long") as amqp_url:
        await declare_topology(amqp_url)
        media = Path(tempfile.mkdtemp(prefix="media-", dir=tmp))
        tap = EventTap(amqp_url)
        await tap.start()
        ports = [free_port() for _ in range(count)]
        workers = [
            WorkerProcess(
                f"worker-{i + 1}",
                amqp_url,
                media,
                tmp,
                SCRIBE_TRANSCRIBER_HEALTH_PORT=str(ports[i]),
                SCRIBE_LOG_LEVEL="WARNING",
            )
            for i in range(count)
        ]
        try:
            await wait_for_consumers(amqp_url, count, queue=pool_queue("tiny.en", "chunk").name)
            sampler = RssSampler({w.name: w.process.pid for w in workers})
            sampler.start()
            job = upload(put(media, path, path.name))
            began = time.perf_counter()
            await publish(amqp_url, job)
            last_seen = dict.fromkeys(range(count), 0.0)
            killed: int | None = None

            def chunks_in() -> int:
                return len({r.chunk_index for r in tap.of(TranscriptionChunkTranscribedV1)})

            def finished() -> bool:
                if tap.of(TranscriptCompletedV1, job.job_id):
                    return True
                plans = tap.of(TranscriptionChunkedV1, job.job_id)
                return bool(plans) and chunks_in() >= len(plans[0].chunks)

            async with asyncio.timeout(3 * 3600):
                while not finished():
                    await asyncio.sleep(1.0)
                    for i in range(count):
                        if i != killed:
                            seen = await _audio_seconds(ports[i])
                            if seen is not None:
                                last_seen[i] = seen
                    plans = tap.of(TranscriptionChunkedV1, job.job_id)
                    if (
                        kill_at_fraction is not None
                        and killed is None
                        and plans
                        and chunks_in() >= kill_at_fraction * len(plans[0].chunks)
                    ):
                        killed = 0
                        workers[0].signal(signal.SIGKILL)
            wall = time.perf_counter() - began
            peaks = sampler.stop()
            for i in range(count):
                if i != killed:
                    seen = await _audio_seconds(ports[i])
                    last_seen[i] = seen if seen is not None else last_seen[i]
            plans = tap.of(TranscriptionChunkedV1, job.job_id)
            by_index: dict[int, TranscriptionChunkTranscribedV1] = {}
            for result in tap.of(TranscriptionChunkTranscribedV1, job.job_id):
                by_index.setdefault(result.chunk_index, result)
            completed = tap.of(TranscriptCompletedV1, job.job_id)
            text = (
                completed[0].text
                if completed
                else " ".join(s.text for s in assemble_segments(list(by_index.values())))
            )
            results = tap.of(TranscriptionChunkTranscribedV1, job.job_id)
            return {
                "wall_s": wall,
                "peak_rss_mib": max(peaks.values()),
                "chunks": len(plans[0].chunks) if plans else 1,
                "longest_chunk_s": max((c.end - c.start for c in plans[0].chunks), default=0)
                if plans
                else 0,
                "text": text,
                "by_worker": {
                    w.name: sum(1 for r in results if r.worker == w.name) for w in workers
                },
                "metric_audio_seconds": sum(last_seen.values()),
                "results_audio_seconds": sum(r.audio_seconds for r in results),
                "killed": workers[killed].name if killed is not None else None,
            }
        finally:
            for worker in workers:
                worker.stop()
            await tap.close()


def split_overhead(path: Path, tmp: Path, chunk_seconds: float = 60.0) -> dict[str, float]:
    """One step vs split into `chunk_seconds` chunks, both in this process (no broker).

    What choosing the threshold trades: the chunked path's extra work (a decode pass, VAD
    windows, chunk files, a model call per chunk, context lost at each cut) on a file
    short enough for one step.
    """
    import threading
    import uuid

    from contracts.chunks import ChunkSpec
    from transcriber.audio import StreamedAudio, probe_duration
    from transcriber.chunk_store import FileChunkStore
    from transcriber.chunking import ChunkPolicy, plan_chunks
    from transcriber.engine import EngineRequest, FasterWhisperEngine
    from transcriber.long_audio import chunk_specs, keep_owned

    engine = FasterWhisperEngine(TranscriberSettings(cpu_threads=1, health_port=None))
    request = EngineRequest(language="en", word_timestamps=False)
    never = threading.Event()
    began = time.perf_counter()
    engine.transcribe(path, request, on_segment=lambda *_: None, cancelled=never)
    one_step = time.perf_counter() - began
    media = tmp / "overhead"
    began = time.perf_counter()
    planned = plan_chunks(
        StreamedAudio(path, max_duration_seconds=36000),
        estimated_seconds=probe_duration(path),
        policy=ChunkPolicy(chunk_seconds=chunk_seconds, search_seconds=20.0),
        sink=FileChunkStore(media).sink("acme", uuid.uuid4()),
    )
    split_s = time.perf_counter() - began
    specs: list[ChunkSpec] = chunk_specs(planned.cuts)
    for spec in specs:
        local = media / "acme" / "chunks"
        chunk_path = next(local.glob(f"*/{Path(str(spec.audio_uri)).name}"))
        overlap = spec.start < spec.core_start or spec.end > spec.core_end
        result = engine.transcribe(
            chunk_path,
            EngineRequest(language="en", word_timestamps=overlap),
            on_segment=lambda *_: None,
            cancelled=never,
        )
        keep_owned(result.segments, spec, words=False)
    chunked = time.perf_counter() - began
    return {
        "one_step_s": one_step,
        "chunked_s": chunked,
        "split_s": split_s,
        "chunks": float(len(specs)),
        "ratio": chunked / one_step,
    }


def plain_run(path: Path) -> tuple[float, str]:
    return Plain(settings(threads=1)).transcribe(path)


def run(quick: bool = False, minutes: float | None = None) -> Result:
    minutes = minutes if minutes is not None else (6.0 if quick else 60.0)
    defaults = TranscriberSettings(health_port=None)
    load_before = machine()["load_average"]
    with tempfile.TemporaryDirectory(prefix="scribe-bench-long-") as tmp_name:
        tmp = Path(tmp_name)
        long_path, reference, seconds = build_file(tmp / "long.wav", minutes)
        short_path, _, short_seconds = build_file(tmp / "short.wav", 2.0)
        short = asyncio.run(run_workers(1, short_path, tmp))
        one = asyncio.run(run_workers(1, long_path, tmp))
        two = asyncio.run(run_workers(2, long_path, tmp))
        kill = asyncio.run(run_workers(2, long_path, tmp, kill_at_fraction=0.5))
        plain_wall, plain_text = plain_run(long_path)
        overhead = split_overhead(short_path, tmp)
    chunk_s = defaults.chunk_seconds
    wer_chunked = corpus_wer([reference], [one["text"]])
    wer_plain = corpus_wer([reference], [plain_text])
    result = Result(
        name="long_audio",
        title=f"long audio ({seconds / 60:.1f} min), transcriber side, tiny.en, 1 thread/worker",
        columns=["measure", "value", "peer", "ratio / delta", "target"],
        settings={
            "minutes": round(seconds / 60, 2),
            "short_minutes": round(short_seconds / 60, 2),
            "chunk_seconds": chunk_s,
            "chunk_threshold_seconds": defaults.chunk_threshold_seconds,
            "beam_size": defaults.beam_size,
            "load_before": load_before,
            "load_after": machine()["load_average"],
        },
    )
    rss_ratio = one["peak_rss_mib"] / short["peak_rss_mib"]
    fan = two["wall_s"] / one["wall_s"]
    kill_bound = seconds + chunk_s
    result.rows = [
        [
            "peak RSS MiB: long file vs 2-min file",
            round(one["peak_rss_mib"], 1),
            round(short["peak_rss_mib"], 1),
            round(rss_ratio, 3),
            "<= 1.25",
        ],
        [
            "wall s to last chunk: 2 x 1 thread vs 1 x 1",
            round(two["wall_s"], 1),
            round(one["wall_s"], 1),
            round(fan, 3),
            "<= 0.6",
        ],
        [
            "WER %: assembled chunks vs plain faster-whisper",
            round(wer_chunked, 2),
            round(wer_plain, 2),
            round(wer_chunked - wer_plain, 2),
            "within 0.5",
        ],
        [
            "audio s transcribed with a SIGKILL (metric)",
            round(kill["metric_audio_seconds"], 1),
            round(kill_bound, 1),
            round(kill["metric_audio_seconds"] - seconds, 1),
            "<= length + 1 chunk",
        ],
        [
            "2-min file, in process: split in 60 s chunks vs one step (s)",
            round(overhead["chunked_s"], 1),
            round(overhead["one_step_s"], 1),
            round(overhead["ratio"], 3),
            "why the threshold",
        ],
        [
            "plain faster-whisper wall s (same file, 1 thread)",
            round(plain_wall, 1),
            round(one["wall_s"], 1),
            round(one["wall_s"] / plain_wall, 3),
            "-",
        ],
    ]
    result.notes = [
        f"chunks: {one['chunks']} (longest {one['longest_chunk_s']:.0f} s); "
        f"2 workers took {two['by_worker']}; kill run: {kill['killed']} killed, "
        f"results by worker {kill['by_worker']}, audio in results "
        f"{kill['results_audio_seconds']:.0f} s",
        f"load average before {load_before}, after {result.settings['load_after']}",
    ]
    result.figures = {
        "short": {k: v for k, v in short.items() if k != "text"},
        "one": {k: v for k, v in one.items() if k != "text"},
        "two": {k: v for k, v in two.items() if k != "text"},
        "kill": {k: v for k, v in kill.items() if k != "text"},
        "plain_wall_s": plain_wall,
        "split_overhead": overhead,
        "wer_chunked": wer_chunked,
        "wer_plain": wer_plain,
        "rss_ratio": rss_ratio,
        "fan_out_ratio": fan,
        "audio_seconds": seconds,
    }
    return result


def fan_out(minutes: float) -> Result:
    """Only the fan-out: the long file, 1 x 1 thread then 2 x 1, wall to the last chunk."""
    load_before = machine()["load_average"]
    with tempfile.TemporaryDirectory(prefix="scribe-bench-fan-out-") as tmp_name:
        tmp = Path(tmp_name)
        path, _, seconds = build_file(tmp / "long.wav", minutes)
        one = asyncio.run(run_workers(1, path, tmp))
        load_between = machine()["load_average"]
        two = asyncio.run(run_workers(2, path, tmp))
    result = Result(
        name="long_audio_fan_out",
        title=f"long audio ({seconds / 60:.1f} min): fan-out, tiny.en, 1 thread/worker",
        columns=["measure", "value", "peer", "ratio / delta", "target"],
        settings={
            "minutes": round(seconds / 60, 2),
            "load_before": load_before,
            "load_between": load_between,
            "load_after": machine()["load_average"],
        },
    )
    result.rows = [
        [
            "wall s to last chunk: 2 x 1 thread vs 1 x 1",
            round(two["wall_s"], 1),
            round(one["wall_s"], 1),
            round(two["wall_s"] / one["wall_s"], 3),
            "<= 0.6",
        ]
    ]
    result.notes = [
        f"chunks: {one['chunks']}; 2 workers took {two['by_worker']}",
        f"load average before {load_before}, between {load_between}, "
        f"after {result.settings['load_after']}",
    ]
    result.figures = {
        "one": {k: v for k, v in one.items() if k != "text"},
        "two": {k: v for k, v in two.items() if k != "text"},
        "audio_seconds": seconds,
    }
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.long_audio")
    parser.add_argument("--minutes", type=float, default=60.0)
    parser.add_argument(
        "--fan-out-only", action="store_true", help="only 1 x 1 vs 2 x 1 on the long file"
    )
    args = parser.parse_args(argv)
    result = fan_out(args.minutes) if args.fan_out_only else run(minutes=args.minutes)
    print(result.table())
    print(result.write())


if __name__ == "__main__":
    main(sys.argv[1:])
