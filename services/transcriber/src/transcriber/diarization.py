"""Who spoke when: speaker turns for a recording, and speaker labels for its segments.

Three ways to get turns, one port (`DiarizationEngine`):

- `ChannelDiarizer` (`diarize="channels"`): one speaker per channel, the louder channel of
  each 10 ms frame speaks. Exact on call-centre stereo and costs a decode.
- `SpectralDiarizer` (`diarize=true`, the default engine): classic features, no model to
  download: the spread of MFCCs over 1.5 s windows, agglomerative clustering, the speaker count
  picked by silhouette within the job's bounds. numpy, scipy and scikit-learn only.
- `SherpaOnnxDiarizer`: pyannote segmentation + a speaker-embedding model run by
  sherpa-onnx, from local ONNX files named in settings (see docs/diarization.md).

Every engine reads the audio as consecutive blocks (`audio.iter_blocks`), so what stays in
memory is per-window statistics, never the samples of the whole file.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Protocol

import numpy as np
import numpy.typing as npt
import structlog

from contracts.speakers import label_segments
from transcriber.audio import SAMPLE_RATE
from transcriber.errors import JobCancelled

log = structlog.get_logger()

__all__ = [
    "ChannelDiarizer",
    "DiarizationEngine",
    "DiarizationError",
    "Diarizer",
    "SherpaOnnxDiarizer",
    "SpectralDiarizer",
    "Turn",
    "build_diarizer",
    "diarize",
    "frames_to_turns",
    "label_segments",  # shared with the indexer: contracts.speakers
    "speaker_label",
]

FloatArray = npt.NDArray[np.float32]

FRAME_SECONDS: Final = 0.01
"""Resolution of every engine's speech/speaker decisions."""
_HOP: Final = int(FRAME_SECONDS * SAMPLE_RATE)  # 160 samples
_WIN: Final = 400  # 25 ms analysis window
_N_FFT: Final = 512
_N_MELS: Final = 40
_N_MFCC: Final = 19  # c1..c19: c0 is loudness, not voice
_SUB: Final = 10  # frames per sub-window (0.1 s): the unit turns are made of
_WINDOW_SUBS: Final = 15  # a clustering window: 1.5 s
_HOP_SUBS: Final = 5  # windows start every 0.5 s
_MIN_SPEECH_FRAMES: Final = 3  # of a sub-window's 10, to count it as speech
_MAX_CLUSTERED: Final = 3000  # windows clustered exhaustively; the rest join the nearest
_ONE_SPEAKER_SILHOUETTE: Final = 0.12
_SILHOUETTE_SLACK: Final = 0.06
_MIN_CLUSTER_SHARE: Final = 0.15
_MIN_SPEAKER_SHARE: Final = 0.12  # of the speech time, for a speaker to stand on its own
_SAME_VOICE_SEPARATION: Final = 1.3  # long-term spectra closer than this are one voice
_VOICE_CHUNK_SUBS: Final = 100  # 10 s of speech: long enough for a mean spectrum to be a voice
_ONE_VOICE_SPREAD: Final = 2.0  # 10 s stretches of one voice stay closer than this
_BRIDGE_SECONDS: Final = 0.3  # a pause this short inside one speaker's speech is kept in it
_ABSOLUTE_FLOOR_DB: Final = -55.0
_RELATIVE_FLOOR_DB: Final = 35.0


@dataclass(frozen=True, slots=True)
class Turn:
    """A stretch of time in which one speaker talks."""

    start: float
    end: float
    speaker: str


class DiarizationError(ValueError):
    """The diarization engine cannot be built as configured (missing model, package)."""


class DiarizationEngine(Protocol):
    """Turns consecutive 16 kHz mono blocks into speaker turns. Blocking."""

    name: str

    def diarize(
        self, blocks: Iterable[FloatArray], *, min_speakers: int, max_speakers: int
    ) -> list[Turn]:
        """Speaker turns in time order, labelled `SPEAKER_00`… by first appearance."""
        ...


def speaker_label(index: int) -> str:
    """The label of the `index`-th speaker to speak."""
    return f"SPEAKER_{index:02d}"


def diarize(
    samples: FloatArray,
    *,
    min_speakers: int = 1,
    max_speakers: int = 8,
    engine: DiarizationEngine | None = None,
) -> list[Turn]:
    """Speaker turns of one 16 kHz mono array (default engine: `SpectralDiarizer`)."""
    chosen = engine or SpectralDiarizer()
    return chosen.diarize([samples], min_speakers=min_speakers, max_speakers=max_speakers)


