"""Transcription options a caller may ask for, validated before any job exists."""

from __future__ import annotations

from typing import Any, Final, Literal, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from contracts.audio import (
    MAX_HOTWORDS_CHARS,
    MAX_INITIAL_PROMPT_CHARS,
    MAX_SPEAKERS,
    Diarize,
    SpeakerCount,
    TranscriptionOptions,
)
from ingest.failures import MODEL_UNAVAILABLE, UNSUPPORTED_OPTION, VALIDATION_ERROR

WHISPER_LANGUAGES: Final = frozenset(
    {
        "af",
        "am",
        "ar",
        "as",
        "az",
        "ba",
        "be",
        "bg",
        "bn",
        "bo",
        "br",
        "bs",
        "ca",
        "cs",
        "cy",
        "da",
        "de",
        "el",
        "en",
        "es",
        "et",
        "eu",
        "fa",
        "fi",
        "fo",
        "fr",
        "gl",
        "gu",
        "ha",
        "haw",
        "he",
        "hi",
        "hr",
        "ht",
        "hu",
        "hy",
        "id",
        "is",
        "it",
        "ja",
        "jw",
        "ka",
        "kk",
        "km",
        "kn",
        "ko",
        "la",
        "lb",
        "ln",
        "lo",
        "lt",
        "lv",
        "mg",
        "mi",
        "mk",
        "ml",
        "mn",
        "mr",
        "ms",
        "mt",
        "my",
        "ne",
        "nl",
        "nn",
        "no",
        "oc",
        "pa",
        "pl",
        "ps",
        "pt",
        "ro",
        "ru",
        "sa",
        "sd",
        "si",
        "sk",
        "sl",
        "sn",
        "so",
        "sq",
        "sr",
        "su",
        "sv",
        "sw",
        "ta",
        "te",
        "tg",
        "th",
        "tk",
        "tl",
        "tr",
        "tt",
        "uk",
        "ur",
        "uz",
        "vi",
        "yi",
        "yo",
        "zh",
        "yue",
    }
)
"""ISO 639 codes Whisper models know (faster-whisper's list)."""

OPTION_FIELDS: Final = (
    "language",
    "model",
    "word_timestamps",
    "task",
    "initial_prompt",
    "hotwords",
    "temperature",
    "beam_size",
    "vad_filter",
    "diarize",
    "min_speakers",
    "max_speakers",
)
"""Every option a submission may carry, as multipart fields or JSON members."""


