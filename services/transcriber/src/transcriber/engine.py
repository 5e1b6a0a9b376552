"""The speech engine port and its faster-whisper adapter.

`SpeechEngine.transcribe` is blocking and runs on a worker thread; it reports each finished
segment through a callback and stops between segments when asked to (shutdown).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal, Protocol, runtime_checkable

import structlog

from contracts.errors import ErrorCode
from contracts.transcription import Segment, Word
from scribe_runtime.settings import DEFAULT_MAX_DURATION_SECONDS
from transcriber import guardrails, models
from transcriber.audio import SAMPLE_RATE, decode_audio
from transcriber.errors import JobCancelled, JobFailure

if TYPE_CHECKING:
    from transcriber.settings import TranscriberSettings

log = structlog.get_logger(__name__)


Task = Literal["transcribe", "translate"]
TEMPERATURE_FALLBACK: Final = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
"""Whisper's schedule: a window whose text loops or is unsure is decoded again, hotter."""


@dataclass(frozen=True, slots=True)
class EngineRequest:
    """What one transcription asks of the engine; every option has the worker's default."""

    language: str | None
    word_timestamps: bool
    task: Task = "transcribe"
    """`translate`: English text from speech in any language (multilingual models only)."""
    initial_prompt: str | None = None
    """Text the model reads as if it preceded the audio: names, spelling, style."""
    hotwords: str | None = None
    """Words or phrases to favour (faster-whisper puts them in the prompt)."""
    temperature: float | None = None
    """None or 0: greedy/beam with the fallback schedule; above 0: sample at this one."""
    beam_size: int | None = None
    """None: the worker's `beam_size`."""
    vad_filter: bool | None = None
    """None: the worker's `vad_filter`."""
    model: str | None = None
    """The model the job asked for; it must be the one this worker serves. None: that one."""


@dataclass(frozen=True, slots=True)
class EngineResult:
    """A finished transcription."""

    language: str
    language_probability: float
    duration_seconds: float
    segments: list[Segment]
    model_name: str | None = None
    """The model that produced it."""
    empty_reason: str | None = None
    """Why there is no text when there is none: `no_speech` (nothing detected)."""
    speech_seconds: float | None = None
    """Speech detected by VAD, when the guardrails ran it."""
    repetitions_cut: int = 0
    """Words removed as repetition loops (within and across segments)."""
    segments_dropped: int = 0
    """Segments dropped as non-speech or as repeats of the segment before."""

    @property
    def text(self) -> str:
        """The transcript as one string."""
        return " ".join(s.text.strip() for s in self.segments if s.text.strip())


OnSegment = Callable[[Segment, float, float], None]
"""Called from the engine's thread per finished segment: segment, seconds done, duration."""


@runtime_checkable
class ModelChooser(Protocol):
    """An engine that says, without I/O, whether it can serve a request, and with what."""

    def check(self, request: EngineRequest) -> str:
        """The model name that will serve `request`; `JobFailure` when none can."""
        ...


@runtime_checkable
class LanguageDetector(Protocol):
    """An engine that can name the language of some speech (once, for a long job)."""

    def detect_language(self, samples: Any, request: EngineRequest) -> tuple[str, float]:
        """(language, probability) of `samples` (16 kHz mono float32) for `request`'s model."""
        ...


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


class _Loaded:
    """The loaded model and its batched pipeline."""

    def __init__(self, model: Any, pipeline: Any) -> None:
        self.model = model
        self.pipeline = pipeline

    @property
    def multilingual(self) -> bool:
        return bool(self.model.model.is_multilingual)


def default_compute_type(device: str) -> str:
    """`int8` on CPU, `float16` on CUDA (CTranslate2's fastest types on each)."""
    return "int8" if device == "cpu" else "float16"