def frames_to_turns(
    frame_labels: npt.NDArray[np.int64], frame_seconds: float, *, renumber: bool = True
) -> list[Turn]:
    """Turns from per-frame speaker indices (-1: nobody), numbered by first appearance.

    Without `renumber`, index n is `speaker_label(n)`.
    Pauses up to `_BRIDGE_SECONDS` between two stretches of one speaker are bridged.
    """
    turns: list[tuple[float, float, int]] = []
    speaking = np.flatnonzero(frame_labels >= 0)
    if speaking.size == 0:
        return []
    # Runs of equal labels over the speaking frames, split where the label changes or a gap opens.
    bridge = max(1, round(_BRIDGE_SECONDS / frame_seconds))
    values = frame_labels[speaking]
    breaks = np.flatnonzero((np.diff(values) != 0) | (np.diff(speaking) > bridge)) + 1
    for run in np.split(np.arange(speaking.size), breaks):
        first, last = speaking[run[0]], speaking[run[-1]]
        turns.append(
            (float(first * frame_seconds), float((last + 1) * frame_seconds), int(values[run[0]]))
        )
    order: dict[int, int] = {}
    for _, _, raw in turns:
        order.setdefault(raw, len(order) if renumber else raw)
    return [Turn(round(s, 3), round(e, 3), speaker_label(order[raw])) for s, e, raw in turns]


# --- by channel ----------------------------------------------------------------------------


class ChannelDiarizer:
    """One speaker per channel: in each 10 ms frame the loudest channel speaks.

    Loudness is the energy of a 25 ms Hann window centred on the frame; a frame more than
    35 dB below the loudest one of the file (or under -55 dBFS) is silence.
    """

    name = "channels"

    def turns(self, blocks: Iterable[FloatArray]) -> list[Turn]:
        """Turns of (channels, samples) blocks; a mono file is one speaker."""
        energies = list(_frame_energies(blocks))
        if not energies:
            return []
        energy = np.concatenate(energies, axis=1)  # (channels, frames), dB
        loudest = energy.max(axis=0)
        speech = loudest > max(_ABSOLUTE_FLOOR_DB, float(loudest.max()) - _RELATIVE_FLOOR_DB)
        labels = np.where(speech, energy.argmax(axis=0), -1).astype(np.int64)
        # Channel n is speaker n, whoever speaks first: the mapping a call centre expects.
        return frames_to_turns(labels, FRAME_SECONDS, renumber=False)


def _frame_energies(blocks: Iterable[FloatArray]) -> Iterator[FloatArray]:
    """Per-channel energy (dBFS) of 25 ms Hann windows every 10 ms, across block boundaries."""
    taper = np.hanning(_WIN)
    tail: FloatArray | None = None
    for block in blocks:
        data = block if block.ndim == 2 else block[None, :]
        if tail is not None:
            data = np.concatenate([tail, data], axis=1)
        count = 0 if data.shape[1] < _WIN else 1 + (data.shape[1] - _WIN) // _HOP
        tail = data[:, count * _HOP :]
        if count:
            index = np.arange(_WIN)[None, :] + _HOP * np.arange(count)[:, None]
            power = np.mean((data[:, index].astype(np.float64) * taper) ** 2, axis=2)
            yield (10.0 * np.log10(power + 1e-10)).astype(np.float32)


# --- classic features + clustering ---------------------------------------------------------


