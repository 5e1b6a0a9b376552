"""What the OpenAPI document (`/docs`) shows beyond the models: examples and error catalogues.

Kept apart from the routes so a route reads as what it does; each route names the piece
it is documented by (`SUBMIT_RESPONSES`, `READ_ERRORS`, ...).
"""

from __future__ import annotations

from typing import Any, Final

from contracts.errors import ErrorCode
from ingest.errors import ErrorBody
from ingest.failures import (
    BROKER_UNAVAILABLE,
    IDEMPOTENCY_KEY_REUSED,
    INVALID_AUDIO_URL,
    MALFORMED_REQUEST,
    TOO_MANY_UPLOADS,
    UNSUPPORTED_CONTENT_TYPE,
)
from ingest.multipart import FILE_FIELD
from ingest.options import RequestOptions

# --- POST /v1/transcriptions

SUBMIT_DESCRIPTION: Final = (
    "Send the audio as multipart `file` (streamed, hashed and size-checked on the way, "
    'then decoded to check it is audio), or JSON `{"audio_url": "https://..."}`. '
    "Options, as form fields or JSON members (each described below, with its bounds): "
    "`language`, `model`, `word_timestamps`, `task`, `initial_prompt`, `hotwords`, "
    "`temperature`, `beam_size`, `vad_filter`, `diarize` (`true`, `false` or `channels`) with "
    "`min_speakers` / `max_speakers` (1-20). A model no pool serves is `422 "
    "model_unavailable` (`GET /v1/models` lists the served ones); a task or language the "
    "model cannot do (`translate`, or `de`, on an English-only `*.en` model) is `422 "
    "unsupported_option`; a value out of bounds is `422 validation_error` naming the field. "
    "`202` means the broker confirmed the job's `audio.uploaded.v1` event. "
    "With `Idempotency-Key`, a repeated request returns the same job id and never "
    "creates a second job; the same key with different audio or options is a `409`."
)


def _error(code: str, message: str) -> dict[str, Any]:
    return {"value": {"code": code, "message": message}}


def _responses(examples: dict[int, dict[str, dict[str, Any]]]) -> dict[int | str, Any]:
    return {
        status: {"model": ErrorBody, "content": {"application/json": {"examples": named}}}
        for status, named in examples.items()
    }


_SUBMIT_ERRORS: Final = _responses(
    {
        400: {"malformed": _error(MALFORMED_REQUEST, "the body is not valid JSON")},
        401: {"no_key": _error("unauthenticated", "the API key is not valid")},
        408: {
            "too_slow": _error(
                "upload_too_slow",
                "the body arrives at 12 bytes/s, under the minimum of 1024 bytes/s",
            )
        },
        409: {
            "key_reused": _error(
                IDEMPOTENCY_KEY_REUSED,
                "this Idempotency-Key was already used with different audio or options",
            )
        },
        413: {
            "too_large": _error(
                ErrorCode.FILE_TOO_LARGE, "the file is larger than the limit of 2147483648 bytes"
            ),
            "too_long": _error(
                ErrorCode.AUDIO_TOO_LONG, "the audio is longer than the limit of 36000 seconds"
            ),
        },
        415: {
            "not_audio": _error(ErrorCode.UNSUPPORTED_MEDIA, "the file has no audio stream"),
            "truncated": _error(
                ErrorCode.UNSUPPORTED_MEDIA,
                "the file is truncated: its header declares 5.00 s of audio, only 1.87 s are there",
            ),
            "content_type": _error(
                UNSUPPORTED_CONTENT_TYPE, "send multipart/form-data or application/json"
            ),
        },
        422: {
            "bad_option": {
                "value": {
                    "code": "validation_error",
                    "message": "invalid request: language",
                    "details": [
                        {
                            "loc": ["body", "language"],
                            "msg": "Value error, 'xx' is not a supported ISO 639 language code",
                            "type": "value_error",
                        }
                    ],
                }
            },
            "no_file": _error("validation_error", "invalid request: file"),
            "unserved_model": _error(
                "model_unavailable", "no worker serves model 'large-v3'; use one of: tiny.en, base"
            ),
            "english_only": _error(
                "unsupported_option",
                "model 'tiny.en' is English-only and cannot translate; ask for one of: base",
            ),
            "out_of_bounds": _error("validation_error", "invalid request: beam_size"),
            "forbidden_url": _error(
                INVALID_AUDIO_URL,
                "audio_url is not allowed: host 'localhost' resolves to a non-public address",
            ),
        },
        429: {
            "busy": _error(
                TOO_MANY_UPLOADS,
                "this tenant already has 8 submissions in progress (limit 8); retry after 5 s",
            )
        },
        503: {
            "broker": _error(
                BROKER_UNAVAILABLE,
                "the job could not be queued (message broker unavailable); "
                "nothing was kept, retry later",
            )
        },
        507: {
            "disk_full": _error(
                "insufficient_storage", "the server has no room to store the upload; retry later"
            )
        },
    }
)


