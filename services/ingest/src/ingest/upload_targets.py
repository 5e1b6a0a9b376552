"""`POST /v1/uploads`: a presigned PUT target for a large file (see `ingest.presigned`)."""

from __future__ import annotations

from typing import Annotated, Any, Final

from fastapi import APIRouter, Depends, Request

from ingest.deps import Tenant, container_of
from ingest.errors import ErrorBody
from ingest.failures import ConflictError
from ingest.presigned import PresignedUploads, UploadTarget

PRESIGNED_UPLOADS_DISABLED: Final = "presigned_uploads_disabled"

router = APIRouter()

RESPONSES: Final[dict[int | str, dict[str, Any]]] = {
    401: {"model": ErrorBody, "description": "`unauthenticated`: no valid API key."},
    409: {
        "model": ErrorBody,
        "description": "`presigned_uploads_disabled`: media is on a filesystem, not S3.",
    },
    503: {"model": ErrorBody, "description": "`media_store_unavailable`: retry shortly."},
}


async def get_presigned(request: Request) -> PresignedUploads:
    """The presigned-upload side; 409 `presigned_uploads_disabled` on a filesystem store."""
    container = container_of(request.app)
    if container.presigned is None:
        raise ConflictError(
            PRESIGNED_UPLOADS_DISABLED,
            "presigned uploads need object storage (SCRIBE_MEDIA_URL=s3://...); "
            "POST the file to /v1/transcriptions instead",
        )
    return container.presigned


Presigned = Annotated[PresignedUploads, Depends(get_presigned)]


@router.post(
    "/v1/uploads",
    status_code=201,
    response_model=UploadTarget,
    summary="Get a presigned URL to upload a large file straight to object storage",
    responses=RESPONSES,
)
async def create_upload(
    tenant: Tenant,
    presigned: Presigned,
) -> UploadTarget:
    """Sign a PUT target under the tenant's prefix; the bytes never pass through ingest."""
    return await presigned.create(tenant)
