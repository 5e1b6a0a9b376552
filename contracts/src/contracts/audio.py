"""Events about audio entering the system."""

from __future__ import annotations

import hashlib
import json
from typing import Annotated, ClassVar, Final, Literal

from pydantic import AnyUrl, BaseModel, ConfigDict, Field, StringConstraints, UrlConstraints

from contracts.envelope import Event

MAX_INITIAL_PROMPT_CHARS: Final = 1000
"""Longer than Whisper keeps (its last 224 tokens); bounded so no event carries a book."""

MAX_HOTWORDS_CHARS: Final = 500
"""Hotwords longer than this are refused (they share the prompt's 224 tokens)."""

Sha256 = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
LanguageCode = Annotated[str, StringConstraints(pattern=r"^[a-z]{2,3}$")]
InitialPrompt = Annotated[str, StringConstraints(max_length=MAX_INITIAL_PROMPT_CHARS)]
AudioUri = Annotated[AnyUrl, UrlConstraints(allowed_schemes=["file", "http", "https", "s3"])]
JobFingerprint = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]


def job_fingerprint(
    *,
    audio_uri: str,
    sha256: str | None,
    language: str | None,
    model: str | None,
    word_timestamps: bool,
) -> str:
    """What defines a job (its audio and options), as 64 hex digits.

    The first upload of a job id defines the job; a later upload with another fingerprint
    is a conflicting one (refused as `conflicting_job`), an equal one a redelivery.
    """
    canonical = json.dumps(
        [audio_uri, sha256, language, model, bool(word_timestamps)], separators=(",", ":")
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


class TranscriptionOptions(BaseModel):
    """What the producer asks of the transcription."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    language: LanguageCode | None = Field(
        default=None, description="ISO 639-1 code, e.g. `en`; omitted means detect."
    )
    model: Annotated[str, StringConstraints(min_length=1, max_length=128)] | None = Field(
        default=None, description="Speech model name; omitted means the worker's default."
    )
    word_timestamps: bool = Field(
        default=False, description="Include words with start/end and probability."
    )
    task: Literal["transcribe", "translate"] | None = Field(
        default=None,
        description=(
            "`translate` returns English text from speech in any language (multilingual "
            "models only); omitted means `transcribe`."
        ),
    )
    initial_prompt: InitialPrompt | None = Field(
        default=None,
        description=(
            "Text the model reads as if it came before the audio: spellings of names, terms, "
            "style. Whisper keeps its last 224 tokens."
        ),
    )
    hotwords: Annotated[str, StringConstraints(max_length=MAX_HOTWORDS_CHARS)] | None = Field(
        default=None, description="Words or phrases to favour, e.g. proper nouns."
    )
    temperature: float | None = Field(
        default=None,
        ge=0,
        le=1,
        description=(
            "Sampling temperature; omitted or 0 decodes deterministically and re-decodes "
            "hotter only where the text loops or is unsure (Whisper's fallback)."
        ),
    )
    beam_size: int | None = Field(
        default=None, ge=1, le=10, description="Beam search width; omitted means the worker's."
    )
    vad_filter: bool | None = Field(
        default=None,
        description="Skip non-speech with voice activity detection; omitted: the worker's.",
    )


class AudioUploadedV1(Event):
    """Audio is stored and waiting to be transcribed."""

    TYPE: ClassVar[str] = "audio.uploaded"
    VERSION: ClassVar[int] = 1

    type: Literal["audio.uploaded"] = "audio.uploaded"
    version: Literal[1] = 1
    audio_uri: AudioUri = Field(
        description="Where the audio is: `file://` under the media root, `http(s)://`, `s3://`."
    )
    sha256: Sha256 | None = Field(default=None, description="Lower-case hex SHA-256 of the bytes.")
    size_bytes: int | None = Field(default=None, ge=0, description="Size of the stored file.")
    content_type: str | None = Field(
        default=None, max_length=255, description="Media type sniffed from the bytes."
    )
    original_filename: str | None = Field(
        default=None, max_length=1024, description="The client's file name; never used as a path."
    )
    duration_seconds: float | None = Field(
        default=None, ge=0, description="Duration probed at upload, if known."
    )
    options: TranscriptionOptions = Field(default_factory=TranscriptionOptions)

    def job_fingerprint(self) -> str:
        """This upload's job definition (see `job_fingerprint`)."""
        return job_fingerprint(
            audio_uri=str(self.audio_uri),
            sha256=self.sha256,
            language=self.options.language,
            model=self.options.model,
            word_timestamps=self.options.word_timestamps,
        )
