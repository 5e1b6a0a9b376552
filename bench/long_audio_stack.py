"""Long audio through the whole stack: the ETA, search on the last minute, the exports.

Builds a file of `--minutes` (default 60) as `bench.long_audio` builds it (LibriSpeech
clips of `../shared/audio`, 16 kHz mono, 0.5 s apart), ending with a phrase Festival reads
(`tests.speech`) that says `WORD`, a word no LibriSpeech clip says, so it is said only in
the last minute. Runs the real stack on a throwaway vhost and database
(`tests.support.stack.running_stack`: ingest, indexer, webhooks and 2 `scribe-transcriber`
processes, tiny.en, 1 thread each, default chunk settings), uploads the file over HTTP and
measures, with a tap on the broker (every chunk result, progress and completion, each
stamped when it is heard):

- ETA: the job's API representation is polled every 0.5 s; at the first poll whose
  `progress` is >= 0.5, its `eta_seconds` against the time the job actually took from
  then to its completion (heard on the broker): the error in % (target within 30 %). The
  same for the first `transcription.progress.v1` at >= 0.5. Progress monotonic in both.
- search: from when the chunk result that holds `WORD` is heard on the broker until
  `GET /v1/search?q=WORD` (polled every 20 ms) returns the job (target <= 1.5 s); also
  from the job's last chunk result (the indexer assembles a long job when its last chunk
  is in, so the word is searchable from then on);
- the SRT and VTT exports of the job: they parse (`srt`, `webvtt-py`), and cues are in
  order, each ending after it starts and before the next starts;
- the job's wall time (upload sent -> completion heard) beside plain faster-whisper on the
  same file in one process (1 thread, same model and beam);
- every process's peak RSS during the job (sampled every 20 ms) against its RSS once the
  stack was ready: ingest (which streams the upload) and the indexer (which assembles the
  transcript) should not grow with the file's length.

    uv run python -m bench long-audio-stack [--minutes 60] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import itertools
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Final
from uuid import UUID

import httpx
import srt
import webvtt

from bench.common import (
    API_HEADERS,
    Result,
    RssSampler,
    machine,
    status_kib,
    throwaway_database,
    throwaway_vhost,
)
from bench.long_audio import build_file, plain_run
from contracts.chunks import TranscriptionChunkTranscribedV1
from contracts.transcription import TranscriptCompletedV1, TranscriptionProgressV1
from tests.speech import synthesize
from tests.support.stack import running_stack
from tests.support.workers import EventTap
from transcriber.settings import TranscriberSettings

WORD: Final = "saxophone"
"""Said only at the very end of the file (no LibriSpeech reference holds it)."""
ENDING: Final = f"That is all for today. The last word is {WORD}. Once more: {WORD}."
POLL_SECONDS: Final = 0.5
SEARCH_POLL_SECONDS: Final = 0.02
WORKERS: Final = 2


def says_word(result: TranscriptionChunkTranscribedV1) -> bool:
    return any(WORD in s.text.lower() for s in result.segments)


def cues_in_order(spans: list[tuple[float, float]]) -> bool:
    """Each cue ends after it starts, and no later than the next one starts."""
    return all(start < end for start, end in spans) and all(
        a[1] <= b[0] + 1e-3 for a, b in itertools.pairwise(spans)
    )


def eta_error(eta: float | None, at: float | None, done: float) -> dict[str, Any]:
    """An ETA given at `at` against the remaining time actually taken."""
    if eta is None or at is None:
        return {"eta_s": None, "actual_s": None, "error_pct": None}
    actual = done - at
    return {
        "eta_s": round(eta, 1),
        "actual_s": round(actual, 1),
        "error_pct": round((eta - actual) / actual * 100, 1) if actual > 0 else None,
    }


async def first_search_hit(
    client: httpx.AsyncClient, job_id: str, *, within: float
) -> float | None:
    """When search first finds `WORD` in the job (perf_counter), polling; None if never."""
    deadline = time.perf_counter() + within
    while time.perf_counter() < deadline:
        response = await client.get("/v1/search", params={"q": WORD})
        if response.status_code == 200 and any(
            h["job_id"] == job_id for h in response.json()["hits"]
        ):
            return time.perf_counter()
        await asyncio.sleep(SEARCH_POLL_SECONDS)
    return None


async def run_job(api: str, amqp_url: str, path: Path, seconds: float) -> dict[str, Any]:
    """Upload `path`, follow it to its completion, measure the ETA, search and exports."""
    tap = EventTap(amqp_url)
    await tap.start()
    within = max(600.0, 3 * seconds)
    try:
        async with httpx.AsyncClient(base_url=api, headers=API_HEADERS, timeout=120) as client:
            began = time.perf_counter()
            with path.open("rb") as body:
                answer = await client.post(
                    "/v1/transcriptions", files={"file": (path.name, body, "audio/wav")}
                )
            answer.raise_for_status()
            job_id = answer.json()["id"]
            job = UUID(job_id)

            def results() -> list[TranscriptionChunkTranscribedV1]:
                return tap.of(TranscriptionChunkTranscribedV1, job)

            async def search_after_word() -> tuple[float | None, float | None]:
                await tap.wait_until(lambda: any(says_word(r) for r in results()), within)
                said = tap.heard_at(next(r for r in results() if says_word(r)))
                return said, await first_search_hit(client, job_id, within=120)

            search = asyncio.create_task(search_after_word())
            polls: list[tuple[float, float, float | None, str]] = []
            async with asyncio.timeout(within):
                while not tap.of(TranscriptCompletedV1, job):
                    response = await client.get(f"/v1/transcriptions/{job_id}")
                    if response.status_code == 200:
                        body = response.json()
                        polls.append(
                            (
                                time.perf_counter(),
                                float(body.get("progress") or 0.0),
                                body.get("eta_seconds"),
                                body["status"],
                            )
                        )
                        if body["status"] == "failed":
                            raise RuntimeError(f"the job failed: {body.get('error')}")
                    await asyncio.sleep(POLL_SECONDS)
            done = tap.heard_at(tap.of(TranscriptCompletedV1, job)[0])
            said: float | None = None
            hit: float | None = None
            if any(says_word(r) for r in results()):
                with contextlib.suppress(TimeoutError):
                    said, hit = await asyncio.wait_for(search, timeout=180)
            else:
                search.cancel()  # the model did not hear the word: nothing to look for

            first: dict[int, TranscriptionChunkTranscribedV1] = {}
            for result in results():
                first.setdefault(result.chunk_index, result)
            last_in = max(tap.heard_at(r) for r in first.values())
            word_chunk = next((r.chunk_index for r in first.values() if says_word(r)), None)
            last_text = " ".join(s.text for s in first[max(first)].segments)[-200:]
            finishing = max(first.values(), key=tap.heard_at).chunk_index

            half_poll = next(
                (p for p in polls if p[1] >= 0.5 and p[3] == "processing" and p[2] is not None),
                None,
            )
            progress = tap.of(TranscriptionProgressV1, job)
            half_event = next(
                (e for e in progress if e.progress >= 0.5 and e.eta_seconds is not None), None
            )
            api_progress = [p[1] for p in polls]
            event_progress = [e.progress for e in progress]

            exports: dict[str, Any] = {}
            srt_text = (await client.get(f"/v1/transcriptions/{job_id}/transcript.srt")).text
            cues = list(srt.parse(srt_text))
            spans = [(c.start.total_seconds(), c.end.total_seconds()) for c in cues]
            exports["srt"] = {"cues": len(cues), "in_order": cues_in_order(spans)}
            vtt_text = (await client.get(f"/v1/transcriptions/{job_id}/transcript.vtt")).text
            captions = webvtt.from_buffer(io.StringIO(vtt_text)).captions
            # `start_in_seconds` truncates to whole seconds: milliseconds, as SRT has them.
            spans = [
                (c.start_time.in_milliseconds() / 1000, c.end_time.in_milliseconds() / 1000)
                for c in captions
            ]
            exports["vtt"] = {"cues": len(captions), "in_order": cues_in_order(spans)}
            final = (await client.get(f"/v1/transcriptions/{job_id}")).json()
            return {
                "wall_s": done - began,
                "chunks": len(first),
                "workers": sorted({r.worker or "" for r in first.values()}),
                "word_chunk": word_chunk,
                "last_chunk_text_tail": last_text,
                "finishing_chunk": finishing,
                "search_after_word_s": None if hit is None or said is None else hit - said,
                "search_after_last_chunk_s": None if hit is None else hit - last_in,
                "eta_api": eta_error(
                    half_poll[2] if half_poll else None,
                    half_poll[0] if half_poll else None,
                    done,
                )
                | {"progress": half_poll[1] if half_poll else None},
                "eta_events": eta_error(
                    half_event.eta_seconds if half_event else None,
                    tap.heard_at(half_event) if half_event else None,
                    done,
                )
                | {"progress": half_event.progress if half_event else None},
                "api_progress_monotonic": api_progress == sorted(api_progress),
                "event_progress_monotonic": event_progress == sorted(event_progress),
                "api_progress": [round(p, 3) for p in dict.fromkeys(api_progress)],
                "event_progress": [round(p, 3) for p in event_progress],
                "exports": exports,
                "duration_s": final["audio"]["duration_seconds"],
            }
    finally:
        await tap.close()


def run(quick: bool = False, minutes: float | None = None) -> Result:
    minutes = minutes if minutes is not None else (6.0 if quick else 60.0)
    defaults = TranscriberSettings(health_port=None)
    load_before = machine()["load_average"]
    env = {"SCRIBE_TRANSCRIBER_CPU_THREADS": "1", "SCRIBE_LOG_LEVEL": "INFO"}
    with tempfile.TemporaryDirectory(prefix="scribe-bench-long-stack-") as tmp_name:
        tmp = Path(tmp_name)
        ending = (synthesize(ENDING), ENDING)
        path, reference, seconds = build_file(tmp / "long.wav", minutes, ending=ending)
        if WORD in reference.lower().replace(ENDING.lower(), ""):
            raise SystemExit(f"{WORD!r} is said by a clip too: pick another word")
        with (
            throwaway_vhost("scribe-bench-long-stack") as amqp_url,
            throwaway_database("scribe_bench_long_stack") as database_url,
            running_stack(
                amqp_url, database_url, tmp / "stack", transcribers=WORKERS, env=env
            ) as stack,
        ):
            load_at_job = machine()["load_average"]
            pids = {name: process.pid for name, process in stack.processes.items()}
            at_ready = {name: status_kib(pid, "VmRSS") / 1024 for name, pid in pids.items()}
            sampler = RssSampler(pids)
            sampler.start()
            try:
                job = asyncio.run(run_job(stack.api, amqp_url, path, seconds))
            finally:
                peaks = sampler.stop()
        load_after_job = machine()["load_average"]
        plain_wall, _ = plain_run(path)
    load_after = machine()["load_average"]
    result = Result(
        name="long_audio_stack",
        title=f"long audio ({seconds / 60:.1f} min) through the whole stack, "
        f"{WORKERS} transcribers x 1 thread, tiny.en",
        columns=["measure", "value", "peer", "ratio / delta", "target"],
        settings={
            "minutes": round(seconds / 60, 2),
            "workers": WORKERS,
            "cpu_threads": 1,
            "chunk_seconds": defaults.chunk_seconds,
            "chunk_threshold_seconds": defaults.chunk_threshold_seconds,
            "beam_size": defaults.beam_size,
            "word": WORD,
            "load_before": load_before,
            "load_at_job": load_at_job,
            "load_after_job": load_after_job,
            "load_after": load_after,
        },
    )

    def eta_row(label: str, eta: dict[str, Any]) -> list[Any]:
        at = "-" if eta["progress"] is None else f"{eta['progress']:.3f}"
        return [
            f"{label} (progress {at}): ETA s vs remaining s taken",
            eta["eta_s"],
            eta["actual_s"],
            None if eta["error_pct"] is None else f"{eta['error_pct']:+.1f} %",
            "within 30 %",
        ]

    def seconds_or_none(value: float | None) -> float | None:
        return None if value is None else round(value, 3)

    exports = job["exports"]
    result.rows = [
        eta_row("ETA, job API at first progress >= 0.5", job["eta_api"]),
        eta_row("ETA, first transcription.progress.v1 >= 0.5", job["eta_events"]),
        [
            "progress monotonic: job API polls / progress events",
            "yes" if job["api_progress_monotonic"] else "NO",
            "yes" if job["event_progress_monotonic"] else "NO",
            None,
            "monotonic",
        ],
        [
            f"search finds '{WORD}' (last minute): s after its chunk result / the last one",
            seconds_or_none(job["search_after_word_s"]),
            seconds_or_none(job["search_after_last_chunk_s"]),
            None,
            "<= 1.5 s",
        ],
        [
            "SRT / VTT exports: cues parsed, in order",
            f"{exports['srt']['cues']} {'yes' if exports['srt']['in_order'] else 'NO'}",
            f"{exports['vtt']['cues']} {'yes' if exports['vtt']['in_order'] else 'NO'}",
            None,
            "parse, monotonic",
        ],
        *(
            [
                f"{name} peak RSS MiB during the job vs when ready",
                round(peaks[name], 1),
                round(at_ready[name], 1),
                round(peaks[name] - at_ready[name], 1),
                "flat in the length",
            ]
            for name in ("ingest", "indexer")
        ),
        [
            "wall s: upload -> completed vs plain faster-whisper (1 thread, in process)",
            round(job["wall_s"], 1),
            round(plain_wall, 1),
            round(job["wall_s"] / plain_wall, 3),
            "-",
        ],
    ]
    result.notes = [
        f"{job['chunks']} chunks; '{WORD}' in chunk {job['word_chunk']}, the last to finish "
        f"was chunk {job['finishing_chunk']}; results by {job['workers']}",
        f"progress seen: API {job['api_progress']}, events {job['event_progress']}",
        f"the last chunk ends: ...{job['last_chunk_text_tail'][-120:]}",
        "peak RSS MiB (when ready): "
        + ", ".join(f"{n} {peaks[n]:.0f} ({at_ready[n]:.0f})" for n in sorted(peaks)),
        f"load average before {load_before}, at the job {load_at_job}, after it "
        f"{load_after_job}, at the end {load_after}",
    ]
    result.figures = {
        "job": job,
        "plain_wall_s": plain_wall,
        "audio_seconds": seconds,
        "peak_rss_mib": peaks,
        "rss_at_ready_mib": at_ready,
    }
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.long_audio_stack")
    parser.add_argument("--minutes", type=float, default=60.0)
    args = parser.parse_args(argv)
    result = run(minutes=args.minutes)
    print(result.table())
    print(result.write())


if __name__ == "__main__":
    main(sys.argv[1:])
