"""Model pool and guardrails: tiny.en vs base, guardrails on/off, batched, on ../shared/audio.

For each configuration, the worker's own engine (`FasterWhisperEngine`) transcribes:

- the English clips with references (LibriSpeech splits, `other_en_known_text`): corpus WER
  after Whisper's English normalisation, per split, and the real-time factor;
- the multilingual clips (multilingual models only): language-ID accuracy (a code-switch
  clip `en+de` counts either language) and WER of the space-delimited languages with
  Whisper's basic normaliser;
- non-speech: 10 minutes of generated digital silence, a minute of generated white noise,
  `picovoice_empty.wav` (8.2 s of stationary noise): words produced, which should be none;
  and `whisper-timestamped_words.wav` (8 isolated words among silences): words kept.

    uv run python -m bench models [--quick]
"""

from __future__ import annotations

import csv
import os
import tempfile
import threading
import time
import wave
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jiwer
import numpy as np
from whisper_normalizer.basic import BasicTextNormalizer

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach a model hub from a benchmark

from bench.common import MANIFEST, Clip, Result, manifest_clips
from bench.wer import corpus_wer
from transcriber.engine import EngineRequest, EngineResult, FasterWhisperEngine
from transcriber.settings import TranscriberSettings

# Space-delimited languages, where WER means something (zh/ja/ko would need CER).
WER_LANGUAGES = {"es", "de", "fr", "it", "pt", "ru"}


@dataclass(frozen=True)
class Config:
    name: str
    model: str
    guardrails: bool
    batched: bool = False
    hallucination_silence_threshold: float | None = None
    temperature_fallback: bool = True

    def settings(self) -> TranscriberSettings:
        return TranscriberSettings(
            health_port=None,
            model=self.model,
            guardrails=self.guardrails,
            batched=self.batched,
            hallucination_silence_threshold=self.hallucination_silence_threshold,
            temperature_fallback=self.temperature_fallback,
        )


CONFIGS = [
    Config("tiny.en", "tiny.en", guardrails=True),
    Config("tiny.en unguarded", "tiny.en", guardrails=False),
    Config("tiny.en batched", "tiny.en", guardrails=True, batched=True),
    Config("tiny.en batched unguarded", "tiny.en", guardrails=False, batched=True),
    Config("tiny.en + silence 2 s", "tiny.en", guardrails=True, hallucination_silence_threshold=2),
    Config("tiny.en no fallback", "tiny.en", guardrails=True, temperature_fallback=False),
    Config("base", "base", guardrails=True),
    Config("base unguarded", "base", guardrails=False),
    Config("base + silence 2 s", "base", guardrails=True, hallucination_silence_threshold=2),
]
QUICK = {"tiny.en", "tiny.en unguarded", "base", "base unguarded"}


@dataclass
class Outcome:
    config: Config
    busy: float = 0.0
    audio: float = 0.0
    by_split: dict[str, tuple[list[str], list[str]]] = field(
        default_factory=lambda: defaultdict(lambda: ([], []))
    )
    languages: list[dict[str, Any]] = field(default_factory=list)
    non_speech: dict[str, int] = field(default_factory=dict)
    words_clip_words: int | None = None


