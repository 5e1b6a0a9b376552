"""OpenAI's audio API over Scribe: `POST /v1/audio/transcriptions`, `/translations`, `/v1/models`.

Synchronous to the caller, asynchronous inside. The upload goes through the very
`UploadService` that `POST /v1/transcriptions` uses, so the request becomes an ordinary
job: stored by content, published with confirms, seen by every downstream consumer,
listed and searchable. The answer then waits for the job's outcome, up to
`SCRIBE_INGEST_OPENAI_WAIT_SECONDS`, and past it says `transcription_pending` (504) with
the job id to poll; the job goes on.

How the wait learns the outcome: it polls the read port (`JobReader.transcript`), with a
pause that starts at 50 ms and grows by half up to `openai_poll_max_interval_seconds`.
Chosen over an exclusive queue per replica bound to `transcript.completed.v1` /
`transcription.failed.v1` because of what each costs. A poll is one primary-key read in a
read-only transaction (about 20 reads for a 10 s clip), paid only while someone waits. The
queue would make every replica receive and decode every terminal event of the whole fleet,
every tenant's, whole transcripts and words included, whether anybody waits or not; and
the event reaches ingest before the indexer has committed it, so the answer would still
have to read PostgreSQL for the job to be visible in `GET /v1/transcriptions` and search
the moment the caller has its text. Polling answers only once it is.

Errors on these routes take OpenAI's shape, `{"error": {message, type, param, code}}`
(`ingest.errors.openai_error_response`), with Scribe's stable codes.
"""

from __future__ import annotations

import asyncio
import time
import uuid
import zlib
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from contextlib import contextmanager
from typing import Annotated, Any, Final, Literal

import structlog
from fastapi import APIRouter, Header, Request
from fastapi.responses import JSONResponse, PlainTextResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel, Field, ValidationError
from starlette.responses import Response

from ingest import exports, metrics
from ingest.deps import Queries, Settings, Slots, Tenant, Uploads, Waits
from ingest.errors import OpenAIErrorBody, openai_error_response
from ingest.failures import (
    DATABASE_UNAVAILABLE,
    MODEL_UNAVAILABLE,
    UNKNOWN_PARAMETER,
    UNSUPPORTED_CONTENT_TYPE,
    UNSUPPORTED_OPTION,
    IngestError,
    InvalidInputError,
    JobFailedError,
    JobPendingError,
    ModelNotFoundError,
    TooManyUploadsError,
    UnavailableError,
    UnsupportedMediaError,
    file_too_large,
    invalid_fields,
)
from ingest.idempotency import MAX_KEY_LENGTH
from ingest.limits import UploadSlots
from ingest.multipart import FILE_FIELD, MultipartForm, read_multipart
from ingest.options import (
    InvalidOptionsError,
    RequestOptions,
    check_served,
    validation_details,
)
from ingest.queries import JobReader, is_large, off_loop
from ingest.read_models import TranscriptOut
from ingest.settings import IngestSettings
from ingest.submissions import MULTIPART_OVERHEAD_BYTES
from ingest.uploads import Accepted, Submission, UploadService

log = structlog.get_logger(__name__)

ResponseFormat = Literal["json", "text", "srt", "verbose_json", "vtt"]
Task = Literal["transcribe", "translate"]

RESPONSE_FORMATS: Final = ("json", "text", "srt", "verbose_json", "vtt")
GRANULARITIES_FIELD: Final = "timestamp_granularities[]"
GRANULARITIES: Final = ("word", "segment")
FIRST_POLL_SECONDS: Final = 0.05
POLL_GROWTH: Final = 1.5

_FIELDS: Final[dict[Task, frozenset[str]]] = {
    "transcribe": frozenset(
        {"model", "language", "prompt", "response_format", "temperature", GRANULARITIES_FIELD}
    ),
    # OpenAI's translations take no language (the output is English) nor granularities.
    "translate": frozenset({"model", "prompt", "response_format", "temperature"}),
}

