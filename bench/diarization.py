"""Who spoke when, measured on `../shared/audio`'s diarization clips.

- `faster-whisper_stereo_diarization.wav` (one LibriSpeech speaker per channel): the truth
  of each 10 ms frame is the louder channel (energy of a 25 ms Hann window), over frames
  where anyone speaks (loudest channel within 35 dB of the file's peak). Mixed to mono and
  diarized by voice (`diarize=true`), then by channel (`diarize=channels`): agreement on
  speech time after the best label mapping (Hungarian assignment).
- every clip whose sidecar gives speaker turns (`pyannote_sample.rttm`; the AMI lhotse cuts,
  scored only over the span its two supervisions cover): diarization error rate, computed
  here the way NIST md-eval and pyannote.metrics do (missed + false alarm + confusion over
  reference speech, 10 ms frames, optimal one-to-one speaker mapping), without a collar
  and with the standard 0.25 s collar; and the speakers found vs the reference's.
- clips whose sidecar only names speakers (Picovoice's word tags; the AMI mixed-headset clip
  has no reference): speakers found vs the reference's count.
- one LibriSpeech reader alone (ten of them) and 3 to 6 readers in turn (`readers`):
  speakers found without bounds.
- a long file (60 minutes; 5 with `--quick`) made of the corpus's speech clips in a loop,
  diarized as a long job's planner does it (`Diarizer.turns` on the file): wall time, peak
  memory of the process beyond what it held before, speakers and turns found, and the size
  of the turns as `transcription.chunked.v1` carries them (scaled to 10 hours).

    uv run python -m bench diarization [--quick] [--minutes 60]
"""

from __future__ import annotations

import csv
import json
import multiprocessing
import resource
import tempfile
import time
import wave
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt
from scipy.optimize import linear_sum_assignment  # type: ignore[import-untyped]

from bench.common import MANIFEST, Result
from contracts.speakers import SpeakerTurn
from transcriber.audio import SAMPLE_RATE, iter_blocks
from transcriber.diarization import ChannelDiarizer, Diarizer, SpectralDiarizer, Turn

FRAME: Final = 0.01
COLLAR: Final = 0.25
STEREO: Final = "faster-whisper_stereo_diarization.wav"


@dataclass(frozen=True)
class Reference:
    turns: list[tuple[float, float, str]]
    speakers: int
    span: tuple[float, float] | None  # scored region; None: the whole file


def _references(audio: Path) -> dict[str, Reference]:
    """Speaker references found in the sidecar files, by clip name."""
    sidecar = audio / "sidecar"
    found: dict[str, Reference] = {}
    for rttm in sorted(sidecar.glob("*.rttm")):
        turns = []
        for line in rttm.read_text().splitlines():
            parts = line.split()
            if parts and parts[0] == "SPEAKER":
                start, duration = float(parts[3]), float(parts[4])
                turns.append((start, start + duration, parts[7]))
        found[rttm.stem + ".wav"] = Reference(turns, len({t[2] for t in turns}), None)
    for cuts in sorted(sidecar.glob("*.cuts.json")):
        supervisions = [s for cut in json.loads(cuts.read_text()) for s in cut["supervisions"]]
        turns = [(s["start"], s["start"] + s["duration"], s["speaker"]) for s in supervisions]
        span = (min(t[0] for t in turns), max(t[1] for t in turns))
        found[cuts.name.removesuffix(".cuts.json") + ".wav"] = Reference(
            turns, len({t[2] for t in turns}), span
        )
    for words in sorted(sidecar.glob("*.words.json")):
        tags = {w.get("speaker_tag") for w in json.loads(words.read_text())["words"]}
        tags.discard(None)
        if tags:
            found[words.name.removesuffix(".words.json") + ".wav"] = Reference([], len(tags), None)
    return found


def _diarization_clips(audio: Path) -> list[str]:
    with (audio / "manifest.tsv").open(newline="") as f:
        return [
            r["filename"]
            for r in csv.DictReader(f, delimiter="\t")
            if r["category"] == "diarization"
        ]


def _activity(
    turns: list[tuple[float, float, str]], frames: int
) -> tuple[npt.NDArray[np.bool_], list[str]]:
    """(speakers, frames) activity matrix of `turns` on 10 ms frames."""
    names = sorted({t[2] for t in turns})
    matrix = np.zeros((len(names), frames), dtype=bool)
    for start, end, name in turns:
        matrix[names.index(name), round(start / FRAME) : round(end / FRAME)] = True
    return matrix, names