def _write_wav(path: Path, samples: np.ndarray) -> Path:
    pcm = (np.clip(samples, -1, 1) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(16000)
        out.writeframes(pcm.tobytes())
    return path


def _transcribe(engine: FasterWhisperEngine, path: Path, request: EngineRequest) -> EngineResult:
    return engine.transcribe(path, request, on_segment=lambda *_: None, cancelled=threading.Event())


def measure(
    config: Config,
    english: list[Clip],
    multilingual: list[Clip],
    languages: dict[str, str],
    non_speech: dict[str, Path],
    words_clip: Path | None,
) -> Outcome:
    engine = FasterWhisperEngine(config.settings())
    outcome = Outcome(config)
    # The first call pays one-off costs (allocations, VAD model load): keep them out of RTF.
    _transcribe(engine, english[0].path, EngineRequest("en", False))
    for clip in english:
        t0 = time.perf_counter()
        result = _transcribe(engine, clip.path, EngineRequest("en", False))
        outcome.busy += time.perf_counter() - t0
        outcome.audio += clip.duration
        refs, hyps = outcome.by_split[clip.split]
        refs.append(clip.reference)
        hyps.append(result.text)
    if not config.model.endswith(".en"):
        for clip in multilingual:
            t0 = time.perf_counter()
            result = _transcribe(engine, clip.path, EngineRequest(None, False))
            outcome.busy += time.perf_counter() - t0
            outcome.audio += clip.duration
            expected = languages[clip.path.name]
            outcome.languages.append(
                {
                    "clip": clip.path.name,
                    "expected": expected,
                    "detected": result.language,
                    "probability": round(result.language_probability, 3),
                    "correct": result.language in expected.split("+"),
                    "reference": clip.reference,
                    "text": result.text,
                }
            )
    for label, path in non_speech.items():
        result = _transcribe(engine, path, EngineRequest("en", False))
        outcome.non_speech[label] = len(result.text.split())
    if words_clip is not None:
        result = _transcribe(engine, words_clip, EngineRequest("en", False))
        outcome.words_clip_words = len(result.text.split())
    return outcome


def manifest_rows() -> dict[str, dict[str, str]]:
    """The manifest's rows by file name (language and reference quality are not in `Clip`)."""
    with MANIFEST.open(newline="") as f:
        return {row["filename"]: row for row in csv.DictReader(f, delimiter="\t")}


def multilingual_wer(outcome: Outcome, quality: dict[str, str]) -> float | None:
    scored = [
        row
        for row in outcome.languages
        if row["expected"] in WER_LANGUAGES and quality.get(row["clip"]) == "repo_reference"
    ]
    if not scored:
        return None
    normalise = BasicTextNormalizer()
    refs = [normalise(r["reference"]) for r in scored]
    hyps = [normalise(r["text"]) for r in scored]
    return 100.0 * float(jiwer.wer(refs, hyps))


def run(quick: bool = False) -> Result:
    """`python -m bench models`: every config (quick: 4) over the clips (quick: a handful)."""
    rows = manifest_rows()
    languages = {name: row["language"] for name, row in rows.items()}
    quality = {name: row["ref_quality"] for name, row in rows.items()}
    clips = manifest_clips()
    english = [
        c
        for c in clips
        if (c.category.startswith("librispeech") or c.category == "other_en_known_text")
        and quality[c.path.name] in ("official", "repo_reference")
        and c.reference
    ]
    multilingual = [c for c in clips if c.category == "multilingual"]
    if quick:
        english = english[:4] + [c for c in english if c.category == "other_en_known_text"][:2]
        multilingual = multilingual[:3]
    silence_seconds = 60 if quick else 600
    shared = MANIFEST.parent
    configs = [c for c in CONFIGS if not quick or c.name in QUICK]
    with tempfile.TemporaryDirectory() as tmp:
        rng = np.random.default_rng(0)
        non_speech = {
            f"silence {silence_seconds} s": _write_wav(
                Path(tmp) / "silence.wav", np.zeros(16000 * silence_seconds, np.float32)
            ),
            "white noise 60 s": _write_wav(
                Path(tmp) / "noise.wav", rng.standard_normal(16000 * 60).astype(np.float32) * 0.05
            ),
            "picovoice_empty.wav": shared / "picovoice_empty.wav",
        }
        words_clip = shared / "whisper-timestamped_words.wav"
        outcomes = []
        for config in configs:
            print(f"   {config.name} ...", flush=True)
            outcomes.append(
                measure(config, english, multilingual, languages, non_speech, words_clip)
            )
    splits = sorted({c.split for c in english})
    result = Result(
        name="models",
        title="tiny.en vs base, guardrails on/off, batched: WER, RTF, language ID, non-speech",
        columns=[
            "config",
            *[f"WER {s} %" for s in splits],
            "WER en all %",
            "RTF",
            "lang-ID",
            "WER ml %",
            *[f"words: {k}" for k in non_speech],
            "words.wav (8)",
        ],
        settings={
            "cpu_threads": TranscriberSettings(health_port=None).cpu_threads,
            "compute_type": "int8 (CPU)",
            "beam_size": TranscriberSettings(health_port=None).beam_size,
            "english_clips": len(english),
            "multilingual_clips": len(multilingual),
            "normaliser": "EnglishTextNormalizer (en), BasicTextNormalizer (multilingual)",
        },
    )
    figures: dict[str, Any] = {}
    for outcome in outcomes:
        per_split = {s: corpus_wer(*outcome.by_split[s]) for s in splits}
        all_refs = [r for s in splits for r in outcome.by_split[s][0]]
        all_hyps = [h for s in splits for h in outcome.by_split[s][1]]
        overall = corpus_wer(all_refs, all_hyps)
        rtf = outcome.busy / outcome.audio if outcome.audio else None
        langs = outcome.languages
        accuracy = sum(r["correct"] for r in langs) / len(langs) if langs else None
        ml_wer = multilingual_wer(outcome, quality)
        result.rows.append(
            [
                outcome.config.name,
                *[round(per_split[s], 2) for s in splits],
                round(overall, 2),
                None if rtf is None else round(rtf, 3),
                None if accuracy is None else f"{sum(r['correct'] for r in langs)}/{len(langs)}",
                None if ml_wer is None else round(ml_wer, 1),
                *[outcome.non_speech[k] for k in non_speech],
                outcome.words_clip_words,
            ]
        )
        figures[outcome.config.name] = {
            "config": outcome.config.__dict__,
            "wer_percent": per_split,
            "wer_all_percent": overall,
            "clips": {s: len(outcome.by_split[s][0]) for s in splits},
            "real_time_factor": rtf,
            "busy_s": outcome.busy,
            "audio_s": outcome.audio,
            "language_id_accuracy": accuracy,
            "languages": langs,
            "multilingual_wer_percent": ml_wer,
            "non_speech_words": outcome.non_speech,
            "words_clip_words": outcome.words_clip_words,
            "hypotheses": {s: outcome.by_split[s][1] for s in splits},
        }
    result.figures = figures
    result.notes = [
        "RTF = engine wall time / audio seconds over the English (and, for base, multilingual) "
        "clips, model load excluded; the machine is shared, so compare rows of one run only",
        "lang-ID: multilingual clips detected correctly (code-switch en+de: either); .en "
        "models cannot detect (refused), so '-'",
        "words.wav holds 8 isolated words among silences: the guard must not eat them",
    ]
    return result


if __name__ == "__main__":
    from bench.__main__ import main

    main(["models", *(["--quick"] if os.environ.get("QUICK") else [])])