LANGUAGE_NAMES: Final = {
    "en": "english", "zh": "chinese", "de": "german", "es": "spanish", "ru": "russian",
    "ko": "korean", "fr": "french", "ja": "japanese", "pt": "portuguese", "tr": "turkish",
    "pl": "polish", "ca": "catalan", "nl": "dutch", "ar": "arabic", "sv": "swedish",
    "it": "italian", "id": "indonesian", "hi": "hindi", "fi": "finnish", "vi": "vietnamese",
    "he": "hebrew", "uk": "ukrainian", "el": "greek", "ms": "malay", "cs": "czech",
    "ro": "romanian", "da": "danish", "hu": "hungarian", "ta": "tamil", "no": "norwegian",
    "th": "thai", "ur": "urdu", "hr": "croatian", "bg": "bulgarian", "lt": "lithuanian",
    "la": "latin", "mi": "maori", "ml": "malayalam", "cy": "welsh", "sk": "slovak",
    "te": "telugu", "fa": "persian", "lv": "latvian", "bn": "bengali", "sr": "serbian",
    "az": "azerbaijani", "sl": "slovenian", "kn": "kannada", "et": "estonian",
    "mk": "macedonian", "br": "breton", "eu": "basque", "is": "icelandic", "hy": "armenian",
    "ne": "nepali", "mn": "mongolian", "bs": "bosnian", "kk": "kazakh", "sq": "albanian",
    "sw": "swahili", "gl": "galician", "mr": "marathi", "pa": "punjabi", "si": "sinhala",
    "km": "khmer", "sn": "shona", "yo": "yoruba", "so": "somali", "af": "afrikaans",
    "oc": "occitan", "ka": "georgian", "be": "belarusian", "tg": "tajik", "sd": "sindhi",
    "gu": "gujarati", "am": "amharic", "yi": "yiddish", "lo": "lao", "uz": "uzbek",
    "fo": "faroese", "ht": "haitian creole", "ps": "pashto", "tk": "turkmen", "nn": "nynorsk",
    "mt": "maltese", "sa": "sanskrit", "lb": "luxembourgish", "my": "myanmar", "bo": "tibetan",
    "tl": "tagalog", "mg": "malagasy", "as": "assamese", "tt": "tatar", "haw": "hawaiian",
    "ln": "lingala", "ha": "hausa", "ba": "bashkir", "jw": "javanese", "su": "sundanese",
    "yue": "cantonese",
}  # fmt: skip
"""Whisper's language names: OpenAI's `verbose_json` names the language, not its code."""


class OpenAIRoute(APIRoute):
    """A route whose every failure, authentication and validation included, is OpenAI-shaped.

    The app-wide handlers (`ingest.errors.install_error_handlers`) answer Scribe's shape;
    wrapping the handler catches what the dependencies raise before those handlers see it.
    """

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def openai_handler(request: Request) -> Response:
            try:
                return await handler(request)
            except Exception as exc:
                return openai_error_response(request, exc)

        return openai_handler


router = APIRouter(tags=["OpenAI-compatible"], route_class=OpenAIRoute)


# --- answers


class OpenAITranscription(BaseModel):
    """`response_format=json`: the text alone."""

    text: str = Field(examples=["And so my fellow Americans, ask not what your country can do."])


class OpenAIWord(BaseModel):
    """A word and when it was said, in seconds."""

    word: str = Field(examples=["Americans"])
    start: float = Field(examples=[2.1])
    end: float = Field(examples=[2.9])


class OpenAISegment(BaseModel):
    """A segment as Whisper's `verbose_json` has it (Scribe keeps no token ids: `tokens` is [])."""

    id: int
    seek: int = Field(description="Where the segment starts, in 10 ms frames.")
    start: float
    end: float
    text: str
    tokens: list[int] = Field(default_factory=list)
    temperature: float
    avg_logprob: float | None = None
    compression_ratio: float
    no_speech_prob: float | None = None


class OpenAIVerboseTranscription(BaseModel):
    """`response_format=verbose_json`: language, duration, segments and (if asked) words."""

    task: Task
    language: str = Field(examples=["english"], description="The language's English name.")
    duration: float = Field(examples=[11.02])
    text: str
    segments: list[OpenAISegment] | None = None
    words: list[OpenAIWord] | None = Field(
        default=None, description="Present with `timestamp_granularities[]=word`."
    )


