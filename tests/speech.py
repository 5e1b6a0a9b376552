"""Speech fixtures the project makes itself: Festival's HTS voice reading known scripts.

The voice (`festvox-us-slt-hts`) is clear enough that Whisper tiny.en transcribes it
almost word for word, so a test can compare a transcript with the script it was read from.
Files are cached under `.scribe/fixtures/` by the hash of their text and format.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Final

import pytest

CACHE: Final = Path(__file__).resolve().parents[1] / ".scribe" / "fixtures"
VOICE: Final = "(voice_cmu_us_slt_arctic_hts)"

SCRIPTS: Final[dict[str, str]] = {
    "weather": (
        "Good morning. Today the weather in Boston will be sunny and warm, "
        "with a light breeze from the ocean in the afternoon."
    ),
    "meeting": (
        "Welcome to the quarterly planning meeting. First, we will review the budget. "
        "Then the engineering team will present the new search feature. "
        "Finally, we will agree on the release date for the mobile application."
    ),
    "numbers": "Please call me back tomorrow afternoon about the invoice for the kitchen.",
}
"""Scripts read aloud by the fixtures; keys name them in tests."""


def synthesize(text: str, *, fmt: str = "wav") -> Path:
    """A speech file reading `text` (`wav` at 16 kHz mono, or `flac`/`mp3`/`opus` via PyAV)."""
    key = hashlib.sha256(f"{VOICE}|{fmt}|{text}".encode()).hexdigest()[:16]
    target = CACHE / f"speech-{key}.{fmt}"
    if target.exists():
        return target
    if fmt != "wav":
        # Encoded from the cached WAV: Festival reads each script once, whatever the formats.
        wav = synthesize(text)
        with tempfile.TemporaryDirectory() as tmp:
            produced = Path(tmp) / f"out.{fmt}"
            _transcode(wav, produced)
            partial = target.with_suffix(f".{fmt}.part")
            shutil.copyfile(produced, partial)
            partial.replace(target)
        return target
    text2wave = shutil.which("text2wave")
    if text2wave is None:
        pytest.fail(
            "text2wave (Festival) is needed to make speech fixtures: "
            "`apt-get install festival festvox-us-slt-hts` or run `bash scripts/bootstrap`"
        )
    CACHE.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "script.txt"
        script.write_text(text)
        raw = Path(tmp) / "raw.wav"
        subprocess.run(
            [text2wave, "-eval", VOICE, str(script), "-o", str(raw), "-F", "16000"],
            check=True,
            capture_output=True,
            timeout=120,
        )
        partial = target.with_suffix(".wav.part")
        shutil.copyfile(raw, partial)
        partial.replace(target)
    return target


def _transcode(source: Path, target: Path) -> None:
    """Re-encode with PyAV (bundled FFmpeg), so no system ffmpeg is needed."""
    import av

    codec = {"flac": "flac", "mp3": "mp3", "opus": "libopus"}[target.suffix.lstrip(".")]
    with av.open(str(source)) as inp, av.open(str(target), "w") as out:
        # Opus encodes at 48 kHz only; the others keep Whisper's 16 kHz.
        rate = 48000 if codec == "libopus" else 16000
        stream = out.add_stream(codec, rate=rate, layout="mono")
        assert isinstance(stream, av.AudioStream)
        for frame in inp.decode(audio=0):
            frame.pts = None
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
