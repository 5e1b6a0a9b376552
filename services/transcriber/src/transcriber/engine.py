"""The speech engine port and its faster-whisper adapter.

`SpeechEngine.transcribe` is blocking and runs on a worker thread; it reports each finished
segment through a callback and stops between segments when asked to (shutdown).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import structlog

from contracts.errors import ErrorCode
from contracts.transcription import Segment, Word
from transcriber.audio import decode_audio
from transcriber.errors import JobCancelled, JobFailure

if TYPE_CHECKING:
    from transcriber.settings import TranscriberSettings

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class EngineRequest:
    """What one transcription asks of the engine."""

    language: str | None
    word_timestamps: bool


@dataclass(frozen=True, slots=True)
class EngineResult:
    """A finished transcription."""

    language: str
    language_probability: float
    duration_seconds: float
    segments: list[Segment]

    @property
    def text(self) -> str:
        """The transcript as one string."""
        return " ".join(s.text.strip() for s in self.segments if s.text.strip())


OnSegment = Callable[[Segment, float, float], None]
"""Called from the engine's thread per finished segment: segment, seconds done, duration."""


class SpeechEngine(Protocol):
    """Turns an audio file into segments. Blocking: call it from a worker thread."""

    @property
    def model_name(self) -> str:
        """The model's name as events carry it."""
        ...

    def transcribe(
        self,
        path: Path,
        request: EngineRequest,
        *,
        on_segment: OnSegment,
        cancelled: threading.Event,
    ) -> EngineResult:
        """Transcribe `path`; raise `JobFailure` (classified) or `JobCancelled`."""
        ...


def resolve_device(device: str) -> str:
    """`auto` becomes `cuda` when CTranslate2 sees a GPU, else `cpu`."""
    if device != "auto":
        return device
    import ctranslate2

    return "cuda" if ctranslate2.get_cuda_device_count() > 0 else "cpu"


class FasterWhisperEngine:
    """faster-whisper, loaded once; decoding classified by `transcriber.audio`."""

    def __init__(self, settings: TranscriberSettings) -> None:
        from faster_whisper import BatchedInferencePipeline, WhisperModel

        self._settings = settings
        self.device = resolve_device(settings.device)
        self.compute_type = settings.compute_type or ("int8" if self.device == "cpu" else "float16")
        self._model_name = settings.resolved_model_name()
        self._model = WhisperModel(
            settings.model,
            device=self.device,
            compute_type=self.compute_type,
            cpu_threads=settings.cpu_threads,
        )
        self._pipeline: Any = BatchedInferencePipeline(self._model) if settings.batched else None
        # One WhisperModel serves one transcription at a time (prefetch 1), but a lock makes
        # that true even if a caller forgets.
        self._lock = threading.Lock()

    @property
    def model_name(self) -> str:
        """The model's name as events carry it."""
        return self._model_name

    def transcribe(
        self,
        path: Path,
        request: EngineRequest,
        *,
        on_segment: OnSegment,
        cancelled: threading.Event,
    ) -> EngineResult:
        """Decode, then transcribe segment by segment (see `SpeechEngine`)."""
        audio = decode_audio(path, max_duration_seconds=self._settings.max_duration_seconds)
        if audio.bad_frames:
            log.warning("audio_frames_skipped", bad_frames=audio.bad_frames)
        if cancelled.is_set():
            raise JobCancelled("shutdown before inference began")
        duration = audio.duration_seconds
        settings = self._settings
        with self._lock:
            try:
                if self._pipeline is not None:
                    segments, info = self._pipeline.transcribe(
                        audio.samples,
                        language=request.language,
                        beam_size=settings.beam_size,
                        word_timestamps=request.word_timestamps,
                        vad_filter=settings.vad_filter,
                        batch_size=settings.batch_size,
                    )
                else:
                    segments, info = self._model.transcribe(
                        audio.samples,
                        language=request.language,
                        beam_size=settings.beam_size,
                        word_timestamps=request.word_timestamps,
                        vad_filter=settings.vad_filter,
                    )
                result: list[Segment] = []
                # The generator does the work lazily: each step decodes one more window.
                for fw_segment in segments:
                    segment = _to_segment(len(result), fw_segment, request.word_timestamps)
                    result.append(segment)
                    on_segment(segment, min(segment.end, duration), duration)
                    if cancelled.is_set():
                        raise JobCancelled("shutdown during inference")
            except (JobCancelled, JobFailure):
                raise
            except (RuntimeError, ValueError, MemoryError) as exc:
                # CTranslate2 reports model failures (out of memory, bad input) this way.
                raise JobFailure(
                    ErrorCode.MODEL_ERROR, f"the speech model failed: {exc}", retryable=True
                ) from exc
        return EngineResult(
            language=info.language,
            language_probability=min(1.0, max(0.0, float(info.language_probability))),
            duration_seconds=duration,
            segments=result,
        )


def _to_segment(index: int, fw: Any, with_words: bool) -> Segment:
    start = max(0.0, float(fw.start))
    end = max(start, float(fw.end))
    words: list[Word] | None = None
    if with_words:
        words = []
        for w in fw.words or ():
            w_start = max(0.0, float(w.start))
            words.append(
                Word(
                    word=w.word,
                    start=w_start,
                    end=max(w_start, float(w.end)),
                    probability=min(1.0, max(0.0, float(w.probability))),
                )
            )
    return Segment(
        id=index,
        start=start,
        end=end,
        text=fw.text.strip(),
        avg_logprob=float(fw.avg_logprob),
        no_speech_prob=min(1.0, max(0.0, float(fw.no_speech_prob))),
        words=words,
    )