class RequestOptions(BaseModel):
    """Options as a client sends them; becomes the event's `TranscriptionOptions`.

    The bounds are the contract's (`contracts.audio.TranscriptionOptions`), checked here so
    that a value out of them is a 422 naming the field, never an event a worker refuses.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    language: str | None = Field(
        default=None,
        description="ISO 639 code of the spoken language (e.g. `en`); omit to detect it. "
        "English-only models (`*.en`) take `en` only (422 `unsupported_option`).",
        examples=["de"],
    )
    model: str | None = Field(
        default=None,
        description="Speech model: one of `GET /v1/models` (e.g. `base`); omit for the "
        "default (the first served). A model no pool serves is 422 `model_unavailable`.",
        examples=["base"],
    )
    word_timestamps: bool = Field(
        default=False,
        description="Include words with start/end times and probability.",
        examples=[True],
    )
    task: Literal["transcribe", "translate"] | None = Field(
        default=None,
        description="`translate`: English text from speech in any language (multilingual "
        "models only: 422 `unsupported_option` on `*.en`); omit for `transcribe`.",
        examples=["translate"],
    )
    initial_prompt: str | None = Field(
        default=None,
        max_length=MAX_INITIAL_PROMPT_CHARS,
        description="Text the model reads as if it preceded the audio: spellings of names "
        f"and terms, style. At most {MAX_INITIAL_PROMPT_CHARS} characters.",
        examples=["Siobhan Quaglieri, Zyntherix, Kubernetes."],
    )
    hotwords: str | None = Field(
        default=None,
        max_length=MAX_HOTWORDS_CHARS,
        description=f"Words or phrases to favour, e.g. proper nouns. At most "
        f"{MAX_HOTWORDS_CHARS} characters.",
        examples=["Zyntherix Quaglieri"],
    )
    temperature: float | None = Field(
        default=None,
        ge=0,
        le=1,
        description="Sampling temperature, 0 to 1; omit (or 0) to decode deterministically "
        "with Whisper's fallback to hotter decoding where the text loops or is unsure.",
        examples=[0.0],
    )
    beam_size: int | None = Field(
        default=None,
        ge=1,
        le=10,
        description="Beam search width, 1 to 10; omit for the worker's (5).",
        examples=[5],
    )
    vad_filter: bool | None = Field(
        default=None,
        description="Skip non-speech with voice activity detection first; omit for the "
        "worker's setting.",
        examples=[True],
    )
    diarize: Diarize = Field(
        default=False,
        description=(
            "Label segments and words with who spoke (`SPEAKER_00`…): `true` by voice, "
            '`"channels"` one speaker per channel of a stereo recording (call centres).'
        ),
        examples=[True, "channels"],
    )
    min_speakers: SpeakerCount | None = Field(
        default=None,
        description=f"With `diarize`: at least this many speakers (1-{MAX_SPEAKERS}).",
        examples=[2],
    )
    max_speakers: SpeakerCount | None = Field(
        default=None,
        description=f"With `diarize`: at most this many speakers (1-{MAX_SPEAKERS}).",
        examples=[4],
    )

    @model_validator(mode="after")
    def _speaker_bounds_ordered(self) -> Self:
        low, high = self.min_speakers, self.max_speakers
        if low is not None and high is not None and low > high:
            raise ValueError(f"min_speakers ({low}) is above max_speakers ({high})")
        return self

    @field_validator("language")
    @classmethod
    def _known_language(cls, value: str | None) -> str | None:
        if value is None:
            return None
        code = value.strip().lower()
        if code not in WHISPER_LANGUAGES:
            raise ValueError(f"{value!r} is not a supported ISO 639 language code")
        return code

    @field_validator("initial_prompt", "hotwords")
    @classmethod
    def _no_nul(cls, value: str | None) -> str | None:
        if value is not None and "\x00" in value:
            raise ValueError("must not contain NUL characters")
        return value or None

    def to_contract(self) -> TranscriptionOptions:
        """The options as the event carries them."""
        return TranscriptionOptions(**self.model_dump())

    def speaker_options(self) -> dict[str, Any]:
        """The diarization options, as `TranscriptionOptions` takes them."""
        return {
            "diarize": self.diarize,
            "min_speakers": self.min_speakers,
            "max_speakers": self.max_speakers,
        }


class InvalidOptionsError(Exception):
    """Options were refused; `code` says why (stable), `details` name each field."""

    def __init__(
        self,
        details: list[dict[str, Any]],
        *,
        code: str = VALIDATION_ERROR,
        message: str = "invalid options",
    ) -> None:
        super().__init__(message)
        self.details = details
        self.code = code
        self.message = message


def validation_details(
    exc: ValidationError, prefix: tuple[str, ...] = ("body",)
) -> list[dict[str, Any]]:
    """Pydantic errors as `{loc, msg, type}` the API returns."""
    return [
        {"loc": [*prefix, *(str(p) for p in err["loc"])], "msg": err["msg"], "type": err["type"]}
        for err in exc.errors()
    ]


def english_only(model: str) -> bool:
    """Whisper's `.en` models transcribe English and cannot translate."""
    return model.endswith(".en")


def check_served(
    options: RequestOptions, served_models: tuple[str, ...], prefix: tuple[str, ...] = ("body",)
) -> None:
    """Refuse what no pool can honour: a model none serves (`model_unavailable`), or a
    task or language the job's model cannot do (`unsupported_option`). No model means the
    default, the first served; nothing is ever quietly served by another model."""
    model = options.model or served_models[0]
    if model not in served_models:
        message = f"no worker serves model {model!r}; use one of: {', '.join(served_models)}"
        raise InvalidOptionsError(
            [{"loc": [*prefix, "model"], "msg": message, "type": MODEL_UNAVAILABLE}],
            code=MODEL_UNAVAILABLE,
            message=message,
        )
    if not english_only(model):
        return
    multilingual = [m for m in served_models if not english_only(m)]
    offer = f"ask for one of: {', '.join(multilingual)}" if multilingual else "none is served"
    if options.task == "translate":
        field, message = "task", f"model {model!r} is English-only and cannot translate; {offer}"
    elif options.language not in (None, "en"):
        field = "language"
        message = (
            f"model {model!r} is English-only; language {options.language!r} needs a "
            f"multilingual model: {offer}"
        )
    else:
        return
    raise InvalidOptionsError(
        [{"loc": [*prefix, field], "msg": message, "type": UNSUPPORTED_OPTION}],
        code=UNSUPPORTED_OPTION,
        message=message,
    )


def parse_options(
    raw: dict[str, Any], served_models: tuple[str, ...], prefix: tuple[str, ...] = ("body",)
) -> RequestOptions:
    """Validate options; raise `InvalidOptionsError` naming every bad field."""
    try:
        options = RequestOptions.model_validate(raw)
    except ValidationError as exc:
        raise InvalidOptionsError(validation_details(exc, prefix)) from None
    check_served(options, served_models, prefix)
    return options