class FasterWhisperEngine:
    """faster-whisper: one model, loaded once, guardrails around the decoding.

    A worker serves one model (its pool, `scribe_runtime.topology.pool_queue`): the router
    sends it only jobs for that model, and `check` refuses any other that reaches it.
    """

    def __init__(
        self,
        settings: TranscriberSettings,
        *,
        max_duration_seconds: float = DEFAULT_MAX_DURATION_SECONDS,
    ) -> None:
        self._settings = settings
        self._max_duration_seconds = max_duration_seconds
        self.device = resolve_device(settings.device)
        self.compute_type = settings.compute_type or default_compute_type(self.device)
        self._model_name = settings.resolved_model_name()
        # name events carry -> what to load: the one model this worker serves.
        self._specs: dict[str, str] = {self._model_name: settings.model}
        self._loaded: dict[str, _Loaded] = {}
        self._vad: Any = None
        # One WhisperModel serves one transcription at a time (prefetch 1), but a lock makes
        # that true even if a caller forgets.
        self._lock = threading.Lock()
        self._load(self._model_name)

    @property
    def model_name(self) -> str:
        """The served model's name as events carry it."""
        return self._model_name

    @property
    def batched(self) -> bool:
        """Whether decoding goes through `BatchedInferencePipeline` (`auto`: on CUDA)."""
        if self._settings.batched == "auto":
            return self.device == "cuda"
        return bool(self._settings.batched)

    @property
    def model_names(self) -> list[str]:
        """The models a job may ask for on this worker: its one model."""
        return list(self._specs)

    def _load(self, name: str) -> _Loaded:
        loaded = self._loaded.get(name)
        if loaded is not None:
            return loaded
        from faster_whisper import BatchedInferencePipeline, WhisperModel

        spec = self._specs[name]
        local = models.resolve(spec, self._settings.model_cache_dir)
        source = str(local) if local is not None else spec
        try:
            model = WhisperModel(
                source,
                device=self.device,
                compute_type=self.compute_type,
                cpu_threads=self._settings.cpu_threads,
            )
        except (RuntimeError, ValueError, OSError) as exc:
            # `auto` saw a GPU, but CUDA is not usable (cuBLAS/cuDNN missing from the image,
            # a driver too old, the GPU taken): run on CPU rather than not at all.
            if not (self._settings.device == "auto" and self.device == "cuda" and not self._loaded):
                raise
            log.warning("cuda_unusable_falling_back_to_cpu", model=name, error=repr(exc))
            self.device = "cpu"
            self.compute_type = self._settings.compute_type or default_compute_type("cpu")
            if self.compute_type == "float16":
                self.compute_type = "int8"
            model = WhisperModel(
                source,
                device=self.device,
                compute_type=self.compute_type,
                cpu_threads=self._settings.cpu_threads,
            )
        pipeline = BatchedInferencePipeline(model) if self.batched else None
        loaded = self._loaded[name] = _Loaded(model, pipeline)
        log.info("model_loaded", model=name, multilingual=loaded.multilingual)
        return loaded

    def check(self, request: EngineRequest) -> str:
        """The model name that will serve `request`; `JobFailure` when it cannot be served.

        Refused (permanent, not retryable): a model this worker does not serve (the router
        sends it none, but a replayed or hand-routed message may); translation or a
        language other than English on an English-only (`.en`) model, which would
        otherwise quietly return English.
        """
        name = request.model or self._model_name
        if name not in self._specs:
            raise JobFailure(
                ErrorCode.MODEL_UNAVAILABLE,
                f"model {name!r} is not served by this worker (it serves {', '.join(self._specs)})",
            )
        english_only = not self._multilingual(name)
        if english_only and request.task == "translate":
            raise JobFailure(
                ErrorCode.UNSUPPORTED_OPTION,
                f"model {name!r} is English-only and cannot translate; ask for a "
                "multilingual model",
            )
        if english_only and request.language not in (None, "en"):
            raise JobFailure(
                ErrorCode.UNSUPPORTED_OPTION,
                f"model {name!r} is English-only; language {request.language!r} needs a "
                "multilingual model",
            )
        return name

    def _multilingual(self, name: str) -> bool:
        if name in self._loaded:
            return self._loaded[name].multilingual
        return not models.is_english_only(name)

    def detect_language(self, samples: Any, request: EngineRequest) -> tuple[str, float]:
        """The language of `samples` as the model serving `request` hears it.

        Given (`request.language`) or on an English-only model: that language, certain.
        """
        name = self.check(request)
        if request.language is not None:
            return request.language, 1.0
        with self._lock:
            loaded = self._load(name)
            if not loaded.multilingual:
                return "en", 1.0
            try:
                language, probability, _ = loaded.model.detect_language(audio=samples)
            except (RuntimeError, ValueError, MemoryError) as exc:
                raise JobFailure(
                    ErrorCode.MODEL_ERROR, f"language detection failed: {exc}", retryable=True
                ) from exc
        return str(language), min(1.0, max(0.0, float(probability)))

    def _speech_spans(self, samples: Any) -> list[tuple[float, float]]:
        from faster_whisper.vad import VadOptions, get_speech_timestamps

        chunks = get_speech_timestamps(samples, VadOptions())
        return [(c["start"] / SAMPLE_RATE, c["end"] / SAMPLE_RATE) for c in chunks]

    def transcribe(
        self,
        path: Path,
        request: EngineRequest,
        *,
        on_segment: OnSegment,
        cancelled: threading.Event,
    ) -> EngineResult:
        """Decode, then transcribe segment by segment (see `SpeechEngine`)."""
        name = self.check(request)
        audio = decode_audio(path, max_duration_seconds=self._max_duration_seconds)
        if audio.bad_frames:
            log.warning("audio_frames_skipped", bad_frames=audio.bad_frames)
        if cancelled.is_set():
            raise JobCancelled("shutdown before inference began")
        duration = audio.duration_seconds
        settings = self._settings
        with self._lock:
            try:
                loaded = self._load(name)
                if not loaded.multilingual:
                    # Loaded, the model itself says what it is (a directory need not end .en).
                    name = self.check(request)
                    loaded = self._load(name)
                english_only = not loaded.multilingual
                spans: list[tuple[float, float]] | None = None
                if settings.guardrails:
                    spans = self._speech_spans(audio.samples)
                    speech = guardrails.speech_seconds(spans)
                    if speech < settings.min_speech_seconds:
                        log.info("no_speech_detected", speech_seconds=round(speech, 3))
                        return EngineResult(
                            language=request.language or "en",
                            language_probability=0.0 if request.language is None else 1.0,
                            duration_seconds=duration,
                            segments=[],
                            model_name=name,
                            empty_reason="no_speech",
                            speech_seconds=speech,
                        )
                segments, info = self._decode(loaded, audio.samples, request, english_only)
                emitter = _Emitter(
                    on_segment=on_segment,
                    duration=duration,
                    max_repeats=settings.max_repeats if settings.guardrails else None,
                )
                # The generator does the work lazily: each step decodes one more window.
                for fw_segment in segments:
                    emitter.push(fw_segment, request.word_timestamps, spans)
                    if cancelled.is_set():
                        raise JobCancelled("shutdown during inference")
                emitter.flush()
            except (JobCancelled, JobFailure):
                raise
            except (RuntimeError, ValueError, MemoryError) as exc:
                # CTranslate2 reports model failures (out of memory, bad input) this way.
                raise JobFailure(
                    ErrorCode.MODEL_ERROR, f"the speech model failed: {exc}", retryable=True
                ) from exc
        result = emitter.segments
        empty = None
        if spans is not None and not result:
            empty = "no_speech"
        return EngineResult(
            language=info.language,
            language_probability=min(1.0, max(0.0, float(info.language_probability))),
            duration_seconds=duration,
            segments=result,
            model_name=name,
            empty_reason=empty,
            speech_seconds=None if spans is None else guardrails.speech_seconds(spans),
            repetitions_cut=emitter.words_cut,
            segments_dropped=emitter.dropped,
        )

    def _decode(
        self, loaded: _Loaded, samples: Any, request: EngineRequest, english_only: bool
    ) -> tuple[Any, Any]:
        settings = self._settings
        if request.temperature:
            temperature: float | tuple[float, ...] = request.temperature
        elif settings.temperature_fallback:
            temperature = TEMPERATURE_FALLBACK
        else:
            temperature = 0.0
        common: dict[str, Any] = {
            # An English-only model is told so; detection on it is meaningless.
            "language": "en" if english_only else request.language,
            "task": request.task,
            "beam_size": request.beam_size or settings.beam_size,
            "initial_prompt": request.initial_prompt or None,
            "hotwords": request.hotwords or None,
            "vad_filter": settings.vad_filter if request.vad_filter is None else request.vad_filter,
        }
        if loaded.pipeline is not None:
            # Batched: no fallback, no silence threshold, no conditioning (faster-whisper).
            # It batches VAD chunks: without VAD it refuses audio of 30 s or more.
            common["vad_filter"] = True
            return loaded.pipeline.transcribe(  # type: ignore[no-any-return]
                samples,
                temperature=temperature,
                word_timestamps=request.word_timestamps,
                batch_size=settings.batch_size,
                **common,
            )
        silence = settings.hallucination_silence_threshold
        return loaded.model.transcribe(  # type: ignore[no-any-return]
            samples,
            temperature=temperature,
            # faster-whisper only applies the silence threshold with word timestamps on.
            word_timestamps=request.word_timestamps or silence is not None,
            hallucination_silence_threshold=silence,
            **common,
        )