def _mel_filterbank() -> npt.NDArray[np.float64]:
    freqs = np.linspace(0, SAMPLE_RATE / 2, _N_FFT // 2 + 1)
    to_mel = 2595.0 * np.log10(1.0 + np.array([0.0, SAMPLE_RATE / 2]) / 700.0)
    points = 700.0 * (10 ** (np.linspace(to_mel[0], to_mel[1], _N_MELS + 2) / 2595.0) - 1.0)
    bank = np.zeros((_N_MELS, freqs.size))
    for i in range(_N_MELS):
        left, centre, right = points[i : i + 3]
        rising = (freqs - left) / (centre - left)
        falling = (right - freqs) / (right - centre)
        bank[i] = np.clip(np.minimum(rising, falling), 0.0, None)
    return bank


def _dct_matrix() -> npt.NDArray[np.float64]:
    """Orthonormal DCT-II rows c1..c19 over the mel bands (c0, loudness, left out)."""
    bands = np.arange(_N_MELS)
    rows = np.arange(1, _N_MFCC + 1)[:, None]
    matrix: npt.NDArray[np.float64] = np.sqrt(2.0 / _N_MELS) * np.cos(
        np.pi * rows * (2 * bands + 1) / (2 * _N_MELS)
    )
    return matrix


class _WindowStats:
    """Streams blocks into per-0.1 s MFCC sums (float32): ~1.6 KB per second of audio."""

    def __init__(self) -> None:
        self._dct = _dct_matrix()
        self._bank = _mel_filterbank()
        self._window = np.hamming(_WIN)
        self._tail = np.zeros(0, dtype=np.float32)
        self._pending: list[npt.NDArray[np.float64]] = []  # rows: [speech, mfcc…, mfcc²…]
        self.subs: list[npt.NDArray[np.float32]] = []

    def feed(self, block: FloatArray) -> None:
        samples = np.concatenate([self._tail, block.reshape(-1)])
        count = 0 if samples.size < _WIN else 1 + (samples.size - _WIN) // _HOP
        self._tail = samples[count * _HOP :]
        if count == 0:
            return
        index = np.arange(_WIN)[None, :] + _HOP * np.arange(count)[:, None]
        frames = samples[index].astype(np.float64)
        energy = 10.0 * np.log10(np.mean(frames**2, axis=1) + 1e-10)
        # Speech: loud for this block (a quiet stretch of a loud file is not a speaker).
        floor = max(_ABSOLUTE_FLOOR_DB, float(np.percentile(energy, 95)) - _RELATIVE_FLOOR_DB)
        speech = energy > floor
        spectrum = np.abs(np.fft.rfft(frames * self._window, _N_FFT)) ** 2
        mfcc = np.log(spectrum @ self._bank.T + 1e-10) @ self._dct.T
        mfcc = mfcc * speech[:, None]
        rows = np.concatenate([speech[:, None].astype(np.float64), mfcc, mfcc**2], axis=1)
        self._pending.append(rows)
        self._group(final=False)

    def finish(self) -> npt.NDArray[np.float32]:
        self._group(final=True)
        if not self.subs:
            return np.zeros((0, 1 + 2 * _N_MFCC), dtype=np.float32)
        return np.concatenate(self.subs, axis=0)

    def _group(self, *, final: bool) -> None:
        if not self._pending:
            return
        rows = np.concatenate(self._pending, axis=0)
        whole = (rows.shape[0] // _SUB) * _SUB
        if whole:
            grouped = rows[:whole].reshape(-1, _SUB, rows.shape[1]).sum(axis=1)
            self.subs.append(grouped.astype(np.float32))
        rest = rows[whole:]
        if final and rest.shape[0]:
            self.subs.append(rest.sum(axis=0, keepdims=True).astype(np.float32))
            rest = rest[:0]
        self._pending = [rest] if rest.shape[0] else []


class SpectralDiarizer:
    """MFCC spread over 1.5 s windows, Ward clustering, count by silhouette."""

    name = "spectral"

    def diarize(
        self, blocks: Iterable[FloatArray], *, min_speakers: int, max_speakers: int
    ) -> list[Turn]:
        """See `DiarizationEngine`."""
        stats = _WindowStats()
        for block in blocks:
            stats.feed(block)
        subs = stats.finish()
        speech_subs = subs[:, 0] >= _MIN_SPEECH_FRAMES
        starts, features = _windows(subs)
        if starts.size == 0:
            return []
        labels = _cluster(features, min_speakers, max_speakers)
        votes = np.zeros((subs.shape[0], int(labels.max()) + 1))
        for start, label in zip(starts, labels, strict=True):
            votes[start : start + _WINDOW_SUBS, label] += 1
        voted = votes.sum(axis=1) > 0
        sub_labels = np.where(speech_subs & voted, votes.argmax(axis=1), -1).astype(np.int64)
        if self.merge:
            sub_labels = _merge_alike(subs, sub_labels, min_speakers)
        return frames_to_turns(sub_labels, FRAME_SECONDS * _SUB)

    def __init__(self, *, merge: bool = True) -> None:
        self.merge = merge


def _separation(
    subs: npt.NDArray[np.float32], a: npt.NDArray[np.bool_], b: npt.NDArray[np.bool_]
) -> float:
    """How far apart two groups' long-term mean MFCCs are, in pooled frame deviations.

    Averaged over thousands of frames, the mean spectrum forgets what was said and keeps
    the vocal tract and the line; a split of one voice by speaking style moves it little.
    """

    def moments(
        sel: npt.NDArray[np.bool_],
    ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], float]:
        part = subs[sel].astype(np.float64)
        n = float(part[:, 0].sum())
        mean = part[:, 1 : 1 + _N_MFCC].sum(axis=0) / n
        var = part[:, 1 + _N_MFCC :].sum(axis=0) / n - mean**2
        return mean, np.maximum(var, 1e-6), n

    ma, va, na = moments(a)
    mb, vb, nb = moments(b)
    pooled = np.sqrt((va * na + vb * nb) / (na + nb))
    return float(np.sqrt((((ma - mb) / pooled) ** 2).sum()))


def _merge_alike(
    subs: npt.NDArray[np.float32], labels: npt.NDArray[np.int64], low: int
) -> npt.NDArray[np.int64]:
    """Merge speakers that are one voice: too little speech, or spectra too alike."""
    labels = labels.copy()
    while True:
        present = [int(c) for c in np.unique(labels[labels >= 0])]
        if len(present) <= max(1, low):
            return labels
        speech = {c: float(subs[labels == c, 0].sum()) for c in present}
        total = sum(speech.values())
        pairs = [
            (_separation(subs, labels == x, labels == y), x, y)
            for i, x in enumerate(present)
            for y in present[i + 1 :]
        ]
        smallest = min(present, key=lambda c: speech[c])
        if speech[smallest] < _MIN_SPEAKER_SHARE * total:
            # A "speaker" with a sliver of the speech joins the one it sounds most like.
            candidates = sorted(p for p in pairs if smallest in p[1:])
        else:
            candidates = sorted(p for p in pairs if p[0] < _SAME_VOICE_SEPARATION)
        # Two clusters that each mix several voices have alike averages too: merge only
        # when the union sounds like one voice from one 10 s stretch to the next.
        merged = next((p for p in candidates if _one_voice(subs, labels, p[1], p[2])), None)
        if merged is None:
            return labels
        _, x, y = merged
        labels[labels == max(x, y)] = min(x, y)


def _one_voice(
    subs: npt.NDArray[np.float32], labels: npt.NDArray[np.int64], x: int, y: int
) -> bool:
    """Whether speakers `x` and `y` together sound like one voice throughout.

    Their speech, in time order, is cut into 10 s stretches; one reader's stretches have
    long-term spectra within `_ONE_VOICE_SPREAD` pooled deviations of each other (LibriSpeech
    readers: 1.7 at most), stretches of different readers are 2.5 to 4.7 apart.
    """
    speaking = np.flatnonzero((labels == x) | (labels == y))
    count = speaking.size // _VOICE_CHUNK_SUBS
    if count < 2:
        return True  # too little speech to tell: trust the spectra of the two
    chunks = subs[speaking[: count * _VOICE_CHUNK_SUBS]].astype(np.float64)
    sums = chunks.reshape(count, _VOICE_CHUNK_SUBS, -1).sum(axis=1)
    n = sums[:, 0]
    mean = sums[:, 1 : 1 + _N_MFCC] / n[:, None]
    var = np.maximum(sums[:, 1 + _N_MFCC :] / n[:, None] - mean**2, 1e-6)
    # `_separation` of each stretch against every later one, a row at a time (10 hours:
    # 3,600 stretches, never a stretches x stretches x MFCC cube).
    for i in range(count - 1):
        weight = n[i + 1 :, None]
        pooled = np.sqrt((var[i] * n[i] + var[i + 1 :] * weight) / (n[i] + weight))
        apart = np.sqrt((((mean[i] - mean[i + 1 :]) / pooled) ** 2).sum(axis=1))
        if apart.max() >= _ONE_VOICE_SPREAD:
            return False
    return True


def _windows(
    subs: npt.NDArray[np.float32],
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
    """Window start (in sub-windows) and standardised features, for mostly-speech windows.

    The feature is each MFCC's standard deviation over the window. The window means were
    tried beside it and alone: they follow what is said and the line more than who says it
    (DER 43 % vs 7 % on pyannote's telephone sample, 8 % vs 3 % on the AMI excerpt).
    """
    if subs.shape[0] == 0:
        return np.zeros(0, dtype=np.int64), np.zeros((0, _N_MFCC))
    count, sums, squares = subs[:, 0], subs[:, 1 : 1 + _N_MFCC], subs[:, 1 + _N_MFCC :]
    total = count.sum()
    if total == 0:
        return np.zeros(0, dtype=np.int64), np.zeros((0, _N_MFCC))
    last = max(1, subs.shape[0] - _WINDOW_SUBS + 1)
    starts, rows = [], []
    for start in range(0, last, _HOP_SUBS):
        n = count[start : start + _WINDOW_SUBS].sum()
        if n < 0.5 * _SUB * min(_WINDOW_SUBS, subs.shape[0] - start):
            continue
        mean = sums[start : start + _WINDOW_SUBS].sum(axis=0, dtype=np.float64) / n
        var = squares[start : start + _WINDOW_SUBS].sum(axis=0, dtype=np.float64) / n - mean**2
        starts.append(start)
        rows.append(np.sqrt(np.maximum(var, 0.0)))
    if not rows:
        return np.zeros(0, dtype=np.int64), np.zeros((0, _N_MFCC))
    features = np.array(rows)
    features = (features - features.mean(axis=0)) / (features.std(axis=0) + 1e-8)
    return np.array(starts, dtype=np.int64), features


def _cluster(features: npt.NDArray[np.float64], low: int, high: int) -> npt.NDArray[np.int64]:
    """Cluster labels; one speaker unless two or more separate clearly (or `low` says so)."""
    from sklearn.cluster import AgglomerativeClustering  # type: ignore[import-untyped]
    from sklearn.metrics import silhouette_score  # type: ignore[import-untyped]

    n = features.shape[0]
    sample = features
    if n > _MAX_CLUSTERED:
        pick = np.linspace(0, n - 1, _MAX_CLUSTERED).astype(np.int64)
        sample = features[pick]
    candidates = range(max(2, low), min(high, sample.shape[0] - 1) + 1)
    smallest = max(2, int(_MIN_CLUSTER_SHARE * sample.shape[0]))
    scored: list[tuple[int, float, npt.NDArray[np.int64]]] = []
    for k in candidates:
        labels = AgglomerativeClustering(n_clusters=k, linkage="ward").fit_predict(sample)
        if k > max(2, low) and np.bincount(labels).min() < smallest:
            continue  # a "speaker" of a few windows is noise, not a person
        scored.append((k, float(silhouette_score(sample, labels)), labels.astype(np.int64)))
    if not scored:
        return np.zeros(n, dtype=np.int64)
    top = max(score for _, score, _ in scored)
    if low <= 1 and top < _ONE_SPEAKER_SILHOUETTE:
        return np.zeros(n, dtype=np.int64)
    # Silhouette drifts up with k on short recordings: the fewest speakers close to the best.
    best = min((c for c in scored if c[1] >= top - _SILHOUETTE_SLACK), key=lambda c: c[0])
    labels = best[2]
    if sample is features:
        return labels
    centroids = np.array([sample[labels == c].mean(axis=0) for c in range(labels.max() + 1)])
    # |f - c|^2 without the (windows, speakers, features) cube: 10 hours are 72,000 windows.
    distances = (centroids**2).sum(axis=1)[None, :] - 2.0 * features @ centroids.T
    nearest: npt.NDArray[np.int64] = distances.argmin(axis=1).astype(np.int64)
    return nearest


# --- sherpa-onnx (production quality, local models) ----------------------------------------


class SherpaOnnxDiarizer:
    """pyannote segmentation + speaker embeddings in sherpa-onnx, from local ONNX files.

    sherpa-onnx processes the whole recording in one call: this engine joins the blocks
    (about 230 MB per hour of audio) rather than streaming them.
    """

    name = "sherpa-onnx"

    def __init__(
        self,
        *,
        segmentation_model: Path | None,
        embedding_model: Path | None,
        threads: int = 1,
        cluster_threshold: float = 0.5,
    ) -> None:
        for what, path in (
            (
                "segmentation model (SCRIBE_TRANSCRIBER_DIARIZATION_SEGMENTATION_MODEL)",
                segmentation_model,
            ),
            ("embedding model (SCRIBE_TRANSCRIBER_DIARIZATION_EMBEDDING_MODEL)", embedding_model),
        ):
            if path is None:
                raise DiarizationError(f"the sherpa-onnx engine needs a local {what}")
            if not path.is_file():
                raise DiarizationError(f"the sherpa-onnx {what} is not a file: {path}")
        try:
            self._sherpa: Any = importlib.import_module("sherpa_onnx")
        except ImportError:
            raise DiarizationError(
                "the sherpa-onnx engine needs the `sherpa-onnx` package: "
                "install scribe-transcriber with the `sherpa` extra"
            ) from None
        assert segmentation_model is not None
        assert embedding_model is not None
        self._segmentation = segmentation_model
        self._embedding = embedding_model
        self._threads = threads
        self._threshold = cluster_threshold

    def diarize(
        self, blocks: Iterable[FloatArray], *, min_speakers: int, max_speakers: int
    ) -> list[Turn]:
        """See `DiarizationEngine`; the speaker count is fixed only when min equals max."""
        sherpa = self._sherpa
        config = sherpa.OfflineSpeakerDiarizationConfig(
            segmentation=sherpa.OfflineSpeakerSegmentationModelConfig(
                pyannote=sherpa.OfflineSpeakerSegmentationPyannoteModelConfig(
                    model=str(self._segmentation)
                ),
                num_threads=self._threads,
            ),
            embedding=sherpa.SpeakerEmbeddingExtractorConfig(
                model=str(self._embedding), num_threads=self._threads
            ),
            clustering=sherpa.FastClusteringConfig(
                num_clusters=min_speakers if min_speakers == max_speakers else -1,
                threshold=self._threshold,
            ),
        )
        engine = sherpa.OfflineSpeakerDiarization(config)
        parts = [b.reshape(-1) for b in blocks]
        samples = np.concatenate(parts) if parts else np.zeros(0, dtype=np.float32)
        result = engine.process(samples).sort_by_start_time()
        frames = max(1, int(samples.size / _HOP) + 1)
        labels = np.full(frames, -1, dtype=np.int64)
        for seg in result:
            labels[int(seg.start / FRAME_SECONDS) : int(seg.end / FRAME_SECONDS)] = int(seg.speaker)
        return frames_to_turns(labels, FRAME_SECONDS)


# --- what the worker runs per job ----------------------------------------------------------


class Diarizer:
    """Picks by the job's `diarize` option: by channel, or by voice with `engine`."""

    def __init__(self, engine: DiarizationEngine | None = None, *, max_speakers: int = 8) -> None:
        self.engine = engine or SpectralDiarizer()
        self.max_speakers = max_speakers

    def turns(
        self,
        path: Path,
        mode: bool | str,
        *,
        min_speakers: int | None = None,
        max_speakers: int | None = None,
        cancelled: threading.Event | None = None,
    ) -> list[Turn]:
        """Speaker turns of the audio at `path` (blocking; reads it once more, in blocks).

        `cancelled` set stops it at the next block (`JobCancelled`).
        """
        from transcriber.audio import iter_blocks

        def blocks(channels: bool) -> Iterator[FloatArray]:
            for block in iter_blocks(path, channels=channels):
                if cancelled is not None and cancelled.is_set():
                    raise JobCancelled("stopped during diarization")
                yield block

        if mode == "channels":
            return ChannelDiarizer().turns(blocks(True))
        low = min_speakers or 1
        high = max_speakers or max(low, self.max_speakers)
        return self.engine.diarize(blocks(False), min_speakers=low, max_speakers=high)


def build_diarizer(
    *,
    engine: str,
    segmentation_model: Path | None,
    embedding_model: Path | None,
    max_speakers: int,
    threads: int = 1,
) -> Diarizer:
    """The worker's diarizer from its settings; `DiarizationError` when it cannot be built."""
    if engine == "sherpa-onnx":
        chosen: DiarizationEngine = SherpaOnnxDiarizer(
            segmentation_model=segmentation_model, embedding_model=embedding_model, threads=threads
        )
    elif engine == "spectral":
        chosen = SpectralDiarizer()
    else:
        raise DiarizationError(f"unknown diarization engine {engine!r}")
    return Diarizer(chosen, max_speakers=max_speakers)
