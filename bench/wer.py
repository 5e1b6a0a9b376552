"""WER of the transcriber's engine (offline tiny.en by default) on the LibriSpeech clips.

Reads `../shared/audio/manifest.tsv` (categories starting `librispeech`), transcribes each
clip with the same engine and settings a worker uses (`SCRIBE_TRANSCRIBER_*`), normalises
reference and hypothesis with Whisper's English normaliser, and prints corpus WER per
LibriSpeech split beside the figures published for Whisper tiny.en.

    uv run python -m bench.wer [--limit N] [--manifest PATH]
"""

from __future__ import annotations

import argparse
import csv
import os
import threading
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import jiwer
from whisper_normalizer.english import EnglishTextNormalizer

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach a model hub from a benchmark

from bench.common import Result
from transcriber.engine import EngineRequest, FasterWhisperEngine
from transcriber.settings import TranscriberSettings

DEFAULT_MANIFEST = Path(__file__).resolve().parents[2] / "shared" / "audio" / "manifest.tsv"
# Published for Whisper tiny.en on the full LibriSpeech splits (Radford et al., 2022).
PUBLISHED = {"test-clean": 5.6, "test-other": 14.6}


@dataclass(frozen=True)
class Clip:
    path: Path
    split: str
    reference: str
    duration: float


def librispeech_clips(manifest: Path) -> list[Clip]:
    """The manifest's LibriSpeech rows, in manifest order."""
    clips = []
    with manifest.open(newline="") as f:
        for row in csv.DictReader(f, delimiter="\t"):
            if row["category"].startswith("librispeech"):
                clips.append(
                    Clip(
                        path=manifest.parent / row["filename"],
                        split=row["category"].removeprefix("librispeech_"),
                        reference=row["transcript"],
                        duration=float(row["duration_s"]),
                    )
                )
    return clips


def corpus_wer(references: list[str], hypotheses: list[str]) -> float:
    """Corpus WER in %, after Whisper's English normalisation of both sides."""
    normalise = EnglishTextNormalizer()
    refs = [normalise(r) for r in references]
    hyps = [normalise(h) for h in hypotheses]
    return 100.0 * float(jiwer.wer(refs, hyps))


def run(quick: bool = False) -> Result:
    """`python -m bench accuracy`: every LibriSpeech clip (quick: 6) through the worker's engine."""
    clips = librispeech_clips(DEFAULT_MANIFEST)[: 6 if quick else None]
    settings = TranscriberSettings(health_port=None)
    engine = FasterWhisperEngine(settings)
    by_split: dict[str, tuple[list[str], list[str]]] = defaultdict(lambda: ([], []))
    busy = 0.0
    for clip in clips:
        t0 = time.perf_counter()
        text = engine.transcribe(
            clip.path,
            EngineRequest(language="en", word_timestamps=False),
            on_segment=lambda *_: None,
            cancelled=threading.Event(),
        ).text
        busy += time.perf_counter() - t0
        by_split[clip.split][0].append(clip.reference)
        by_split[clip.split][1].append(text)
    audio = sum(c.duration for c in clips)
    result = Result(
        name="accuracy",
        title="WER (Whisper English normalisation) on the LibriSpeech clips of ../shared/audio",
        columns=["split", "clips", "WER %", "published tiny.en %"],
        settings={
            "model": engine.model_name,
            "device": engine.device,
            "compute_type": engine.compute_type,
            "cpu_threads": settings.cpu_threads,
            "beam_size": settings.beam_size,
            "vad_filter": settings.vad_filter,
            "normaliser": "whisper_normalizer.english.EnglishTextNormalizer",
        },
    )
    figures: dict[str, dict[str, float | int | None]] = {}
    all_refs: list[str] = []
    all_hyps: list[str] = []
    for split in sorted(by_split):
        refs, hyps = by_split[split]
        all_refs += refs
        all_hyps += hyps
        wer = corpus_wer(refs, hyps)
        figures[split] = {"clips": len(refs), "wer_percent": wer, "published": PUBLISHED.get(split)}
        result.rows.append([split, len(refs), round(wer, 2), PUBLISHED.get(split)])
    overall = corpus_wer(all_refs, all_hyps)
    result.rows.append(["all", len(all_refs), round(overall, 2), None])
    result.figures = {
        "splits": figures,
        "all": {"clips": len(all_refs), "wer_percent": overall},
        "audio_s": audio,
        "real_time_factor": busy / audio,
    }
    result.notes = [
        f"{audio:.0f} s of audio at a real-time factor of {busy / audio:.3f}; published figures "
        "are for the full splits (2,620 / 2,939 utterances), these are a small sample",
        "the pipeline's WER beside plain faster-whisper's, same clips: see `overhead`",
    ]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--manifest", type=Path, default=DEFAULT_MANIFEST)
    parser.add_argument("--limit", type=int, default=None, help="only the first N clips")
    args = parser.parse_args()
    if not args.manifest.exists():
        print(f"no manifest at {args.manifest}: nothing to measure (needs ../shared/audio)")
        return
    clips = librispeech_clips(args.manifest)[: args.limit]
    settings = TranscriberSettings()
    started = time.perf_counter()
    engine = FasterWhisperEngine(settings)
    load = time.perf_counter() - started
    by_split: dict[str, tuple[list[str], list[str]]] = defaultdict(lambda: ([], []))
    busy = 0.0
    for clip in clips:
        t0 = time.perf_counter()
        result = engine.transcribe(
            clip.path,
            EngineRequest(language="en", word_timestamps=False),
            on_segment=lambda *_: None,
            cancelled=threading.Event(),
        )
        busy += time.perf_counter() - t0
        refs, hyps = by_split[clip.split]
        refs.append(clip.reference)
        hyps.append(result.text)
    audio = sum(c.duration for c in clips)
    print(
        f"model={engine.model_name} device={engine.device} compute={engine.compute_type} "
        f"threads={settings.cpu_threads} beam={settings.beam_size} vad={settings.vad_filter} "
        f"batched={settings.batched} load={load:.2f}s"
    )
    print(f"clips={len(clips)} audio={audio:.1f}s transcribe={busy:.1f}s rtf={busy / audio:.3f}")
    print(f"{'split':<12} {'clips':>5} {'WER %':>7} {'published %':>12}")
    all_refs: list[str] = []
    all_hyps: list[str] = []
    for split in sorted(by_split):
        refs, hyps = by_split[split]
        all_refs += refs
        all_hyps += hyps
        published = PUBLISHED.get(split)
        shown = f"{published:.1f}" if published is not None else "-"
        print(f"{split:<12} {len(refs):>5} {corpus_wer(refs, hyps):>7.2f} {shown:>12}")
    print(f"{'all':<12} {len(all_refs):>5} {corpus_wer(all_refs, all_hyps):>7.2f}")


if __name__ == "__main__":
    main()
