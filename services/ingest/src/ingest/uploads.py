"""Accepting audio: stored and probed upload, or a vetted URL, becomes `audio.uploaded.v1`.

The order matters. The upload is probed while still a temp file, so nothing that is not
audio ever reaches a content address; the event is published with confirms before the
answer, so a 202 always means the broker has the job; and every failure undoes what this
request stored (the file, the idempotency claim), so a refusal leaves no trace.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Final, Protocol

import structlog
from pydantic import TypeAdapter, ValidationError

from contracts.audio import AudioUploadedV1, AudioUri
from contracts.envelope import TenantId
from ingest import metrics
from ingest.failures import (
    BROKER_UNAVAILABLE,
    IDEMPOTENCY_KEY_REUSED,
    INVALID_AUDIO_URL,
    ConflictError,
    InternalError,
    InvalidInputError,
    UnavailableError,
)
from ingest.idempotency import (
    Claim,
    IdempotencyStore,
    KeyRecord,
    job_id_for,
    uploaded_event_id_for,
)
from ingest.media import MediaStore, PendingUpload, StoredMedia
from ingest.options import RequestOptions
from ingest.probe import AudioProbe, probe_file
from scribe_runtime.netguard import ForbiddenUrlError, ResolvedUrl
from scribe_runtime.objectstore import (
    FORBIDDEN_CODE,
    MediaUrl,
    S3AccessRefusedError,
    S3Location,
    check_tenant_access,
)
from scribe_runtime.settings import SharedSettings

log = structlog.get_logger(__name__)

PRODUCER: Final = "scribe-ingest/0.1.0"
PUBLISH_RETRY_AFTER_SECONDS: Final = 5

_TENANT: Final = TypeAdapter(TenantId)
_URI: Final = TypeAdapter(AudioUri)


class PublishFailedError(Exception):
    """The broker did not confirm the event (down, refused, or too slow)."""


class UploadedPublisher(Protocol):
    """Publishes `audio.uploaded.v1`; returns only once the broker confirmed it."""

    async def publish(self, event: AudioUploadedV1) -> None:
        """Publish and await the confirm; raise `PublishFailedError` otherwise."""
        ...


Prober = Callable[[PendingUpload, float], Awaitable[AudioProbe]]
UrlGuard = Callable[[str], Awaitable[ResolvedUrl]]


async def probe_in_thread(upload: PendingUpload, max_duration_seconds: float) -> AudioProbe:
    """The real prober: PyAV decodes off the event loop."""
    return await asyncio.to_thread(_probe_upload, upload, max_duration_seconds)


def _probe_upload(upload: PendingUpload, max_duration_seconds: float) -> AudioProbe:
    with upload.reader() as file:
        return probe_file(file, upload.size_bytes, max_duration_seconds)


SOURCE_FORBIDDEN: Final = FORBIDDEN_CODE


@dataclass(frozen=True, slots=True)
class S3Scope:
    """Which `s3://` objects a tenant's submissions may name (see `scribe_runtime.objectstore`)."""

    media: MediaUrl = field(default_factory=lambda: MediaUrl(root=None))
    grants: Mapping[str, tuple[S3Location, ...]] = field(default_factory=dict)

    @classmethod
    def from_settings(cls, shared: SharedSettings) -> S3Scope:
        """The media store's tenant prefixes and `SCRIBE_S3_TENANT_PREFIXES`."""
        return cls(media=shared.media(), grants=shared.s3_grants())

    def check(self, uri: str, tenant: str) -> None:
        """Refuse (`source_forbidden`) an object outside the tenant's prefixes; no request."""
        try:
            check_tenant_access(S3Location.parse(uri), tenant, media=self.media, grants=self.grants)
        except S3AccessRefusedError as exc:
            raise InvalidInputError(
                SOURCE_FORBIDDEN,
                f"audio_url is not allowed: {exc.reason}",
                details=[{"loc": ["body", "audio_url"], "msg": exc.reason, "type": exc.code}],
            ) from None
        except ValueError as exc:
            raise InvalidInputError(
                INVALID_AUDIO_URL,
                f"audio_url is not a usable s3:// URI: {exc}",
                details=[{"loc": ["body", "audio_url"], "msg": str(exc), "type": "url"}],
            ) from None


@dataclass(frozen=True, slots=True)
class ProbedObject:
    """An object already in the store (a presigned upload), probed where it lies."""

    uri: str
    size_bytes: int
    etag: str
    probe: AudioProbe


@dataclass(frozen=True, slots=True)
class Accepted:
    """A job the broker has: its id, and whether this answer replays an earlier one."""

    job_id: uuid.UUID
    correlation_id: uuid.UUID
    replayed: bool = False


