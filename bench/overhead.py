"""Pipeline overhead: the same clips through plain faster-whisper and the whole stack.

For each clip, side by side and in alternating order, `repeats` times: plain faster-whisper
in this process (decode + inference, same model and settings) and the stack (HTTP upload →
ingest → broker → transcriber → broker → indexer committed). The table shows per-clip
medians and their ratio; the totals are the sums of the medians, for the 10-20 s LibriSpeech
clips and for the 2-minute TED-LIUM file apart (DESIGN.md targets: within 5 % and 1 %).
Model loading is outside both: the stack's worker loaded its model before it was ready.

    uv run python -m bench overhead [--quick]
"""

from __future__ import annotations

from typing import Any

from bench.common import Clip, Result, clip_named, librispeech, median
from bench.pipeline import Plain, settings, settings_figures, stack, through_stack
from bench.wer import corpus_wer

LONG = "tedlium_long_120s.flac"


def clips(quick: bool) -> list[Clip]:
    short = [c for c in librispeech() if 10.0 <= c.duration <= 20.0]
    if quick:
        return short[:2]
    return [*short[:8], clip_named(LONG)]


def run(quick: bool = False) -> Result:
    chosen = clips(quick)
    repeats = 1 if quick else 3
    s = settings(threads=2)
    plain = Plain(s)
    walls: dict[str, dict[str, list[float]]] = {
        c.path.name: {"plain": [], "stack": []} for c in chosen
    }
    texts: dict[str, dict[str, str]] = {c.path.name: {} for c in chosen}
    with stack(s) as running:
        through_stack(running, chosen[0])  # first-use costs on both sides, not measured
        plain.transcribe(chosen[0].path)
        for r in range(repeats):
            for clip in chosen:
                # Alternating which goes first cancels a slow drift in the machine's load.
                for path in ("plain", "stack") if r % 2 == 0 else ("stack", "plain"):
                    if path == "plain":
                        wall, text = plain.transcribe(clip.path)
                    else:
                        wall, text = through_stack(running, clip)
                    walls[clip.path.name][path].append(wall)
                    texts[clip.path.name][path] = text

    result = Result(
        name="overhead",
        title="upload → indexed vs plain faster-whisper, same clips and settings",
        columns=["clip", "audio s", "plain s", "stack s", "ratio", "overhead s"],
        settings=settings_figures(s, repeats=repeats, clips=[c.path.name for c in chosen]),
    )
    per_clip: list[dict[str, Any]] = []
    for clip in chosen:
        p = median(walls[clip.path.name]["plain"])
        w = median(walls[clip.path.name]["stack"])
        per_clip.append(
            {
                "clip": clip.path.name,
                "audio_s": clip.duration,
                "plain_s": p,
                "stack_s": w,
                "ratio": w / p,
                "plain_runs": walls[clip.path.name]["plain"],
                "stack_runs": walls[clip.path.name]["stack"],
            }
        )
        result.rows.append(
            [
                clip.path.name,
                clip.duration,
                round(p, 3),
                round(w, 3),
                round(w / p, 3),
                round(w - p, 3),
            ]
        )
    groups = {
        "short_10_20s": [c for c in per_clip if c["clip"] != LONG],
        "long_120s": [c for c in per_clip if c["clip"] == LONG],
    }
    totals = {}
    for group, members in groups.items():
        if not members:
            continue
        p = sum(c["plain_s"] for c in members)
        w = sum(c["stack_s"] for c in members)
        audio = sum(c["audio_s"] for c in members)
        totals[group] = {"plain_s": p, "stack_s": w, "ratio": w / p, "audio_s": audio}
        result.rows.append(
            [
                f"total {group}",
                round(audio, 1),
                round(p, 2),
                round(w, 2),
                round(w / p, 3),
                round(w - p, 2),
            ]
        )
    wer = {}
    for path in ("plain", "stack"):
        chosen_short = [c for c in chosen if c.path.name != LONG]
        wer[path] = corpus_wer(
            [c.reference for c in chosen_short], [texts[c.path.name][path] for c in chosen_short]
        )
    result.figures = {"clips": per_clip, "totals": totals, "wer_percent_librispeech": wer}
    result.notes = [
        "per-clip figures are medians of the repeats; ratio = stack / plain wall time",
        "targets (DESIGN.md): ratio <= 1.05 on 10-20 s clips, <= 1.01 on 2-minute files",
        f"WER on these LibriSpeech clips: plain {wer['plain']:.2f} %, stack {wer['stack']:.2f} %",
    ]
    return result