class _Emitter:
    """Turns decoded segments into contract segments, guarded, and reports each once final.

    A segment equal to the one before it is held back until its run ends: a run of more
    than `max_repeats` is a loop and only its first segment is kept (flagged). Ids are given
    at emission, so they stay dense and ascending when segments are dropped.
    """

    def __init__(self, *, on_segment: OnSegment, duration: float, max_repeats: int | None) -> None:
        self._on_segment = on_segment
        self._duration = duration
        self._max_repeats = max_repeats
        self._pending: list[Segment] = []
        self._pending_key = ""
        self.segments: list[Segment] = []
        self.words_cut = 0
        self.dropped = 0

    def push(self, fw: Any, with_words: bool, spans: list[tuple[float, float]] | None) -> None:
        segment = _to_segment(fw, with_words)
        if self._max_repeats is None:
            self._emit(segment)
            return
        flags = segment.flags or ()
        if spans is not None and guardrails.NO_SPEECH in flags and _outside_speech(segment, spans):
            self.dropped += 1
            return
        cut = guardrails.cut_repetitions(segment.text, max_repeats=self._max_repeats)
        if cut.cut:
            self.words_cut += cut.removed_words
            segment = _apply_cut(segment, cut)
        key = guardrails.repetition_key(segment.text)
        if key and key == self._pending_key:
            self._pending.append(segment)
            return
        self.flush()
        self._pending = [segment]
        self._pending_key = key

    def flush(self) -> None:
        pending, self._pending, self._pending_key = self._pending, [], ""
        if self._max_repeats is not None and len(pending) > self._max_repeats:
            first, rest = pending[0], pending[1:]
            self.dropped += len(rest)
            self.words_cut += sum(len(s.text.split()) for s in rest)
            pending = [_flagged(first.model_copy(update={"end": rest[-1].end}))]
        for segment in pending:
            self._emit(segment)

    def _emit(self, segment: Segment) -> None:
        segment = segment.model_copy(update={"id": len(self.segments)})
        self.segments.append(segment)
        self._on_segment(segment, min(segment.end, self._duration), self._duration)


