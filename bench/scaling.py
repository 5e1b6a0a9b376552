"""Scaling: audio seconds per wall second for each worker layout vs plain faster-whisper.

The same LibriSpeech clips through each layout, the CPU threads split to match the cores:
plain faster-whisper (one model, `nproc` threads, clips one after another), the whole stack
with one transcriber of `nproc` threads, with `nproc` transcribers of one thread each (what
`scribe up` starts by default) and with `2 x nproc` of one thread (oversubscribed; not in
quick runs). The notes say how the default layout compares with the best one measured. A
stack batch is every clip uploaded at once; its wall time runs from the first upload to the
last completion indexed. Each configuration runs `rounds` batches (plain runs before,
between and after the stacks); the figures are medians.

    uv run python -m bench scaling [--quick]
"""

from __future__ import annotations

import os
import time
from typing import Any

from bench.common import Clip, Result, librispeech, median
from bench.pipeline import Plain, settings, settings_figures, stack, upload, wait_indexed
from scribe_cli.commands.stack import default_transcribers
from tests.support.stack import Stack


def _stack_batch(running: Stack, clips: list[Clip]) -> float:
    jobs, began = [], []
    for clip in clips:
        job, at = upload(running, clip)
        jobs.append(job)
        began.append(at)
    indexed = wait_indexed(running, jobs)
    return max(indexed.values()) - min(began)


def _plain_batch(plain: Plain, clips: list[Clip]) -> float:
    started = time.perf_counter()
    for clip in clips:
        plain.transcribe(clip.path)
    return time.perf_counter() - started


def run(quick: bool = False) -> Result:
    cores = len(os.sched_getaffinity(0))
    clips = [c for c in librispeech() if 10.0 <= c.duration <= 20.0][: 3 if quick else 8]
    rounds = 1 if quick else 2
    audio = sum(c.duration for c in clips)
    plain = Plain(settings(threads=cores))
    plain.transcribe(clips[0].path)  # first-use costs, not measured
    plain_walls = [_plain_batch(plain, clips)]
    default = (default_transcribers(), max(1, cores // default_transcribers()))
    # The split layouts, and oversubscribed single-threaded replicas (2 per core).
    configs = [(1, cores), (cores, 1)] + ([] if quick else [(2 * cores, 1)])
    if default not in configs:
        configs.append(default)
    runs: list[dict[str, Any]] = []
    for processes, threads in configs:
        with stack(settings(threads=threads), transcribers=processes) as running:
            _stack_batch(running, clips[:processes])  # every worker past its first job
            walls = [_stack_batch(running, clips) for _ in range(rounds)]
        runs.append(
            {
                "label": f"stack {processes}x{threads} thr",
                "processes": processes,
                "threads": threads,
                "walls_s": walls,
            }
        )
        plain_walls.append(_plain_batch(plain, clips))
    runs.insert(
        0,
        {"label": f"plain 1x{cores} thr", "processes": 1, "threads": cores, "walls_s": plain_walls},
    )
    plain_rate = audio / median(plain_walls)
    result = Result(
        name="scaling",
        title="audio seconds per wall second, same clips, threads split to match the cores",
        columns=["path", "processes", "threads", "wall s", "audio s/wall s", "vs plain"],
        settings=settings_figures(
            settings(threads=cores), clips=[c.path.name for c in clips], rounds=rounds
        ),
    )
    for r in runs:
        r["wall_s"] = median(r["walls_s"])
        r["audio_s_per_wall_s"] = audio / r["wall_s"]
        r["vs_plain"] = r["audio_s_per_wall_s"] / plain_rate
        result.rows.append(
            [
                r["label"],
                r["processes"],
                r["threads"],
                round(r["wall_s"], 2),
                round(r["audio_s_per_wall_s"], 2),
                round(r["vs_plain"], 3),
            ]
        )
    stacks = [r for r in runs if r["label"].startswith("stack")]
    best = max(stacks, key=lambda r: r["audio_s_per_wall_s"])
    chosen = next(r for r in stacks if (r["processes"], r["threads"]) == default)
    default_vs_best = chosen["audio_s_per_wall_s"] / best["audio_s_per_wall_s"]
    result.figures = {
        "audio_s": audio,
        "runs": runs,
        "default_layout": list(default),
        "default_vs_best": default_vs_best,
    }
    result.notes = [
        f"default `scribe up` layout {default[0]}x{default[1]} thr: {default_vs_best:.3f} x "
        f"the best layout ({best['label']}); target (issue 20): within 5 %",
        f"{len(clips)} clips, {audio:.0f} s of audio; medians of {rounds} stack batches and "
        f"{len(plain_walls)} plain batches",
        "target (DESIGN.md): stack throughput >= 0.95 x plain faster-whisper",
    ]
    return result
