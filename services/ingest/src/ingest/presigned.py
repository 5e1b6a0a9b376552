"""Presigned uploads: `POST /v1/uploads`, then `POST /v1/transcriptions {"upload_id": ...}`.

For large files the client PUTs the bytes straight to the object store with a URL signed
for one key under its own tenant's prefix (`<prefix>/<tenant>/uploads/<upload_id>`) that
expires; the bytes never pass through ingest. Submitting the upload by id makes ingest
HEAD the object (is it there, how large) and probe it through ranged reads (bounded
memory: one 4 MiB window) before it publishes `audio.uploaded.v1` with the `s3://` URI.

A presigned PUT cannot cap its own size (only POST policies can), so the size limit is
checked at submission: an object over `max_upload_bytes` is refused (`file_too_large`).
Only in object-storage mode; on a filesystem store the endpoint answers 409.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Final, Literal, cast

import structlog
from botocore.exceptions import ClientError
from pydantic import BaseModel, Field

from ingest.failures import InvalidInputError, file_too_large
from ingest.object_media import store_unavailable
from ingest.probe import probe_file
from ingest.uploads import ProbedObject
from scribe_runtime.objectstore import RangeReader, S3Location, is_not_found, is_transient

if TYPE_CHECKING:
    from types_aiobotocore_s3 import S3Client
else:
    S3Client = Any

log = structlog.get_logger(__name__)

UPLOAD_NOT_FOUND: Final = "upload_not_found"
UPLOADS_DIR: Final = "uploads"


class UploadTarget(BaseModel):
    """Where to PUT the audio, until when; then submit it by `id`."""

    id: uuid.UUID = Field(description='Submit with `POST /v1/transcriptions {"upload_id": id}`.')
    method: Literal["PUT"] = "PUT"
    url: str = Field(description="The presigned URL: PUT the raw bytes there, nothing else.")
    expires_at: datetime = Field(description="The URL stops working at this time (UTC).")
    max_bytes: int = Field(description="Largest object a submission accepts.")


class PresignedUploads:
    """Signs PUT targets under the tenant's prefix; probes what was put there."""

    def __init__(
        self,
        client: S3Client,
        base: S3Location,
        *,
        expires_seconds: int,
        max_upload_bytes: int,
        max_duration_seconds: float,
    ) -> None:
        self.client = client
        self.base = base
        self.expires_seconds = expires_seconds
        self.max_upload_bytes = max_upload_bytes
        self.max_duration_seconds = max_duration_seconds

    def location(self, tenant: str, upload_id: uuid.UUID) -> S3Location:
        """`<prefix>/<tenant>/uploads/<id>`: the tenant comes from the API key, never the body."""
        return self.base.child(tenant, UPLOADS_DIR, str(upload_id))

    async def create(self, tenant: str) -> UploadTarget:
        """A fresh upload id and a URL that may PUT exactly that object, for a while."""
        upload_id = uuid.uuid4()
        target = self.location(tenant, upload_id)
        url = await self.client.generate_presigned_url(
            "put_object",
            Params={"Bucket": target.bucket, "Key": target.key},
            ExpiresIn=self.expires_seconds,
        )
        expires_at = datetime.now(UTC) + timedelta(seconds=self.expires_seconds)
        log.info("upload_target_signed", upload_id=str(upload_id), expires_at=str(expires_at))
        return UploadTarget(
            id=upload_id, url=url, expires_at=expires_at, max_bytes=self.max_upload_bytes
        )

    async def inspect(self, tenant: str, upload_id: uuid.UUID) -> ProbedObject:
        """HEAD, then probe the object where it lies; refusals carry their codes."""
        target = self.location(tenant, upload_id)
        try:
            head = await self.client.head_object(Bucket=target.bucket, Key=target.key)
        except ClientError as exc:
            if is_not_found(exc):
                raise InvalidInputError(
                    UPLOAD_NOT_FOUND,
                    f"no uploaded object for upload {upload_id} (PUT it to the signed URL first)",
                    details=[{"loc": ["body", "upload_id"], "msg": "not uploaded", "type": "id"}],
                ) from None
            raise store_unavailable(exc) if is_transient(exc) else exc from None
        except Exception as exc:
            if is_transient(exc):
                raise store_unavailable(exc) from None
            raise
        size = int(head["ContentLength"])
        if size > self.max_upload_bytes:
            raise file_too_large(self.max_upload_bytes)
        etag = str(head["ETag"]).strip('"')
        loop = asyncio.get_running_loop()

        def probe() -> Any:
            reader = RangeReader(self.client, target, size, loop)
            with reader:
                return probe_file(cast(Any, reader), size, self.max_duration_seconds)

        try:
            result = await asyncio.to_thread(probe)
        except Exception as exc:
            if is_transient(exc):
                raise store_unavailable(exc) from None
            raise
        return ProbedObject(uri=target.uri, size_bytes=size, etag=etag, probe=result)
