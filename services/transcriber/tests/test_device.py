"""Where inference runs: `device=auto` picks CUDA when CTranslate2 sees a GPU, CPU when it
sees none or when CUDA cannot be loaded, and batching follows the device.

No GPU here: the CUDA cases replace CTranslate2's device count and faster-whisper's model
class (the one thing a GPU would change); the CPU cases run the real ones.
"""

from __future__ import annotations

from typing import Any

import ctranslate2
import faster_whisper
import numpy as np
import pytest

from transcriber.engine import EngineRequest, FasterWhisperEngine, resolve_device
from transcriber.settings import TranscriberSettings


class RecordingModel:
    """Stands in for `WhisperModel`: records how it was built; refuses CUDA when told to."""

    built: list[dict[str, Any]] = []
    cuda_fails = False

    def __init__(self, path: str, **kwargs: Any) -> None:
        if kwargs["device"] == "cuda" and RecordingModel.cuda_fails:
            raise RuntimeError("Library libcublas.so.12 is not found or cannot be loaded")
        RecordingModel.built.append({"path": path, **kwargs})
        self.model = type("Info", (), {"is_multilingual": False})()


class RecordingPipeline:
    """Stands in for `BatchedInferencePipeline`: records each call's arguments."""

    calls: list[dict[str, Any]] = []

    def __init__(self, model: RecordingModel) -> None:
        self.model = model

    def transcribe(self, samples: Any, **kwargs: Any) -> tuple[list[Any], None]:
        RecordingPipeline.calls.append(kwargs)
        return [], None


@pytest.fixture
def gpus(monkeypatch: pytest.MonkeyPatch) -> Any:
    RecordingModel.built = []
    RecordingModel.cuda_fails = False
    RecordingPipeline.calls = []
    monkeypatch.setattr(faster_whisper, "WhisperModel", RecordingModel)
    monkeypatch.setattr(faster_whisper, "BatchedInferencePipeline", RecordingPipeline)

    def count(n: int) -> None:
        monkeypatch.setattr(ctranslate2, "get_cuda_device_count", lambda: n)

    return count


def _engine(**settings: Any) -> FasterWhisperEngine:
    return FasterWhisperEngine(TranscriberSettings(health_port=None, **settings))


def test_auto_is_cpu_on_this_machine_without_a_gpu() -> None:
    # The real CTranslate2: this machine has no GPU (if one appears, auto must pick it).
    expected = "cuda" if ctranslate2.get_cuda_device_count() > 0 else "cpu"
    assert resolve_device("auto") == expected
    engine = _engine(cpu_threads=1)
    assert engine.device == expected
    if expected == "cpu":
        assert engine.compute_type == "int8"
        assert engine.batched is False


def test_auto_picks_cpu_when_no_gpu_is_seen(gpus: Any) -> None:
    gpus(0)
    engine = _engine()
    assert (engine.device, engine.compute_type, engine.batched) == ("cpu", "int8", False)
    assert RecordingModel.built[0]["device"] == "cpu"


def test_auto_picks_cuda_float16_and_batching_when_a_gpu_is_seen(gpus: Any) -> None:
    gpus(1)
    engine = _engine()
    assert (engine.device, engine.compute_type, engine.batched) == ("cuda", "float16", True)
    assert RecordingModel.built[0]["device"] == "cuda"
    assert RecordingModel.built[0]["compute_type"] == "float16"


def test_batching_can_be_turned_off_on_a_gpu_and_on_on_a_cpu(gpus: Any) -> None:
    gpus(1)
    assert _engine(batched=False).batched is False
    gpus(0)
    assert _engine(batched=True).batched is True


def test_a_gpu_whose_cuda_libraries_are_missing_falls_back_to_cpu(gpus: Any) -> None:
    gpus(1)
    RecordingModel.cuda_fails = True
    engine = _engine()
    assert (engine.device, engine.compute_type, engine.batched) == ("cpu", "int8", False)
    assert [b["device"] for b in RecordingModel.built] == ["cpu"]


def test_an_explicit_cuda_device_does_not_fall_back(gpus: Any) -> None:
    gpus(1)
    RecordingModel.cuda_fails = True
    with pytest.raises(RuntimeError, match="libcublas"):
        _engine(device="cuda")


def test_the_batch_size_setting_reaches_the_pipeline(gpus: Any) -> None:
    gpus(1)
    engine = _engine(batch_size=24)
    loaded = engine._load(engine.model_name)
    assert isinstance(loaded.pipeline, RecordingPipeline)
    engine._decode(loaded, np.zeros(16000, dtype=np.float32), EngineRequest("en", False), True)
    assert RecordingPipeline.calls[-1]["batch_size"] == 24
    assert RecordingPipeline.calls[-1]["vad_filter"] is True


def test_the_batched_setting_reads_auto_true_and_false(monkeypatch: pytest.MonkeyPatch) -> None:
    for raw, parsed in (("auto", "auto"), ("true", True), ("false", False)):
        monkeypatch.setenv("SCRIBE_TRANSCRIBER_BATCHED", raw)
        assert TranscriberSettings(health_port=None).batched == parsed
