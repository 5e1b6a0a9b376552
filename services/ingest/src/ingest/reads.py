"""Read endpoints (job status, transcripts, exports, search) over the read-only role.

Each route parses its input (ids, time ranges, cursors), asks the read-side port
(`ingest.queries.JobReader`, as the `Queries` dependency) and shapes the answer (paging
cursors, export formats). Every query is scoped to the caller's tenant: another tenant's
job is as unknown as a job that never existed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Annotated, Any, Final, Literal
from uuid import UUID

from fastapi import APIRouter, Depends, Query
from fastapi.responses import PlainTextResponse, Response

from ingest import cursors, exports
from ingest.deps import Cursors, Queries, Tenant, TenantReads
from ingest.failures import (
    INVALID_CURSOR,
    TRANSCRIPT_NOT_READY,
    VALIDATION_ERROR,
    ConflictError,
    InvalidInputError,
    NotFoundError,
)
from ingest.openapi import EXPORT_RESPONSES, READ_ERRORS
from ingest.queries import JobFilter, is_large, off_loop
from ingest.read_models import (
    JobStatusName,
    SearchPage,
    SegmentOut,
    TranscriptionOut,
    TranscriptionPage,
    search_page_json,
)
from ingest.search_params import SEARCH_OPENAPI, SearchParams, search_params

router = APIRouter(tags=["reads"])

_MEDIA_TYPES: Final = {
    "txt": "text/plain; charset=utf-8",
    "srt": "application/x-subrip; charset=utf-8",
    "vtt": "text/vtt; charset=utf-8",
    "tsv": "text/tab-separated-values; charset=utf-8",
}
_CAPTIONS: Final = ("srt", "vtt")


def _parse_job_id(job_id: str) -> UUID:
    try:
        return UUID(job_id)
    except ValueError:
        raise NotFoundError(job_id) from None


_INT4_MAX: Final = 2**31 - 1
_MAX_RANK: Final = 3.4e38  # the largest `real`: a rank compared as ::real must fit one


def _utc(value: datetime | None, field: str) -> datetime | None:
    """`value` in UTC; a time without a zone is read as UTC, not as the server's local time.

    Python and PostgreSQL both reach year 1 and year 9999, but `0001-01-01T00:00+14:00` is
    year 0 in UTC: refused here, with the field named, rather than overflowing in the driver.
    """
    if value is None:
        return None
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise InvalidInputError(
            VALIDATION_ERROR,
            f"{field} is outside the years 1 to 9999 once converted to UTC",
            details=[{"loc": ["query", field], "msg": "out of range", "type": "value_error"}],
        ) from None


def _check_range(after: datetime | None, before: datetime | None) -> None:
    if after is not None and before is not None and after >= before:
        raise InvalidInputError(
            VALIDATION_ERROR,
            "created_after must be earlier than created_before",
            details=[{"loc": ["query", "created_after"], "msg": "not before created_before"}],
        )


def _decode(
    codec: cursors.CursorCodec, token: str | None, kind: str, scope: str
) -> list[Any] | None:
    if token is None:
        return None
    try:
        return codec.decode(token, kind, scope)
    except cursors.InvalidCursorError as exc:
        raise InvalidInputError(
            INVALID_CURSOR, str(exc), details=[{"loc": ["query", "cursor"], "msg": str(exc)}]
        ) from None


def _not_ours() -> InvalidInputError:
    return InvalidInputError(INVALID_CURSOR, "cursor is not one this API issued")


@router.get(
    "/v1/transcriptions/{job_id}",
    response_model=TranscriptionOut,
    response_model_exclude_none=True,
    responses=READ_ERRORS,
    summary="A job: status, progress, error, audio metadata; the transcript once completed",
)
async def get_transcription(
    job_id: str, tenant: Tenant, queries: Queries
) -> TranscriptionOut | Response:
    job = await queries.job(tenant, _parse_job_id(job_id))
    if job is None:
        raise NotFoundError(job_id)
    if job.transcript is None or not is_large(job.transcript.segments):
        return job
    # What FastAPI would answer (the model, `None`s left out), serialised off the loop.
    body = await off_loop(True, job.model_dump_json, exclude_none=True)
    return Response(body, media_type="application/json")


@router.get(
    "/v1/transcriptions",
    response_model=TranscriptionPage,
    response_model_exclude_none=True,
    responses=READ_ERRORS,
    summary="Jobs, newest first, filtered by status and creation time, cursor-paged",
)
async def list_transcriptions(
    tenant: Tenant,
    queries: Queries,
    codec: Cursors,
    status: Annotated[
        list[JobStatusName] | None, Query(description="Repeat to match any of several.")
    ] = None,
    created_after: Annotated[
        datetime | None, Query(description="Inclusive; ISO 8601 (UTC if no zone).")
    ] = None,
    created_before: Annotated[datetime | None, Query(description="Exclusive; ISO 8601.")] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[str | None, Query(max_length=cursors.MAX_CURSOR_CHARS)] = None,
) -> TranscriptionPage:
    created_after = _utc(created_after, "created_after")
    created_before = _utc(created_before, "created_before")
    _check_range(created_after, created_before)
    statuses = sorted(set(status)) if status else None
    scope = cursors.fingerprint(tenant, statuses, created_after, created_before)
    position = _decode(codec, cursor, "jobs", scope)
    after = None
    if position is not None:
        # Signed, so only this API made it; checked anyway, so no value can overflow a query.
        try:
            created = datetime.fromisoformat(position[0]).astimezone(UTC)
            after = (created, UUID(position[1]))
        except (IndexError, TypeError, ValueError, OverflowError):
            raise _not_ours() from None
    page = await queries.jobs(
        tenant,
        JobFilter(statuses, created_after, created_before),
        after=after,
        limit=limit,
    )
    next_cursor = None
    if page.has_more:
        last = page.items[-1]
        next_cursor = codec.encode("jobs", scope, [last.created_at.isoformat(), str(last.id)])
    return TranscriptionPage(items=page.items, next_cursor=next_cursor)


@router.get(
    "/v1/transcriptions/{job_id}/transcript.{fmt}",
    responses=EXPORT_RESPONSES,
    summary="Export a completed transcript: json, txt, tsv, srt (SubRip) or vtt (WebVTT)",
    description=(
        "Captions (`srt`, `vtt`) hold at most 2 lines of 42 characters a cue unless "
        "`max_line_width` / `max_line_count` say otherwise; `max_cue_seconds` bounds how "
        "long one cue stays on screen. `tsv` is Whisper's: `start`, `end` (ms), `text`."
    ),
    response_model=None,
)
async def export_transcript(
    job_id: str,
    fmt: Literal["json", "txt", "tsv", "srt", "vtt"],
    tenant: Tenant,
    queries: Queries,
    max_line_width: Annotated[
        int | None, Query(ge=10, le=200, description="Characters a caption line may hold (42).")
    ] = None,
    max_line_count: Annotated[
        int | None, Query(ge=1, le=10, description="Lines a caption may hold (2).")
    ] = None,
    max_cue_seconds: Annotated[
        float | None,
        Query(ge=0.5, le=600, description="Longest time one caption stays on screen (none)."),
    ] = None,
) -> Response:
    asked = {
        "max_line_width": max_line_width,
        "max_line_count": max_line_count,
        "max_cue_seconds": max_cue_seconds,
    }
    given = [name for name, value in asked.items() if value is not None]
    if given and fmt not in _CAPTIONS:
        raise InvalidInputError(
            VALIDATION_ERROR,
            f"{', '.join(given)} apply to srt and vtt captions only",
            details=[{"loc": ["query", name], "msg": "captions only"} for name in given],
        )
    limits = exports.CueLimits(
        width=max_line_width or exports.MAX_LINE_CHARS,
        lines=max_line_count or exports.MAX_LINES,
        max_seconds=max_cue_seconds,
    )
    job = _parse_job_id(job_id)
    found = await queries.transcript(tenant, job)
    if found is None:
        raise NotFoundError(job_id)
    transcript = found.transcript
    if transcript is None:
        raise ConflictError(
            TRANSCRIPT_NOT_READY,
            f"transcription {job_id} is {found.status}; its transcript exists once it is completed",
        )
    large = is_large(transcript.segments)
    if fmt == "json":
        return Response(
            await off_loop(large, transcript.model_dump_json), media_type="application/json"
        )
    body = await off_loop(large, _render, transcript.segments, fmt, limits)
    return PlainTextResponse(
        body,
        media_type=_MEDIA_TYPES[fmt],
        headers={"Content-Disposition": f'inline; filename="{job}.{fmt}"'},
    )


def _render(segments: Sequence[SegmentOut], fmt: str, limits: exports.CueLimits) -> str:
    timed = exports.timed_segments(segments)
    if fmt in _CAPTIONS:
        return (exports.to_srt if fmt == "srt" else exports.to_vtt)(timed, limits)
    return (exports.to_tsv if fmt == "tsv" else exports.to_text)(timed)


@router.get(
    "/v1/search",
    response_model=SearchPage,
    responses=READ_ERRORS,
    summary="Full-text search over transcript segments, ranked, with highlighted snippets",
    openapi_extra=SEARCH_OPENAPI,
)
async def search_segments(
    reader: TenantReads, params: Annotated[SearchParams, Depends(search_params)]
) -> Response:
    q, language, speaker, limit = params.q, params.language, params.speaker, params.limit
    if not q.strip():
        raise InvalidInputError(
            VALIDATION_ERROR,
            "q must contain a search term",
            details=[{"loc": ["query", "q"], "msg": "blank"}],
        )
    if "\x00" in q:
        # PostgreSQL text cannot hold NUL; refused here rather than failing in the query.
        raise InvalidInputError(
            VALIDATION_ERROR,
            "q may not contain NUL characters",
            details=[{"loc": ["query", "q"], "msg": "contains NUL"}],
        )
    tenant, queries, codec = reader.tenant, reader.queries, reader.cursors
    created_after = _utc(params.created_after, "created_after")
    created_before = _utc(params.created_before, "created_before")
    _check_range(created_after, created_before)
    # The speaker joins the scope only when given: cursors issued before it stay valid.
    speaker_scope = () if speaker is None else (speaker,)
    scope = cursors.fingerprint(tenant, q, language, created_after, created_before, *speaker_scope)
    position = _decode(codec, params.cursor, "search", scope)
    after = None
    if position is not None:
        try:
            rank, job, segment = float(position[0]), UUID(position[1]), position[2]
        except (IndexError, TypeError, ValueError, OverflowError):
            raise _not_ours() from None
        if not (math.isfinite(rank) and 0 <= rank <= _MAX_RANK) or not (
            type(segment) is int and 0 <= segment <= _INT4_MAX
        ):
            raise _not_ours()
        after = (rank, job, segment)
    result = await queries.search(
        tenant,
        q,
        limit=limit,
        language=language,
        created_after=created_after,
        created_before=created_before,
        after=after,
        speaker=speaker,
    )
    next_cursor = None
    if result.has_more and result.hits:
        last = result.hits[-1]
        next_cursor = codec.encode("search", scope, [last.rank, str(last.job_id), last.segment_id])
    # Serialised once, straight from the rows (`search_page_json`): returned as a model,
    # FastAPI would validate it again against `response_model` and `json.dumps` it.
    body = search_page_json(q, result.hits, next_cursor, result.approximate)
    return Response(body, media_type="application/json")