@dataclass(frozen=True, slots=True)
class Submission:
    """Who asks, and how: what every submission carries besides its audio."""

    tenant: str
    options: RequestOptions
    correlation_id: uuid.UUID
    idempotency_key: str | None = None


class UploadService:
    """The use case behind `POST /v1/transcriptions`, over its ports."""

    def __init__(
        self,
        *,
        media: MediaStore,
        idempotency: IdempotencyStore,
        publisher: UploadedPublisher,
        url_guard: UrlGuard,
        prober: Prober = probe_in_thread,
        s3_scope: S3Scope | None = None,
        max_upload_bytes: int,
        max_duration_seconds: float,
    ) -> None:
        self.s3_scope = s3_scope or S3Scope()
        self.media = media
        self.idempotency = idempotency
        self.publisher = publisher
        self.url_guard = url_guard
        self.prober = prober
        self.max_upload_bytes = max_upload_bytes
        self.max_duration_seconds = max_duration_seconds

    def begin_upload(self) -> PendingUpload:
        """A new upload bounded by the size limit."""
        return self.media.begin(self.max_upload_bytes)

    async def accept_file(
        self, upload: PendingUpload, request: Submission, *, filename: str | None
    ) -> Accepted:
        """Probe, store and announce a fully received upload. Always consumes `upload`.

        Raises `MediaRejectedError` for audio it refuses, `ConflictError` for a reused
        key, `UnavailableError` when the broker does not take the job.
        """
        started = time.perf_counter()
        try:
            _check_tenant(request.tenant)
            sha256 = await upload.finish()
            probe = await self.prober(upload, self.max_duration_seconds)
            fingerprint = _fingerprint("file", sha256, request.options)
            job_id, claim = await self._claim(request, fingerprint)
            if claim is Claim.DONE:
                log.info("upload_replayed", job_id=str(job_id), sha256=sha256)
                return Accepted(job_id, request.correlation_id, replayed=True)
            try:
                stored = await upload.commit(request.tenant)
            except BaseException:
                await self._abandon(request, claim)
                raise
            event = AudioUploadedV1(
                event_id=_event_id(job_id, request),
                job_id=job_id,
                tenant_id=request.tenant,
                correlation_id=request.correlation_id,
                producer=PRODUCER,
                audio_uri=_URI.validate_python(stored.uri),
                sha256=stored.sha256,
                size_bytes=stored.size_bytes,
                content_type=probe.content_type,
                original_filename=filename,
                duration_seconds=probe.duration_seconds,
                options=request.options.to_contract(),
            )
            await self._publish(event, request, fingerprint, claim, stored)
        finally:
            await upload.discard()
        log.info(
            "audio_accepted",
            job_id=str(job_id),
            correlation_id=str(request.correlation_id),
            tenant_id=request.tenant,
            source="upload",
            sha256=stored.sha256,
            size_bytes=stored.size_bytes,
            content_type=probe.content_type,
            duration_seconds=probe.duration_seconds,
            deduplicated_media=not stored.created,
            duration_ms=round((time.perf_counter() - started) * 1000, 1),
        )
        metrics.UPLOAD_BYTES.observe(stored.size_bytes)
        return Accepted(job_id, request.correlation_id)

    async def accept_url(self, url: str, request: Submission) -> Accepted:
        """Announce audio the transcriber will fetch, once the URL is known to be public."""
        _check_tenant(request.tenant)
        try:
            audio_uri = _URI.validate_python(url)
            if audio_uri.scheme == "s3":
                self.s3_scope.check(url, request.tenant)
            else:
                await self.url_guard(url)
        except ForbiddenUrlError as exc:
            raise InvalidInputError(
                INVALID_AUDIO_URL,
                f"audio_url is not allowed: {exc.reason}",
                details=[{"loc": ["body", "audio_url"], "msg": exc.reason, "type": exc.code}],
            ) from None
        except ValidationError as exc:
            reason = exc.errors()[0]["msg"]
            raise InvalidInputError(
                INVALID_AUDIO_URL,
                f"audio_url is not a usable URL: {reason}",
                details=[{"loc": ["body", "audio_url"], "msg": reason, "type": "url"}],
            ) from None
        fingerprint = _fingerprint("url", url, request.options)
        job_id, claim = await self._claim(request, fingerprint)
        if claim is Claim.DONE:
            log.info("upload_replayed", job_id=str(job_id))
            return Accepted(job_id, request.correlation_id, replayed=True)
        event = AudioUploadedV1(
            event_id=_event_id(job_id, request),
            job_id=job_id,
            tenant_id=request.tenant,
            correlation_id=request.correlation_id,
            producer=PRODUCER,
            audio_uri=audio_uri,
            options=request.options.to_contract(),
        )
        await self._publish(event, request, fingerprint, claim, None)
        log.info(
            "audio_accepted",
            job_id=str(job_id),
            correlation_id=str(request.correlation_id),
            tenant_id=request.tenant,
            source="url",
        )
        return Accepted(job_id, request.correlation_id)

    async def accept_object(self, probed: ProbedObject, request: Submission) -> Accepted:
        """Announce a presigned upload once probed: the bytes never passed through ingest."""
        _check_tenant(request.tenant)
        self.s3_scope.check(probed.uri, request.tenant)
        fingerprint = _fingerprint("object", f"{probed.uri}@{probed.etag}", request.options)
        job_id, claim = await self._claim(request, fingerprint)
        if claim is Claim.DONE:
            log.info("upload_replayed", job_id=str(job_id))
            return Accepted(job_id, request.correlation_id, replayed=True)
        event = AudioUploadedV1(
            event_id=_event_id(job_id, request),
            job_id=job_id,
            tenant_id=request.tenant,
            correlation_id=request.correlation_id,
            producer=PRODUCER,
            audio_uri=_URI.validate_python(probed.uri),
            size_bytes=probed.size_bytes,
            content_type=probed.probe.content_type,
            duration_seconds=probed.probe.duration_seconds,
            options=request.options.to_contract(),
        )
        await self._publish(event, request, fingerprint, claim, None)
        log.info(
            "audio_accepted",
            job_id=str(job_id),
            correlation_id=str(request.correlation_id),
            tenant_id=request.tenant,
            source="presigned",
            size_bytes=probed.size_bytes,
            duration_seconds=probed.probe.duration_seconds,
        )
        return Accepted(job_id, request.correlation_id)

    async def _claim(self, request: Submission, fingerprint: str) -> tuple[uuid.UUID, Claim]:
        if request.idempotency_key is None:
            return uuid.uuid4(), Claim.NEW
        job_id = job_id_for(request.tenant, request.idempotency_key)
        claim = await self.idempotency.claim(
            request.tenant,
            request.idempotency_key,
            KeyRecord(job_id, fingerprint, confirmed=False),
        )
        if claim is Claim.CONFLICT:
            raise ConflictError(
                IDEMPOTENCY_KEY_REUSED,
                "this Idempotency-Key was already used with different audio or options",
            )
        return job_id, claim

    async def _abandon(self, request: Submission, claim: Claim) -> None:
        # Only the request that created the claim frees it: a PENDING one belongs to another.
        if request.idempotency_key is not None and claim is Claim.NEW:
            await self.idempotency.abandon(request.tenant, request.idempotency_key)

    async def _publish(
        self,
        event: AudioUploadedV1,
        request: Submission,
        fingerprint: str,
        claim: Claim,
        stored: StoredMedia | None,
    ) -> None:
        try:
            await self.publisher.publish(event)
        except BaseException as exc:
            if stored is not None:
                await self.media.release(stored)
            await self._abandon(request, claim)
            if isinstance(exc, PublishFailedError):
                log.warning(
                    "upload_not_published",
                    job_id=str(event.job_id),
                    correlation_id=str(request.correlation_id),
                    reason=str(exc),
                )
                raise UnavailableError(
                    BROKER_UNAVAILABLE,
                    "the job could not be queued (message broker unavailable); "
                    "nothing was kept, retry later",
                    retry_after_seconds=PUBLISH_RETRY_AFTER_SECONDS,
                ) from None
            raise
        if stored is not None:
            self.media.keep(stored)
        if request.idempotency_key is not None:
            await self.idempotency.confirm(
                request.tenant,
                request.idempotency_key,
                KeyRecord(event.job_id, fingerprint, confirmed=True),
            )


def _check_tenant(tenant: str) -> None:
    # The tenant names a directory: only ids the contract allows (no dots-only, no slashes).
    try:
        _TENANT.validate_python(tenant)
    except ValidationError:
        raise InternalError("the tenant id is not valid") from None


def _fingerprint(kind: str, source: str, options: RequestOptions) -> str:
    """What a key promises: the same source with the same options."""
    # Diarization options only when asked: keys stored before they existed still match.
    unasked = {"diarize", "min_speakers", "max_speakers"} if options.diarize is False else None
    payload = f"{kind}\n{source}\n{options.model_dump_json(exclude=unasked)}"
    return hashlib.sha256(payload.encode()).hexdigest()


def _event_id(job_id: uuid.UUID, request: Submission) -> uuid.UUID:
    # Keyed jobs get a derived id, so a retried publish is a duplicate consumers drop.
    return uploaded_event_id_for(job_id) if request.idempotency_key is not None else uuid.uuid4()