class OpenAIModel(BaseModel):
    """A model this deployment serves."""

    id: str = Field(examples=["tiny.en"])
    object: Literal["model"] = "model"
    created: int = Field(default=0, description="Unknown here: always 0.")
    owned_by: str = "scribe"


class OpenAIModelList(BaseModel):
    """Every model name the OpenAI-compatible routes accept."""

    object: Literal["list"] = "list"
    data: list[OpenAIModel]


# --- the request


class OpenAIOptions(RequestOptions):
    """The job's options as OpenAI's form gives them (the native ones, fewer of them)."""


class OpenAIRequest(BaseModel):
    """What the form asked for: the job's options, and the answer's shape."""

    options: OpenAIOptions
    response_format: ResponseFormat
    granularities: frozenset[str]


def _refused(code: str, field: str, message: str) -> InvalidInputError:
    return InvalidInputError(
        code, message, details=[{"loc": ["body", field], "msg": message, "type": code}]
    )


def resolve_model(name: str | None, settings: IngestSettings) -> str:
    """The served model `name` means: an alias (or nothing) means the default."""
    default = settings.served_models[0]
    if name is None or name in settings.openai_model_aliases:
        return default
    if name in settings.served_models:
        return name
    served = ", ".join((*settings.served_models, *settings.openai_model_aliases))
    raise _refused(
        MODEL_UNAVAILABLE, "model", f"no worker serves model {name!r}; use one of: {served}"
    )


def parse_request(form: MultipartForm, task: Task, settings: IngestSettings) -> OpenAIRequest:
    """Validate the form's fields; each refusal names its parameter."""
    allowed = _FIELDS[task]
    for name in sorted({*form.fields, *form.lists} - allowed):
        raise _refused(UNKNOWN_PARAMETER, name, f"unknown parameter {name!r} for this route")
    fields = form.fields
    model = resolve_model(fields.get("model"), settings)
    granularities = form.lists.get(GRANULARITIES_FIELD, [])
    response_format = fields.get("response_format", "json")
    for value in granularities:
        if value not in GRANULARITIES:
            raise _refused(
                UNSUPPORTED_OPTION,
                GRANULARITIES_FIELD,
                f"{value!r} is not a timestamp granularity; use word or segment",
            )
    if granularities and response_format != "verbose_json":
        raise _refused(
            UNSUPPORTED_OPTION,
            GRANULARITIES_FIELD,
            "timestamp_granularities[] needs response_format=verbose_json",
        )
    raw: dict[str, Any] = {
        "options": {
            "language": fields.get("language"),
            "model": model,
            "word_timestamps": "word" in granularities,
            "task": "translate" if task == "translate" else None,
            "initial_prompt": fields.get("prompt") or None,
            "temperature": fields.get("temperature"),
        },
        "response_format": response_format,
        "granularities": granularities,
    }
    try:
        parsed = OpenAIRequest.model_validate(raw)
    except ValidationError as exc:
        # `options.language` is the client's `language`: name the field it sent.
        details = validation_details(exc)
        for detail in details:
            loc = detail["loc"]
            if loc[1:2] == ["options"]:
                detail["loc"] = ["body", "prompt" if loc[2] == "initial_prompt" else loc[2]]
        raise invalid_fields(details) from None
    # The same refusals as the native route: what no pool serves, or its model cannot do.
    try:
        check_served(parsed.options, settings.served_models)
    except InvalidOptionsError as exc:
        field = "model" if exc.code == MODEL_UNAVAILABLE or task == "translate" else "language"
        raise _refused(exc.code, field, exc.message) from None
    return parsed


# --- the wait


