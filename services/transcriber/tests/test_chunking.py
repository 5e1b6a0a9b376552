"""Splitting long audio: chunks tile it, cut at silences, hard-cut with overlap otherwise.

Real files, real PyAV decoding, real Silero VAD on Festival speech; a VAD that hears only
speech stands in where a test needs audio without any silence.
"""

from __future__ import annotations

import itertools
import wave
from pathlib import Path
from uuid import uuid4

import numpy as np
import numpy.typing as npt
import pytest

from services.transcriber.tests.festival import synthesize
from transcriber.audio import SAMPLE_RATE, StreamedAudio, decode_audio
from transcriber.chunk_store import FileChunkStore
from transcriber.chunking import ChunkPolicy, Planned, plan_chunks
from transcriber.sources import FileSource

SCRIPTS = {
    "weather": "Good morning. Today the weather in Boston will be sunny and warm.",
    "meeting": "Welcome to the quarterly planning meeting. First, we will review the budget.",
    "numbers": "Please call me back tomorrow afternoon about the invoice for the kitchen.",
}

POLICY = ChunkPolicy(chunk_seconds=30.0, search_seconds=8.0, overlap_seconds=2.0)
PAUSE_SECONDS = 1.5


def write_wav(path: Path, samples: npt.NDArray[np.int16]) -> Path:
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(SAMPLE_RATE)
        out.writeframes(samples.astype("<i2").tobytes())
    return path


def pcm(path: Path) -> npt.NDArray[np.int16]:
    with wave.open(str(path), "rb") as f:
        assert f.getframerate() == SAMPLE_RATE
        assert f.getnchannels() == 1
        return np.frombuffer(f.readframes(f.getnframes()), dtype="<i2")


def speech_with_pauses(path: Path, seconds: float) -> tuple[Path, list[tuple[int, int]]]:
    """Festival sentences separated by 1.5 s of silence; returns the silences (samples)."""
    clips = [pcm(synthesize(text)) for text in SCRIPTS.values()]
    pause = np.zeros(int(PAUSE_SECONDS * SAMPLE_RATE), dtype=np.int16)
    parts: list[npt.NDArray[np.int16]] = []
    pauses: list[tuple[int, int]] = []
    total = 0
    i = 0
    while total < seconds * SAMPLE_RATE:
        clip = clips[i % len(clips)]
        parts.append(clip)
        total += clip.shape[0]
        pauses.append((total, total + pause.shape[0]))
        parts.append(pause)
        total += pause.shape[0]
        i += 1
    return write_wav(path, np.concatenate(parts)), pauses


def split(
    path: Path, media: Path, policy: ChunkPolicy = POLICY, **kwargs: object
) -> tuple[Planned, npt.NDArray[np.int16]]:
    job = uuid4()
    blocks = StreamedAudio(path, max_duration_seconds=36000, block_seconds=policy.block_seconds)
    source = pcm(path)
    planned = plan_chunks(
        blocks,
        estimated_seconds=source.shape[0] / SAMPLE_RATE,
        policy=policy,
        sink=FileChunkStore(media).sink("acme", job),
        **kwargs,  # type: ignore[arg-type]
    )
    return planned, source


def assert_tiles(planned: Planned, source: npt.NDArray[np.int16], media: Path) -> None:
    cuts = planned.cuts
    assert planned.total_samples == source.shape[0]
    assert cuts[0].start == cuts[0].core_start == 0
    assert cuts[-1].core_end == cuts[-1].end == source.shape[0]
    for before, after in itertools.pairwise(cuts):
        assert before.core_end == after.core_start
    for cut in cuts:
        assert cut.start <= cut.core_start < cut.core_end <= cut.end
        assert (cut.end - cut.start) / SAMPLE_RATE <= POLICY.chunk_seconds
        # Each chunk is the original's samples, normalised once, readable back by `sources`.
        path = FileSource(media).resolve(cut.uri, tenant_id="acme")
        assert np.array_equal(pcm(path), source[cut.start : cut.end])


def test_long_speech_is_cut_in_its_silences(tmp_path: Path) -> None:
    path, pauses = speech_with_pauses(tmp_path / "talk.wav", 100)
    planned, source = split(path, tmp_path / "media")

    assert len(planned.cuts) >= 4
    assert_tiles(planned, source, tmp_path / "media")
    for cut in planned.cuts[:-1]:
        assert cut.silence_cut
        assert cut.end == cut.core_end  # no overlap where the cut is in a silence
        assert any(lo <= cut.core_end <= hi for lo, hi in pauses), cut