def _outside_speech(segment: Segment, spans: list[tuple[float, float]], pad: float = 0.5) -> bool:
    return not any(segment.start < end + pad and start - pad < segment.end for start, end in spans)


def _flagged(segment: Segment) -> Segment:
    flags = list(segment.flags or [])
    if guardrails.REPETITION not in flags:
        flags.insert(0, guardrails.REPETITION)
    return segment.model_copy(update={"flags": flags})


def _apply_cut(segment: Segment, cut: guardrails.Cut) -> Segment:
    words = segment.words
    if words is not None and len(words) == cut.total_words:
        words = [words[i] for i in cut.kept]
        end = words[-1].end if words else segment.end
    else:
        end = segment.end
    return _flagged(segment.model_copy(update={"text": cut.text, "words": words, "end": end}))


def _to_segment(fw: Any, with_words: bool) -> Segment:
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
    text = fw.text.strip()
    avg_logprob = float(fw.avg_logprob)
    no_speech_prob = min(1.0, max(0.0, float(fw.no_speech_prob)))
    ratio = float(getattr(fw, "compression_ratio", 0.0) or guardrails.compression_ratio(text))
    return Segment(
        id=0,
        start=start,
        end=end,
        text=text,
        avg_logprob=avg_logprob,
        no_speech_prob=no_speech_prob,
        words=words,
        compression_ratio=round(ratio, 3),
        flags=guardrails.segment_flags(
            text, avg_logprob=avg_logprob, no_speech_prob=no_speech_prob, compression=ratio
        ),
    )