async def wait_for_outcome(
    queries: JobReader,
    tenant: str,
    job_id: uuid.UUID,
    *,
    within: float,
    max_interval: float,
    gone: Callable[[], Awaitable[bool]],
) -> TranscriptOut:
    """The job's transcript once completed; `JobFailedError`, or `JobPendingError` at the end."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    pause = FIRST_POLL_SECONDS
    while True:
        try:
            found = await queries.transcript(tenant, job_id)
        except UnavailableError:
            # The job goes on while PostgreSQL is away; keep asking until the deadline.
            log.warning("openai_wait_read_failed", job_id=str(job_id), code=DATABASE_UNAVAILABLE)
            found = None
        if found is not None and found.transcript is not None:
            return found.transcript
        if found is not None and found.status == "failed":
            job = await queries.job(tenant, job_id)
            error = job.error if job is not None else None
            raise JobFailedError(
                job_id,
                error.code if error else "internal_error",
                error.message if error else "the job failed",
                retryable=bool(error and error.retryable),
            )
        remaining = deadline - loop.time()
        if remaining <= 0 or await gone():
            raise JobPendingError(job_id, within)
        await asyncio.sleep(min(pause, remaining))
        pause = min(pause * POLL_GROWTH, max_interval)


# --- rendering


def _compression_ratio(text: str) -> float:
    # What Whisper reports: how much zlib shrinks the text (repetitive output scores high).
    data = text.encode()
    return round(len(data) / len(zlib.compress(data)), 4) if data else 0.0


def verbose(
    transcript: TranscriptOut, request: OpenAIRequest, task: Task
) -> OpenAIVerboseTranscription:
    """The transcript as OpenAI's `verbose_json`."""
    granularities = request.granularities
    temperature = request.options.temperature or 0.0
    segments = None
    if not granularities or "segment" in granularities:
        segments = [
            OpenAISegment(
                id=s.id,
                seek=round(s.start * 100),
                start=s.start,
                end=s.end,
                text=s.text,
                temperature=temperature,
                avg_logprob=s.avg_logprob,
                compression_ratio=_compression_ratio(s.text),
                no_speech_prob=s.no_speech_prob,
            )
            for s in transcript.segments
        ]
    words = None
    if "word" in granularities:
        words = [
            OpenAIWord(word=w.word.strip(), start=w.start, end=w.end)
            for s in transcript.segments
            for w in s.words or ()
        ]
    return OpenAIVerboseTranscription(
        task=task,
        language=LANGUAGE_NAMES.get(transcript.language, transcript.language),
        duration=transcript.duration_seconds,
        text=transcript.text.strip(),
        segments=segments,
        words=words,
    )


def render(transcript: TranscriptOut, request: OpenAIRequest, task: Task) -> Response:
    """The answer in the asked `response_format` (text formats as `text/plain`, like OpenAI)."""
    fmt = request.response_format
    if fmt == "json":
        return JSONResponse(OpenAITranscription(text=transcript.text.strip()).model_dump())
    if fmt == "verbose_json":
        body = verbose(transcript, request, task)
        return JSONResponse(body.model_dump(mode="json", exclude_none=True))
    if fmt == "text":
        return PlainTextResponse(transcript.text.strip() + "\n")
    timed = exports.timed_segments(transcript.segments)
    return PlainTextResponse(exports.to_srt(timed) if fmt == "srt" else exports.to_vtt(timed))


@contextmanager
def _waiting(waits: UploadSlots, tenant: str) -> Iterator[None]:
    """One of the tenant's wait slots for the block; a refusal is counted as rejected."""
    refused = True
    try:
        with waits.hold(tenant):
            refused = False
            yield
    except TooManyUploadsError as exc:
        if refused:  # not one raised by the block (its upload slots count their own)
            metrics.SUBMISSIONS_REJECTED.labels(exc.code).inc()
        raise


# --- routes


def _form_body(task: Task) -> dict[str, Any]:
    properties: dict[str, Any] = {
        FILE_FIELD: {"type": "string", "format": "binary", "description": "The audio."},
        "model": {
            "type": "string",
            "default": "whisper-1",
            "description": "A name from `GET /v1/models`; `whisper-1` means the default model.",
        },
        "prompt": {
            "type": "string",
            "maxLength": 1024,
            "description": "Text to prime the model with: names, spellings, style.",
        },
        "response_format": {"type": "string", "enum": list(RESPONSE_FORMATS), "default": "json"},
        "temperature": {"type": "number", "minimum": 0, "maximum": 1},
    }
    if task == "transcribe":
        properties["language"] = {"type": "string", "description": "ISO 639 code, e.g. `en`."}
        properties[GRANULARITIES_FIELD] = {
            "type": "array",
            "items": {"type": "string", "enum": list(GRANULARITIES)},
            "description": "`word` adds words with times (needs `verbose_json`).",
        }
    return {
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {
                    "schema": {"type": "object", "required": [FILE_FIELD], "properties": properties}
                }
            },
        }
    }