def der(
    reference: list[tuple[float, float, str]],
    hypothesis: list[Turn],
    duration: float,
    *,
    collar: float = 0.0,
    span: tuple[float, float] | None = None,
) -> dict[str, float]:
    """Diarization error rate and its parts, as md-eval / pyannote.metrics count them."""
    frames = round(duration / FRAME) + 1
    ref, _ = _activity(reference, frames)
    hyp, _ = _activity([(t.start, t.end, t.speaker) for t in hypothesis], frames)
    scored = np.ones(frames, dtype=bool)
    if span is not None:
        scored[:] = False
        scored[round(span[0] / FRAME) : round(span[1] / FRAME)] = True
    if collar:
        for start, end, _ in reference:
            for edge in (start, end):
                scored[max(0, round((edge - collar) / FRAME)) : round((edge + collar) / FRAME)] = (
                    False
                )
    ref, hyp = ref[:, scored], hyp[:, scored]
    if hyp.shape[0]:
        overlap = ref.astype(np.int64) @ hyp.T.astype(np.int64)
        rows, cols = linear_sum_assignment(-overlap)
        correct = int(overlap[rows, cols].sum())
    else:
        correct = 0
    n_ref, n_hyp = ref.sum(axis=0), hyp.sum(axis=0)
    total = int(n_ref.sum())
    missed = int(np.maximum(0, n_ref - n_hyp).sum())
    false_alarm = int(np.maximum(0, n_hyp - n_ref).sum())
    confusion = int(np.minimum(n_ref, n_hyp).sum()) - correct
    return {
        "der": (missed + false_alarm + confusion) / total if total else 0.0,
        "missed": missed / total if total else 0.0,
        "false_alarm": false_alarm / total if total else 0.0,
        "confusion": confusion / total if total else 0.0,
    }


def _louder_channel(path: Path) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.bool_], Any]:
    """Per 10 ms frame: the louder channel, whether anyone speaks; and the decoded channels."""
    channels = np.concatenate(list(iter_blocks(path, channels=True)), axis=1)
    hop, win = int(FRAME * SAMPLE_RATE), 400
    count = 1 + (channels.shape[1] - win) // hop
    index = np.arange(win)[None, :] + hop * np.arange(count)[:, None]
    energy = 10 * np.log10(((channels[:, index] * np.hanning(win)) ** 2).mean(axis=2) + 1e-10)
    return energy.argmax(axis=0), energy.max(axis=0) > energy.max() - 35, channels


def agreement(
    turns: list[Turn], truth: npt.NDArray[np.int64], speech: npt.NDArray[np.bool_]
) -> float:
    """Share of speech frames whose label maps to the truth, under the best mapping."""
    labels = np.full(truth.size, -1, dtype=np.int64)
    for t in turns:
        labels[round(t.start / FRAME) : round(t.end / FRAME)] = int(
            t.speaker.removeprefix("SPEAKER_")
        )
    labels, truth = labels[speech], truth[speech]
    hyp_ids = sorted(set(labels[labels >= 0].tolist()))
    if not hyp_ids:
        return 0.0
    counts = np.array(
        [
            [np.sum((labels == h) & (truth == r)) for h in hyp_ids]
            for r in range(int(truth.max()) + 1)
        ]
    )
    rows, cols = linear_sum_assignment(-counts)
    return float(counts[rows, cols].sum() / truth.size)


def block_ceiling(
    truth: npt.NDArray[np.int64], speech: npt.NDArray[np.bool_], frames: int
) -> float:
    """Agreement of the truth itself decided once per `frames` frames (its majority there).

    The most an engine whose labels change only every `frames` frames can score; with
    `frames` covering the whole file it is the score of one label for everything.
    """
    decided = truth.copy()
    for start in range(0, truth.size, frames):
        block = truth[start : start + frames][speech[start : start + frames]]
        if block.size:
            decided[start : start + frames] = np.bincount(block).argmax()
    return float(np.mean(decided[speech] == truth[speech]))


