"""Events about audio entering the system."""

from __future__ import annotations

import hashlib
import json
from typing import Annotated, ClassVar, Final, Literal, Self

from pydantic import (
    AnyUrl,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    UrlConstraints,
    model_validator,
)

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
MAX_SPEAKERS: Final = 20
"""The most speakers a job may ask diarization to tell apart."""
SpeakerCount = Annotated[int, Field(ge=1, le=MAX_SPEAKERS)]
Diarize = bool | Literal["channels"]
"""`false`: no speaker labels; `true`: tell speakers apart by voice; `"channels"`: one
speaker per channel of a multi-channel recording (exact, cheap: call-centre audio)."""


def job_fingerprint(
    *,
    audio_uri: str,
    sha256: str | None,
    language: str | None,
    model: str | None,
    word_timestamps: bool,
    diarize: Diarize = False,
    min_speakers: int | None = None,
    max_speakers: int | None = None,
) -> str:
    """What defines a job (its audio and options), as 64 hex digits.

    The first upload of a job id defines the job; a later upload with another fingerprint
    is a conflicting one (refused as `conflicting_job`), an equal one a redelivery.
    Diarization changes what the transcript says (speaker labels), so it is part of the
    definition; it is appended only when asked, so every fingerprint of a job without it
    is the one earlier versions computed.
    """
    fields: list[object] = [audio_uri, sha256, language, model, bool(word_timestamps)]
    if diarize is not False:
        fields.append({"diarize": diarize, "min": min_speakers, "max": max_speakers})
    canonical = json.dumps(fields, separators=(",", ":"))
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
    diarize: Diarize = Field(
        default=False,
        description=(
            "Label segments and words with who spoke: `true` tells speakers apart by voice, "
            '`"channels"` takes one speaker per channel of a stereo/multi-channel recording.'
        ),
    )
    min_speakers: SpeakerCount | None = Field(
        default=None, description="With `diarize`: at least this many speakers."
    )
    max_speakers: SpeakerCount | None = Field(
        default=None, description="With `diarize`: at most this many speakers."
    )

    @model_validator(mode="after")
    def _speaker_bounds_ordered(self) -> Self:
        if (
            self.min_speakers is not None
            and self.max_speakers is not None
            and self.min_speakers > self.max_speakers
        ):
            raise ValueError(
                f"min_speakers ({self.min_speakers}) is above max_speakers ({self.max_speakers})"
            )
        return self


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
            diarize=self.options.diarize,
            min_speakers=self.options.min_speakers,
            max_speakers=self.options.max_speakers,
        )