def _errors(*statuses: int) -> dict[int | str, Any]:
    return {status: {"model": OpenAIErrorBody} for status in statuses}


_AUDIO_RESPONSES: Final[dict[int | str, Any]] = {
    200: {
        "description": "The transcript: JSON for `json` / `verbose_json`, text otherwise.",
        "content": {
            "application/json": {
                "schema": {
                    "anyOf": [
                        {"$ref": "#/components/schemas/OpenAITranscription"},
                        {"$ref": "#/components/schemas/OpenAIVerboseTranscription"},
                    ]
                }
            },
            "text/plain": {"schema": {"type": "string"}},
        },
    },
    **_errors(400, 401, 409, 413, 429, 500, 502, 503),
    504: {
        "model": OpenAIErrorBody,
        "description": "`transcription_pending`: not finished in time; poll `error.job_id`.",
        "headers": {
            "Location": {"description": "The job's URL.", "schema": {"type": "string"}},
            "x-should-retry": {"description": "`false`.", "schema": {"type": "string"}},
        },
    },
}

_DESCRIPTION: Final = (
    "OpenAI's audio API: point the `openai` client's `base_url` at `<scribe>/v1` and use "
    "a Scribe API key as `api_key`. The request becomes an ordinary Scribe job (listed, "
    "searchable, announced by events) and the answer waits for it; past "
    "`SCRIBE_INGEST_OPENAI_WAIT_SECONDS` it is `504 transcription_pending` with "
    "`error.job_id` to poll. Errors are OpenAI-shaped with Scribe's stable codes."
)


async def _transcribe(
    request: Request,
    task: Task,
    *,
    waits: UploadSlots,
    tenant: str,
    uploads: UploadService,
    slots: UploadSlots,
    queries: JobReader,
    settings: IngestSettings,
    idempotency_key: str | None,
    correlation_id: uuid.UUID | None,
) -> Response:
    """The request, holding one of the tenant's wait slots from before its upload to its
    answer: each holds a connection for as long as its job takes, so a tenant gets at
    most `openai_max_waiting_per_tenant` of the server's connections this way, and a
    refusal (429 `too_many_waiting`) comes before any byte of the upload is read."""
    with _waiting(waits, tenant):
        media_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
        correlation = correlation_id or uuid.uuid4()
        structlog.contextvars.bind_contextvars(correlation_id=str(correlation))
        started = time.perf_counter()
        try:
            if media_type != "multipart/form-data":
                raise UnsupportedMediaError(
                    UNSUPPORTED_CONTENT_TYPE, "send multipart/form-data with the audio as `file`"
                )
            # The slot covers the upload only: waiting costs a poll now and then, not a slot.
            with slots.hold(tenant):
                accepted, parsed = await _accept(
                    request, task, uploads, settings, tenant, idempotency_key, correlation
                )
        except IngestError as exc:
            metrics.SUBMISSIONS_REJECTED.labels(exc.code).inc()
            elapsed = time.perf_counter() - started
            metrics.UPLOAD_SECONDS.labels("upload", "rejected").observe(elapsed)
            raise
        metrics.JOBS_ACCEPTED.labels("upload", "true" if accepted.replayed else "false").inc()
        metrics.UPLOAD_SECONDS.labels("upload", "accepted").observe(time.perf_counter() - started)
        transcript = await wait_for_outcome(
            queries,
            tenant,
            accepted.job_id,
            within=settings.openai_wait_seconds,
            max_interval=settings.openai_poll_max_interval_seconds,
            gone=request.is_disconnected,
        )
        log.info(
            "openai_transcription_answered",
            job_id=str(accepted.job_id),
            response_format=parsed.response_format,
            task=task,
            waited_ms=round((time.perf_counter() - started) * 1000, 1),
        )
        response = await off_loop(is_large(transcript.segments), render, transcript, parsed, task)
        response.headers["X-Scribe-Job-ID"] = str(accepted.job_id)
        response.headers["X-Correlation-ID"] = str(correlation)
        return response