def _speech_loop(audio: Path, target: Path, minutes: float) -> float:
    """`minutes` of the corpus's speech clips (LibriSpeech, LibriVox, LJSpeech) in a loop."""
    clips = [
        np.concatenate(list(iter_blocks(p)), axis=1)[0]
        for p in sorted(audio.glob("ls_*")) + sorted(audio.glob("librivox_*"))
    ]
    gap = np.zeros(int(0.4 * SAMPLE_RATE), dtype=np.float32)
    wanted = int(minutes * 60 * SAMPLE_RATE)
    written = 0
    with wave.open(str(target), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(SAMPLE_RATE)
        while written < wanted:
            for clip in clips:
                part = np.concatenate([clip, gap])[: wanted - written]
                out.writeframes((np.clip(part, -1, 1) * 32767).astype("<i2").tobytes())
                written += part.size
                if written >= wanted:
                    break
    return written / SAMPLE_RATE


def _diarize_in_child(path: str, answer: Any) -> None:
    """Diarize `path` (default engine and bounds); report time and memory to `answer`."""
    import sklearn.cluster  # type: ignore[import-untyped]  # noqa: F401  (imports not counted)

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    began = time.perf_counter()
    turns = Diarizer(SpectralDiarizer()).turns(Path(path), True)
    seconds = time.perf_counter() - began
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    carried = [SpeakerTurn(start=t.start, end=t.end, speaker=t.speaker) for t in turns]
    size = len(b",".join(t.model_dump_json().encode() for t in carried)) + 2
    speakers = len({t.speaker for t in turns})
    answer.send((seconds, before / 1024, peak / 1024, speakers, len(turns), size))


def long_file(audio: Path, minutes: float) -> dict[str, float]:
    """Time, memory and turns of diarizing `minutes` of speech in one pass, in a child process."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "long.wav"
        duration = _speech_loop(audio, path, minutes)
        context = multiprocessing.get_context("spawn")
        receive, send = context.Pipe(duplex=False)
        child = context.Process(target=_diarize_in_child, args=(str(path), send))
        child.start()
        while not receive.poll(1.0):
            if not child.is_alive():
                raise RuntimeError(f"the diarizing process exited with {child.exitcode}")
        seconds, before, peak, speakers, turns, size = receive.recv()
        child.join()
    return {
        "duration_seconds": round(duration, 1),
        "seconds": round(seconds, 1),
        "rtf": round(seconds / duration, 4),
        "rss_before_mib": round(before, 1),
        "rss_peak_mib": round(peak, 1),
        "rss_added_mib": round(peak - before, 1),
        "speakers": speakers,
        "turns": turns,
        "turns_json_bytes": size,
        "turns_json_bytes_10h": round(size * 36000 / duration),
    }


READERS: Final = (
    "1688-142285",
    "1998-15444",
    "2033-164914",
    "2414-128291",
    "2609-156975",
    "3005-163389",
    "3080-5032",
    "3331-159605",
    "367-130732",
    "533-1066",
)
"""The ten LibriSpeech test-other readers of ../shared/audio, five utterances each."""

MEETINGS: Final = (
    ("3", READERS[0:3]),
    ("4", READERS[3:7]),
    ("4'", READERS[6:10]),  # the test's
    ("5", READERS[5:10]),
    ("6", READERS[0:6]),
)
"""Readers in turn, without bounds: (how many, who)."""


def readers(audio: Path) -> dict[str, Any]:
    """Speakers found, default bounds, for one reader alone and for readers in turn.

    Alone: each reader's five utterances, 0.5 s apart (30-45 s). In turn, two ways: each
    reader reads its five utterances then the next starts (`in_turn`), and utterances 0
    then 1 of each reader, alternating (`alternating`).
    """
    pause = np.zeros(int(0.5 * SAMPLE_RATE), dtype=np.float32)
    clips = {
        (r, i): np.concatenate(list(iter_blocks(audio / f"ls_test-other_{r}-000{i}.flac")), axis=1)[
            0
        ]
        for r in READERS
        for i in range(5)
    }

    def found(parts: list[tuple[str, int]]) -> int:
        reading = np.concatenate([x for key in parts for x in (clips[key], pause)])
        turns = SpectralDiarizer().diarize([reading], min_speakers=1, max_speakers=8)
        return len({t.speaker for t in turns})

    alone = [found([(r, i) for i in range(5)]) for r in READERS]
    return {
        "alone": alone,
        "found_alone": sum(n == 1 for n in alone),
        "in_turn": {k: found([(r, i) for r in who for i in range(5)]) for k, who in MEETINGS},
        "alternating": {k: found([(r, i) for i in range(2) for r in who]) for k, who in MEETINGS},
    }


def run(quick: bool, minutes: float | None = None) -> Result:
    audio = MANIFEST.parent
    result = Result(
        name="diarization",
        title="speaker diarization on ../shared/audio (spectral engine; channels mode)",
        columns=[
            "clip",
            "mode",
            "speakers found",
            "reference",
            "agreement %",
            "DER %",
            "DER % (0.25 s collar)",
            "seconds",
            "RTF",
        ],
    )
    diarizer = Diarizer(SpectralDiarizer())
    # Warm up (the decoder, scikit-learn's imports: seconds on a cold start) before timing.
    diarizer.turns(audio / "pyannote_sample.wav", True)

    truth, speech, channels = _louder_channel(audio / STEREO)
    duration = channels.shape[1] / SAMPLE_RATE
    mono = channels.mean(axis=0)
    for mode in ("mono mix, diarize=true", "diarize=channels"):
        began = time.perf_counter()
        if mode == "diarize=channels":
            turns = ChannelDiarizer().turns(iter_blocks(audio / STEREO, channels=True))
        else:
            turns = diarizer.engine.diarize([mono], min_speakers=1, max_speakers=8)
        seconds = time.perf_counter() - began
        share = agreement(turns, truth, speech)
        result.rows.append(
            [
                STEREO,
                mode,
                len({t.speaker for t in turns}),
                2,
                round(100 * share, 1),
                None,
                None,
                round(seconds, 3),
                round(seconds / duration, 4),
            ]
        )
        result.figures[f"stereo_agreement_{'channels' if 'channels' in mode else 'mono'}"] = round(
            share, 4
        )
    overlap = float(
        np.mean(
            (channels[:, : truth.size * 160].reshape(2, -1, 160) ** 2)
            .mean(axis=2)
            .min(axis=0)[speech[: truth.size]]
            > 1e-5
        )
    )
    ceilings = {
        "one_label": block_ceiling(truth, speech, truth.size),
        "0.1s": block_ceiling(truth, speech, 10),
        "0.2s": block_ceiling(truth, speech, 20),
    }
    result.figures["stereo_truth_decided_every"] = {k: round(v, 4) for k, v in ceilings.items()}
    result.notes.append(
        f"{STEREO}: both channels speak at once in {100 * overlap:.0f} % of its speech frames; "
        "the frame truth flips with each syllable there. One label for all of it scores "
        f"{100 * ceilings['one_label']:.1f} %; the truth itself, decided once per 0.1 s "
        f"(its majority there), {100 * ceilings['0.1s']:.1f} %, per 0.2 s "
        f"{100 * ceilings['0.2s']:.1f} %"
    )

    references = _references(audio)
    for name in _diarization_clips(audio):
        if name == STEREO:
            continue
        path = audio / name
        reference = references.get(name)
        began = time.perf_counter()
        turns = diarizer.turns(path, True)
        seconds = time.perf_counter() - began
        duration = sum(b.shape[1] for b in iter_blocks(path)) / SAMPLE_RATE
        row: list[Any] = [
            name,
            "diarize=true",
            len({t.speaker for t in turns}),
            reference.speakers if reference else None,
            None,
            None,
            None,
            round(seconds, 3),
            round(seconds / duration, 4),
        ]
        if reference is not None and reference.turns:
            plain = der(reference.turns, turns, duration, span=reference.span)
            collared = der(reference.turns, turns, duration, collar=COLLAR, span=reference.span)
            row[5], row[6] = round(100 * plain["der"], 1), round(100 * collared["der"], 1)
            result.figures[f"der_{Path(name).stem}"] = {
                "none": {k: round(v, 4) for k, v in plain.items()},
                "collar_0.25": {k: round(v, 4) for k, v in collared.items()},
            }
        result.rows.append(row)
    length = minutes if minutes is not None else (5.0 if quick else 60.0)
    figures = long_file(audio, length)
    result.figures["long_file"] = figures
    result.rows.append(
        [
            f"{length:g} min of corpus speech",
            "diarize=true",
            figures["speakers"],
            None,
            None,
            None,
            None,
            figures["seconds"],
            figures["rtf"],
        ]
    )
    result.notes.append(
        f"long file ({length:g} min): peak RSS {figures['rss_peak_mib']} MiB, "
        f"{figures['rss_added_mib']} MiB more than before diarizing; {figures['turns']} turns, "
        f"{figures['turns_json_bytes'] / 1e6:.2f} MB as speaker_turns "
        f"(≈ {figures['turns_json_bytes_10h'] / 1e6:.1f} MB for 10 hours)"
    )
    # After the long file: its child process starts from this one's peak memory.
    counts = readers(audio)
    result.figures["readers"] = counts
    result.rows.append(
        [
            "10 LibriSpeech readers, each alone (30-45 s)",
            "diarize=true",
            f"{counts['found_alone']} / 10 found alone",
            1,
            None,
            None,
            None,
            None,
            None,
        ]
    )
    for kind in ("in_turn", "alternating"):
        for who, speakers in counts[kind].items():
            result.rows.append(
                [
                    f"{who} LibriSpeech readers, {kind.replace('_', ' ')}",
                    "diarize=true",
                    speakers,
                    int(who.rstrip("'")),
                    None,
                    None,
                    None,
                    None,
                    None,
                ]
            )
    result.settings = {
        "engine": "spectral",
        "long_file_minutes": length,
        "frame_seconds": FRAME,
        "collar_seconds": COLLAR,
        "bounds": "1..8 (defaults)",
    }
    result.notes.append(
        "DER: own scorer (md-eval / pyannote.metrics definition, 10 ms frames, Hungarian "
        "mapping); the AMI excerpt is scored only over its two supervised segments' span"
    )
    return result