def _option_properties() -> dict[str, Any]:
    """Every option's schema, description, bounds and example, from `RequestOptions` itself
    (so the document cannot drift from what is enforced); `X | None` shown as `X`."""
    properties: dict[str, Any] = {}
    for name, schema in RequestOptions.model_json_schema()["properties"].items():
        flat = dict(schema)
        variants = [v for v in flat.pop("anyOf", []) if v.get("type") != "null"]
        if len(variants) == 1:
            flat.update(variants[0])
        flat.pop("title", None)
        if flat.get("default") is None:
            flat.pop("default", None)
        properties[name] = flat
    return properties


_OPTION_PROPERTIES: Final[dict[str, Any]] = _option_properties()

SUBMIT_BODY: Final[dict[str, Any]] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": [FILE_FIELD],
                    "properties": {
                        FILE_FIELD: {
                            "type": "string",
                            "format": "binary",
                            "description": "The audio (any container FFmpeg decodes). Streamed "
                            "to the media store; its bytes, not its name, decide what it is.",
                        },
                        **_OPTION_PROPERTIES,
                    },
                },
                "encoding": {FILE_FIELD: {"contentType": "audio/*, video/*"}},
            },
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["audio_url"],
                    "additionalProperties": False,
                    "properties": {
                        "audio_url": {"type": "string", "format": "uri"},
                        **_OPTION_PROPERTIES,
                    },
                },
                "examples": {
                    "url": {
                        "value": {
                            "audio_url": "https://example.com/podcasts/episode-12.mp3",
                            "language": "en",
                            "word_timestamps": True,
                        }
                    },
                    "diarized": {
                        "summary": "Who spoke when, two to four speakers",
                        "value": {
                            "audio_url": "https://example.com/meetings/standup.m4a",
                            "diarize": True,
                            "min_speakers": 2,
                            "max_speakers": 4,
                        },
                    },
                    "call": {
                        "summary": "A stereo call: one speaker per channel",
                        "value": {
                            "audio_url": "https://example.com/calls/0042.wav",
                            "diarize": "channels",
                        },
                    },
                    "every_option": {
                        "value": {
                            "audio_url": "https://example.com/interviews/berlin.mp3",
                            "model": "base",
                            "language": "de",
                            "task": "translate",
                            "initial_prompt": "Siobhan Quaglieri, Zyntherix.",
                            "hotwords": "Zyntherix",
                            "temperature": 0.0,
                            "beam_size": 5,
                            "vad_filter": True,
                            "word_timestamps": True,
                        }
                    },
                },
            },
        },
    }
}


SUBMIT_RESPONSES: Final[dict[int | str, Any]] = {
    202: {
        "description": "Queued.",
        "headers": {"Location": {"description": "The job's URL.", "schema": {"type": "string"}}},
        "content": {
            "application/json": {
                "example": {
                    "id": "4b0c7a3e-2a53-4c4f-9a0e-9e8b2f1c5d11",
                    "status": "queued",
                    "links": {
                        "self": "/v1/transcriptions/4b0c7a3e-2a53-4c4f-9a0e-9e8b2f1c5d11",
                        "transcript": "/v1/transcriptions/"
                        "4b0c7a3e-2a53-4c4f-9a0e-9e8b2f1c5d11/transcript.json",
                    },
                }
            }
        },
    },
    **_SUBMIT_ERRORS,
}

# --- GET /readyz

READY_EXAMPLE: Final[dict[str, Any]] = {
    "status": "ready",
    "checks": {"broker": {"ok": True}, "media_root": {"ok": True}},
}
NOT_READY_EXAMPLE: Final[dict[str, Any]] = {
    "status": "not_ready",
    "code": "not_ready",
    "message": "broker: not connected",
    "checks": {
        "broker": {"ok": False, "message": "not connected"},
        "media_root": {"ok": True},
    },
}

# --- the read endpoints

READ_ERRORS: Final[dict[int | str, dict[str, Any]]] = {
    401: {"model": ErrorBody, "description": "`unauthenticated`: no valid API key."},
    404: {
        "model": ErrorBody,
        "description": "`not_found`: no such job for this tenant (a deleted job too: it "
        "answers exactly like one never submitted).",
    },
    422: {
        "model": ErrorBody,
        "description": "`validation_error` / `invalid_cursor` (forged, edited, expired or "
        "signed with another secret) / `invalid_query_value`.",
    },
    503: {"model": ErrorBody, "description": "`database_unavailable`: retry shortly."},
}
EXPORT_RESPONSES: Final[dict[int | str, dict[str, Any]]] = {
    **READ_ERRORS,
    200: {
        "description": "The transcript as JSON, plain text, TSV, SRT or WebVTT.",
        "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/TranscriptOut"}},
            "text/plain": {},
            "text/tab-separated-values": {},
            "application/x-subrip": {},
            "text/vtt": {},
        },
    },
}
