"""Memory: peak RSS of each service at idle and during a job, plain faster-whisper's beside
the transcriber's, and ingest during a 1 GB upload.

The stack (one transcriber, `nproc` threads) starts on a throwaway vhost and database; each
service's VmRSS is read at idle (ready, no job yet), then sampled every 20 ms while the
2-minute TED-LIUM file goes upload → indexed. Plain faster-whisper's peak (VmHWM) comes from
a separate process that loads the same model and transcribes the same file with the same
settings. The 1 GB upload is `bench.ingest_upload` (its own ingest process). DESIGN.md
targets: a transcriber at most 1.2 x plain faster-whisper's peak; ingest grows at most 50 MB
during a 1 GB upload.

    uv run python -m bench memory [--quick]
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from bench import ingest_upload
from bench.common import Result, RssSampler, clip_named, librispeech, status_kib
from bench.pipeline import Plain, settings, settings_figures, stack, through_stack

LONG = "tedlium_long_120s.flac"
SERVICES = ("ingest", "indexer", "transcriber")


def plain_peak_mib(path: Path, threads: int) -> float:
    """VmHWM of a fresh process that loads the model and transcribes `path` (MiB)."""
    done = subprocess.run(
        [sys.executable, "-m", "bench.memory", str(path), str(threads)],
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    return float(done.stdout.split()[-1])


def run(quick: bool = False) -> Result:
    clip = librispeech()[0] if quick else clip_named(LONG)
    threads = len(os.sched_getaffinity(0))
    s = settings(threads=threads)
    with stack(s) as running:
        time.sleep(2.0)  # let start-up settle (imports, pools, first heartbeats)
        pids = {name: running.processes[name].pid for name in SERVICES}
        idle = {name: status_kib(pid, "VmRSS") / 1024 for name, pid in pids.items()}
        sampler = RssSampler(pids)
        sampler.start()
        wall, _text = through_stack(running, clip)
        during = sampler.stop()
    plain = plain_peak_mib(clip.path, threads)
    upload = ingest_upload.run(64 if quick else 1024)

    result = Result(
        name="memory",
        title="peak RSS (MiB) per service: idle, during a job, ingest during a large upload",
        columns=["process", "idle MiB", "peak during job MiB", "note"],
        settings=settings_figures(s, clip=clip.path.name, upload_mib=round(upload["upload_mib"])),
    )
    for name in SERVICES:
        note = ""
        if name == "transcriber":
            note = f"{during[name] / plain:.2f} x plain faster-whisper (target <= 1.2)"
        result.rows.append([name, round(idle[name], 1), round(during[name], 1), note])
    result.rows.append(["plain faster-whisper", None, round(plain, 1), "same model, file, threads"])
    result.rows.append(
        [
            f"ingest, {upload['upload_mib']:.0f} MiB upload",
            round(upload["baseline_rss_mib"], 1),
            round(upload["peak_rss_mib"], 1),
            f"+{upload['peak_rss_growth_mib']:.1f} MiB (target <= 50), "
            f"{upload['mib_per_s']:.0f} MiB/s",
        ]
    )
    result.figures = {
        "idle_rss_mib": idle,
        "job_peak_rss_mib": during,
        "job_wall_s": wall,
        "plain_faster_whisper_peak_mib": plain,
        "transcriber_vs_plain": during["transcriber"] / plain,
        "ingest_upload": upload,
    }
    return result


def _plain_main(path: str, threads: int) -> None:
    Plain(settings(threads=threads)).transcribe(Path(path))
    print(status_kib(os.getpid(), "VmHWM") / 1024)


if __name__ == "__main__":
    _plain_main(sys.argv[1], int(sys.argv[2]))