async def _accept(
    request: Request,
    task: Task,
    uploads: UploadService,
    settings: IngestSettings,
    tenant: str,
    key: str | None,
    correlation: uuid.UUID,
) -> tuple[Accepted, OpenAIRequest]:
    declared = request.headers.get("content-length")
    if (
        declared is not None
        and declared.isdigit()
        and int(declared) > uploads.max_upload_bytes + MULTIPART_OVERHEAD_BYTES
    ):
        raise file_too_large(uploads.max_upload_bytes)
    form = await read_multipart(
        request.stream(), request.headers["content-type"], uploads.begin_upload
    )
    upload = form.upload
    try:
        if upload is None:
            raise _refused("validation_error", FILE_FIELD, "send the audio as `file`")
        parsed = parse_request(form, task, settings)
    except BaseException:
        if upload is not None:
            await upload.discard()
        raise
    submission = Submission(
        tenant=tenant, options=parsed.options, correlation_id=correlation, idempotency_key=key
    )
    accepted = await uploads.accept_file(upload, submission, filename=form.filename)
    return accepted, parsed


IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=MAX_KEY_LENGTH,
        pattern=r"^[\x21-\x7e]+$",
        description="The same key returns (and waits for) the same job.",
    ),
]
CorrelationId = Annotated[
    uuid.UUID | None,
    Header(alias="X-Correlation-ID", description="Traces the job through every service."),
]


@router.post(
    "/v1/audio/transcriptions",
    response_model=None,
    summary="OpenAI-compatible: transcribe audio and wait for the text",
    description=_DESCRIPTION,
    responses=_AUDIO_RESPONSES,
    openapi_extra=_form_body("transcribe"),
)
async def create_openai_transcription(
    request: Request,
    tenant: Tenant,
    uploads: Uploads,
    slots: Slots,
    waits: Waits,
    queries: Queries,
    settings: Settings,
    idempotency_key: IdempotencyKey = None,
    correlation_id: CorrelationId = None,
) -> Response:
    return await _transcribe(
        request,
        "transcribe",
        tenant=tenant,
        uploads=uploads,
        slots=slots,
        waits=waits,
        queries=queries,
        settings=settings,
        idempotency_key=idempotency_key,
        correlation_id=correlation_id,
    )


@router.post(
    "/v1/audio/translations",
    response_model=None,
    summary="OpenAI-compatible: translate speech into English text and wait for it",
    description=_DESCRIPTION
    + " English-only models (`*.en`) cannot translate: `400 unsupported_option`.",
    responses=_AUDIO_RESPONSES,
    openapi_extra=_form_body("translate"),
)
async def create_openai_translation(
    request: Request,
    tenant: Tenant,
    uploads: Uploads,
    slots: Slots,
    waits: Waits,
    queries: Queries,
    settings: Settings,
    idempotency_key: IdempotencyKey = None,
    correlation_id: CorrelationId = None,
) -> Response:
    return await _transcribe(
        request,
        "translate",
        tenant=tenant,
        uploads=uploads,
        slots=slots,
        waits=waits,
        queries=queries,
        settings=settings,
        idempotency_key=idempotency_key,
        correlation_id=correlation_id,
    )


def served_model_list(settings: IngestSettings) -> OpenAIModelList:
    """Every name the routes accept: the served models, then the aliases of the default."""
    names = dict.fromkeys((*settings.served_models, *settings.openai_model_aliases))
    return OpenAIModelList(data=[OpenAIModel(id=name) for name in names])


@router.get(
    "/v1/models",
    response_model=OpenAIModelList,
    summary="OpenAI-compatible: the models this deployment serves",
    responses=_errors(401),
)
async def list_openai_models(_tenant: Tenant, settings: Settings) -> OpenAIModelList:
    return served_model_list(settings)


@router.get(
    "/v1/models/{model_id}",
    response_model=OpenAIModel,
    summary="OpenAI-compatible: one served model",
    responses=_errors(401, 404),
)
async def get_openai_model(model_id: str, _tenant: Tenant, settings: Settings) -> OpenAIModel:
    for model in served_model_list(settings).data:
        if model.id == model_id:
            return model
    raise ModelNotFoundError(f"no worker serves model {model_id!r}; see GET /v1/models")
