"""Transcription options a caller may ask for, validated before any job exists."""

from __future__ import annotations

from typing import Any, Final, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from contracts.audio import MAX_SPEAKERS, Diarize, SpeakerCount, TranscriptionOptions

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
    "diarize",
    "min_speakers",
    "max_speakers",
)


class RequestOptions(BaseModel):
    """Options as a client sends them; becomes the event's `TranscriptionOptions`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    language: str | None = Field(
        default=None,
        description="ISO 639 code of the spoken language (e.g. `en`); omit to detect it.",
        examples=["en"],
    )
    model: str | None = Field(
        default=None,
        description="Speech model name (one of the configured names, e.g. `tiny.en`); "
        "omit for the worker's default.",
        examples=["tiny.en"],
    )
    word_timestamps: bool = Field(
        default=False, description="Include words with start/end times and probability."
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
        default=None, description=f"With `diarize`: at least this many speakers (1-{MAX_SPEAKERS})."
    )
    max_speakers: SpeakerCount | None = Field(
        default=None, description=f"With `diarize`: at most this many speakers (1-{MAX_SPEAKERS})."
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

    def to_contract(self) -> TranscriptionOptions:
        """The options as the event carries them."""
        return TranscriptionOptions(
            language=self.language,
            model=self.model,
            word_timestamps=self.word_timestamps,
            **self.speaker_options(),
        )

    def speaker_options(self) -> dict[str, Any]:
        """The diarization options, as `TranscriptionOptions` takes them."""
        return {
            "diarize": self.diarize,
            "min_speakers": self.min_speakers,
            "max_speakers": self.max_speakers,
        }


class InvalidOptionsError(Exception):
    """Options failed validation; `details` name each field."""

    def __init__(self, details: list[dict[str, Any]]) -> None:
        super().__init__("invalid options")
        self.details = details


def validation_details(
    exc: ValidationError, prefix: tuple[str, ...] = ("body",)
) -> list[dict[str, Any]]:
    """Pydantic errors as `{loc, msg, type}` the API returns."""
    return [
        {"loc": [*prefix, *(str(p) for p in err["loc"])], "msg": err["msg"], "type": err["type"]}
        for err in exc.errors()
    ]


def parse_options(
    raw: dict[str, Any], allowed_models: tuple[str, ...], prefix: tuple[str, ...] = ("body",)
) -> RequestOptions:
    """Validate options; raise `InvalidOptionsError` naming every bad field."""
    try:
        options = RequestOptions.model_validate(raw)
    except ValidationError as exc:
        raise InvalidOptionsError(validation_details(exc, prefix)) from None
    if options.model is not None and options.model not in allowed_models:
        raise InvalidOptionsError(
            [
                {
                    "loc": [*prefix, "model"],
                    "msg": f"unknown model; use one of: {', '.join(allowed_models)}",
                    "type": "enum",
                }
            ]
        )
    return options
