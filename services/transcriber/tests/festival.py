"""Festival speech for the engine tests, made as `tests/speech.py` makes it (same cache).

A copy of the few lines the engine tests need: `tests` is also this package's name under
pytest's importlib mode, so the root helper cannot be imported from here reliably.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Final

import pytest

CACHE: Final = Path(__file__).resolve().parents[3] / ".scribe" / "fixtures"
VOICE: Final = "(voice_cmu_us_slt_arctic_hts)"


def synthesize(text: str) -> Path:
    """A 16 kHz mono WAV of Festival's HTS voice reading `text`, cached by its hash."""
    key = hashlib.sha256(f"{VOICE}|wav|{text}".encode()).hexdigest()[:16]
    target = CACHE / f"speech-{key}.wav"
    if target.exists():
        return target
    text2wave = shutil.which("text2wave")
    if text2wave is None:
        pytest.skip(
            "text2wave (Festival) is not installed: `apt-get install festival festvox-us-slt-hts`"
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