def test_audio_without_silence_is_hard_cut_with_an_overlap(tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    noise = (rng.standard_normal(int(75 * SAMPLE_RATE)) * 3000).astype(np.int16)
    path = write_wav(tmp_path / "noise.wav", noise)
    planned, source = split(path, tmp_path / "media", vad=lambda a: [(0, a.shape[0])])

    assert len(planned.cuts) == 4  # 75 s in chunks of at most 30 s, evenly
    assert_tiles(planned, source, tmp_path / "media")
    half = int(POLICY.overlap_seconds * SAMPLE_RATE) // 2
    for before, after in zip(planned.cuts, planned.cuts[1:], strict=False):
        assert not before.silence_cut
        # The core boundary is in the middle of the audio both chunks hold.
        assert before.end == before.core_end + half
        assert after.start == after.core_start - half


def test_a_redelivered_upload_is_split_at_the_same_samples(tmp_path: Path) -> None:
    path, _ = speech_with_pauses(tmp_path / "talk.wav", 70)
    media = tmp_path / "media"
    first, _ = split(path, media)
    uris = [c.uri for c in first.cuts]
    written = [FileSource(media).resolve(u, tenant_id="acme").read_bytes() for u in uris]
    again, _ = split(path, media)

    assert [(c.start, c.end, c.core_start, c.core_end) for c in again.cuts] == [
        (c.start, c.end, c.core_start, c.core_end) for c in first.cuts
    ]
    assert [
        FileSource(media).resolve(c.uri, tenant_id="acme").read_bytes() for c in again.cuts
    ] == (written)


def test_a_file_shorter_than_a_chunk_is_one_chunk(tmp_path: Path) -> None:
    path, _ = speech_with_pauses(tmp_path / "short.wav", 10)
    planned, source = split(path, tmp_path / "media")
    assert len(planned.cuts) == 1
    assert_tiles(planned, source, tmp_path / "media")


def test_speech_is_sampled_once_for_language_detection(tmp_path: Path) -> None:
    path, _ = speech_with_pauses(tmp_path / "talk.wav", 70)
    planned, _ = split(
        path,
        tmp_path / "media",
        ChunkPolicy(
            chunk_seconds=30.0, search_seconds=8.0, overlap_seconds=2.0, language_sample_seconds=10
        ),
        sample_speech=True,
    )
    assert planned.speech is not None
    assert planned.speech.shape[0] == 10 * SAMPLE_RATE
    # Speech only: the sample is louder on average than the whole (which has pauses).
    whole = decode_audio(path, max_duration_seconds=3600).samples
    assert float(np.abs(planned.speech).mean()) > float(np.abs(whole).mean())


@pytest.mark.parametrize("estimate", [0.5, 2.0])
def test_a_wrong_duration_estimate_still_tiles_within_the_chunk_length(
    tmp_path: Path, estimate: float
) -> None:
    path, _ = speech_with_pauses(tmp_path / "talk.wav", 80)
    source = pcm(path)
    planned = plan_chunks(
        StreamedAudio(path, max_duration_seconds=36000),
        estimated_seconds=estimate * source.shape[0] / SAMPLE_RATE,
        policy=POLICY,
        sink=FileChunkStore(tmp_path / "media").sink("acme", uuid4()),
    )
    assert_tiles(planned, source, tmp_path / "media")


def tone_and_pauses_wav(path: Path, minutes: float, rate: int = SAMPLE_RATE) -> Path:
    """`minutes` of 7 s tone bursts and 1 s pauses, streamed to disk a minute at a time."""
    t = np.arange(8 * rate) / rate
    period = (np.sin(2 * np.pi * 220 * t) * 6000 * (t < 7)).astype("<i2")
    minute = np.tile(period, 8)[: 60 * rate].tobytes()
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        for _ in range(int(minutes)):
            out.writeframes(minute)
    return path


_PEAK_RSS = """
import resource, sys, uuid
from pathlib import Path
from transcriber.audio import StreamedAudio, probe_duration
from transcriber.chunk_store import FileChunkStore
from transcriber.chunking import ChunkPolicy, plan_chunks
path, media = Path(sys.argv[1]), Path(sys.argv[2])
planned = plan_chunks(
    StreamedAudio(path, max_duration_seconds=36000),
    estimated_seconds=probe_duration(path),
    policy=ChunkPolicy(),
    sink=FileChunkStore(media).sink("acme", uuid.uuid4()),
)
print(len(planned.cuts), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


@pytest.mark.slow
def test_splitting_memory_does_not_grow_with_the_audio(tmp_path: Path) -> None:
    import subprocess
    import sys

    peaks: dict[int, int] = {}
    for minutes in (20, 60):
        path = tone_and_pauses_wav(tmp_path / f"{minutes}.wav", minutes)
        run = subprocess.run(
            [sys.executable, "-c", _PEAK_RSS, str(path), str(tmp_path / "media")],
            capture_output=True,
            text=True,
            timeout=600,
            check=True,
        )
        chunks, peak_kib = map(int, run.stdout.split())
        assert chunks >= minutes // 3
        peaks[minutes] = peak_kib
        path.unlink()
    # Three times the audio; a whole-file decode alone would add ~150 MiB (float32).
    assert peaks[60] <= peaks[20] * 1.1, peaks
