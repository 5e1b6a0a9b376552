"""Read endpoints (job status, transcripts, exports, search) over the read-only role.

The app includes `router`; the pool comes from the container (`ingest.deps.ReaderPool`).
While PostgreSQL is away a read answers 503 `database_unavailable`. Every query is scoped
to the caller's tenant: another tenant's job is as unknown as a job that never existed.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Annotated, Any, Final, Literal
from uuid import UUID

import asyncpg
import structlog
from asyncpg.pool import PoolConnectionProxy
from fastapi import APIRouter, Query
from fastapi.responses import PlainTextResponse, Response

from ingest import cursors, exports, metrics
from ingest.deps import ReaderPool, Settings, Tenant
from ingest.errors import ErrorBody
from ingest.failures import (
    DATABASE_UNAVAILABLE,
    INVALID_CURSOR,
    TRANSCRIPT_NOT_READY,
    VALIDATION_ERROR,
    ConflictError,
    InvalidInputError,
    NotFoundError,
    UnavailableError,
)
from ingest.links import job_links
from ingest.read_models import (
    AudioInfo,
    JobError,
    JobStatusName,
    RequestedOptions,
    SearchHit,
    SearchPage,
    SegmentOut,
    TranscriptionOut,
    TranscriptionPage,
    TranscriptionSummary,
    TranscriptOut,
    WordOut,
)
from ingest.search import SearchQuery, search
from ingest.settings import IngestSettings

log = structlog.get_logger(__name__)

router = APIRouter(tags=["reads"])

_UNAVAILABLE_ERRORS: Final[tuple[type[BaseException], ...]] = (
    OSError,
    asyncio.TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
    asyncpg.TooManyConnectionsError,
    asyncpg.AdminShutdownError,
    asyncpg.QueryCanceledError,
)
_ERRORS: Final[dict[int | str, dict[str, Any]]] = {
    401: {"model": ErrorBody, "description": "`unauthenticated`: no valid API key."},
    404: {"model": ErrorBody, "description": "`not_found`: no such job for this tenant."},
    422: {"model": ErrorBody, "description": "`validation_error` / `invalid_cursor`."},
    503: {"model": ErrorBody, "description": "`database_unavailable`: retry shortly."},
}
_MEDIA_TYPES: Final = {
    "txt": "text/plain; charset=utf-8",
    "srt": "application/x-subrip; charset=utf-8",
    "vtt": "text/vtt; charset=utf-8",
}


@asynccontextmanager
async def _connection(
    pool: asyncpg.Pool, settings: IngestSettings, tenant: str
) -> AsyncIterator[PoolConnectionProxy[asyncpg.Record]]:
    """A read-only transaction that row-level security scopes to `tenant`.

    The WHERE clauses name the tenant too, but PostgreSQL is what enforces it: the reader
    role sees only rows of the tenant set here (migration 0002), and `set_config(..., true)`
    lasts for this transaction only, so a pooled connection never carries it to the next
    request.
    """
    try:
        async with (
            pool.acquire(timeout=settings.database_timeout_seconds) as conn,
            conn.transaction(readonly=True),
        ):
            await conn.execute("SELECT set_config('scribe.tenant_id', $1, true)", tenant)
            yield conn
    except _UNAVAILABLE_ERRORS as exc:
        log.warning("read_database_unavailable", error=repr(exc))
        raise _unavailable("the read database is unavailable; retry shortly") from exc


def _unavailable(message: str) -> UnavailableError:
    return UnavailableError(DATABASE_UNAVAILABLE, message, retry_after_seconds=2)


def _not_found(job_id: str) -> NotFoundError:
    return NotFoundError(job_id)


def _parse_job_id(job_id: str) -> UUID:
    try:
        return UUID(job_id)
    except ValueError:
        raise _not_found(job_id) from None


def _aware(value: datetime | None) -> datetime | None:
    # A time without a zone is read as UTC rather than as the server's local time.
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


def _check_range(after: datetime | None, before: datetime | None) -> None:
    if after is not None and before is not None and after >= before:
        raise InvalidInputError(
            VALIDATION_ERROR,
            "created_after must be earlier than created_before",
            details=[{"loc": ["query", "created_after"], "msg": "not before created_before"}],
        )


def _decode(token: str | None, kind: str, scope: str) -> list[Any] | None:
    if token is None:
        return None
    try:
        return cursors.decode_cursor(token, kind, scope)
    except cursors.InvalidCursorError as exc:
        raise InvalidInputError(
            INVALID_CURSOR, str(exc), details=[{"loc": ["query", "cursor"], "msg": str(exc)}]
        ) from None


def _error(row: asyncpg.Record) -> JobError | None:
    if row["status"] != "failed" or row["error_code"] is None:
        return None
    return JobError(
        code=row["error_code"], message=row["error_message"] or "", retryable=row["error_retryable"]
    )


async def _segments(conn: PoolConnectionProxy[asyncpg.Record], tenant: str, job: UUID) -> list[Any]:
    return await conn.fetch(
        "SELECT segment_id, start_seconds, end_seconds, text, avg_logprob, no_speech_prob, words "
        "FROM segments WHERE tenant_id = $1 AND job_id = $2 ORDER BY segment_id",
        tenant,
        job,
    )


def _words(raw: str | None) -> list[dict[str, Any]] | None:
    return json.loads(raw) if raw is not None else None


async def _transcript(
    conn: PoolConnectionProxy[asyncpg.Record], tenant: str, job: UUID
) -> TranscriptOut | None:
    row = await conn.fetchrow(
        "SELECT language, language_probability, duration_seconds, model, text "
        "FROM transcripts WHERE tenant_id = $1 AND job_id = $2",
        tenant,
        job,
    )
    if row is None:
        return None
    segments = [
        SegmentOut(
            id=s["segment_id"],
            start=s["start_seconds"],
            end=s["end_seconds"],
            text=s["text"],
            avg_logprob=s["avg_logprob"],
            no_speech_prob=s["no_speech_prob"],
            words=[WordOut(**w) for w in words]
            if (words := _words(s["words"])) is not None
            else None,
        )
        for s in await _segments(conn, tenant, job)
    ]
    return TranscriptOut(**dict(row), segments=segments)


@router.get(
    "/v1/transcriptions/{job_id}",
    response_model=TranscriptionOut,
    response_model_exclude_none=True,
    responses=_ERRORS,
    summary="A job: status, progress, error, audio metadata; the transcript once completed",
)
async def get_transcription(
    job_id: str, tenant: Tenant, pool: ReaderPool, settings: Settings
) -> TranscriptionOut:
    job = _parse_job_id(job_id)
    async with _connection(pool, settings, tenant) as conn:
        row = await conn.fetchrow(
            "SELECT * FROM jobs WHERE tenant_id = $1 AND job_id = $2", tenant, job
        )
        if row is None:
            raise _not_found(job_id)
        transcript = await _transcript(conn, tenant, job) if row["status"] == "completed" else None
    return TranscriptionOut(
        id=job,
        status=row["status"],
        progress=row["progress"],
        processed_seconds=row["processed_seconds"],
        attempts=row["attempts"],
        error=_error(row),
        audio=AudioInfo(
            uri=row["audio_uri"],
            sha256=row["sha256"],
            size_bytes=row["size_bytes"],
            content_type=row["content_type"],
            original_filename=row["original_filename"],
            duration_seconds=row["duration_seconds"],
        ),
        options=RequestedOptions(
            language=row["requested_language"],
            model=row["requested_model"],
            word_timestamps=row["word_timestamps"],
        ),
        model=row["model"],
        language=row["language"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        started_at=row["started_at"],
        completed_at=row["completed_at"] if row["status"] == "completed" else None,
        failed_at=row["failed_at"] if row["status"] == "failed" else None,
        correlation_id=row["correlation_id"],
        transcript=transcript,
        links=job_links(job, row["status"]),
    )


@router.get(
    "/v1/transcriptions",
    response_model=TranscriptionPage,
    response_model_exclude_none=True,
    responses=_ERRORS,
    summary="Jobs, newest first, filtered by status and creation time, cursor-paged",
)
async def list_transcriptions(
    tenant: Tenant,
    pool: ReaderPool,
    settings: Settings,
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
    created_after, created_before = _aware(created_after), _aware(created_before)
    _check_range(created_after, created_before)
    statuses = sorted(set(status)) if status else None
    scope = cursors.fingerprint(tenant, statuses, created_after, created_before)
    position = _decode(cursor, "jobs", scope)
    params: list[Any] = [tenant]
    where = ["tenant_id = $1"]
    if statuses:
        params.append(statuses)
        where.append(f"status = ANY(${len(params)}::text[])")
    if created_after is not None:
        params.append(created_after)
        where.append(f"created_at >= ${len(params)}")
    if created_before is not None:
        params.append(created_before)
        where.append(f"created_at < ${len(params)}")
    if position is not None:
        try:
            after_at, after_id = datetime.fromisoformat(position[0]), UUID(position[1])
        except (IndexError, TypeError, ValueError):
            raise InvalidInputError(INVALID_CURSOR, "cursor is not one this API issued") from None
        params += [after_at, after_id]
        where.append(f"(created_at, job_id) < (${len(params) - 1}, ${len(params)})")
    params.append(limit + 1)
    async with _connection(pool, settings, tenant) as conn:
        rows = await conn.fetch(
            "SELECT job_id, status, progress, original_filename, duration_seconds, language, "
            "error_code, error_message, error_retryable, created_at, updated_at, completed_at "
            f"FROM jobs WHERE {' AND '.join(where)} "
            f"ORDER BY created_at DESC, job_id DESC LIMIT ${len(params)}",
            *params,
        )
    items = [
        TranscriptionSummary(
            id=r["job_id"],
            status=r["status"],
            progress=r["progress"],
            original_filename=r["original_filename"],
            duration_seconds=r["duration_seconds"],
            language=r["language"],
            error=_error(r),
            created_at=r["created_at"],
            updated_at=r["updated_at"],
            completed_at=r["completed_at"] if r["status"] == "completed" else None,
            links=job_links(r["job_id"], r["status"]),
        )
        for r in rows[:limit]
    ]
    next_cursor = None
    if len(rows) > limit:
        last = rows[limit - 1]
        next_cursor = cursors.encode_cursor(
            "jobs", scope, [last["created_at"].isoformat(), str(last["job_id"])]
        )
    return TranscriptionPage(items=items, next_cursor=next_cursor)


@router.get(
    "/v1/transcriptions/{job_id}/transcript.{fmt}",
    responses={
        **_ERRORS,
        200: {
            "description": "The transcript as JSON, plain text, SRT or WebVTT.",
            "content": {
                "application/json": {"schema": {"$ref": "#/components/schemas/TranscriptOut"}},
                "text/plain": {},
                "application/x-subrip": {},
                "text/vtt": {},
            },
        },
    },
    summary="Export a completed transcript: json, txt, srt (SubRip) or vtt (WebVTT)",
    response_model=None,
)
async def export_transcript(
    job_id: str,
    fmt: Literal["json", "txt", "srt", "vtt"],
    tenant: Tenant,
    pool: ReaderPool,
    settings: Settings,
) -> Response:
    job = _parse_job_id(job_id)
    async with _connection(pool, settings, tenant) as conn:
        status = await conn.fetchval(
            "SELECT status FROM jobs WHERE tenant_id = $1 AND job_id = $2", tenant, job
        )
        if status is None:
            raise _not_found(job_id)
        transcript = await _transcript(conn, tenant, job) if status == "completed" else None
    if transcript is None:
        raise ConflictError(
            TRANSCRIPT_NOT_READY,
            f"transcription {job_id} is {status}; its transcript exists once it is completed",
        )
    if fmt == "json":
        return Response(transcript.model_dump_json(), media_type="application/json")
    timed = [
        exports.TimedSegment(
            start=s.start,
            end=s.end,
            text=s.text,
            words=[exports.TimedWord(w.word, w.start, w.end) for w in s.words] if s.words else None,
        )
        for s in transcript.segments
    ]
    body = {"txt": exports.to_text, "srt": exports.to_srt, "vtt": exports.to_vtt}[fmt](timed)
    return PlainTextResponse(
        body,
        media_type=_MEDIA_TYPES[fmt],
        headers={"Content-Disposition": f'inline; filename="{job}.{fmt}"'},
    )


@router.get(
    "/v1/search",
    response_model=SearchPage,
    responses=_ERRORS,
    summary="Full-text search over transcript segments, ranked, with highlighted snippets",
)
async def search_segments(
    tenant: Tenant,
    pool: ReaderPool,
    settings: Settings,
    q: Annotated[
        str,
        Query(
            min_length=1,
            max_length=500,
            description=(
                'Web-search syntax: words (all must match), "a phrase", `or`, `-excluded`.'
            ),
            examples=['"fellow americans" -taxes'],
        ),
    ],
    language: Annotated[str | None, Query(pattern=r"^[a-z]{2,3}$")] = None,
    created_after: Annotated[datetime | None, Query(description="Job created at or after.")] = None,
    created_before: Annotated[datetime | None, Query(description="Job created before.")] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[str | None, Query(max_length=cursors.MAX_CURSOR_CHARS)] = None,
) -> SearchPage:
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
    created_after, created_before = _aware(created_after), _aware(created_before)
    _check_range(created_after, created_before)
    scope = cursors.fingerprint(tenant, q, language, created_after, created_before)
    position = _decode(cursor, "search", scope)
    after = None
    if position is not None:
        try:
            after = (float(position[0]), UUID(position[1]), int(position[2]))
        except (IndexError, TypeError, ValueError):
            raise InvalidInputError(INVALID_CURSOR, "cursor is not one this API issued") from None
    query = SearchQuery(
        tenant_id=tenant,
        text=q,
        limit=limit,
        candidate_limit=settings.search_candidate_limit,
        language=language,
        created_after=created_after,
        created_before=created_before,
        after=after,
    )
    with metrics.SEARCH_SECONDS.time():
        async with _connection(pool, settings, tenant) as conn:
            result = await search(conn, query)
    hits = [
        SearchHit(
            job_id=h.job_id,
            segment_id=h.segment_id,
            start=h.start,
            end=h.end,
            language=h.language,
            text=h.text,
            snippet=h.snippet,
            rank=h.rank,
            # Only completed jobs have segments to match.
            links=job_links(h.job_id, "completed"),
        )
        for h in result.hits
    ]
    next_cursor = None
    if result.has_more and hits:
        last = hits[-1]
        next_cursor = cursors.encode_cursor(
            "search", scope, [last.rank, str(last.job_id), last.segment_id]
        )
    return SearchPage(query=q, hits=hits, next_cursor=next_cursor, approximate=result.approximate)
