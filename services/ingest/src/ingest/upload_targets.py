"""`POST /v1/uploads`: a presigned PUT target for a large file (see `ingest.presigned`)."""

from __future__ import annotations

from typing import Annotated, Final

from fastapi import APIRouter, Depends, Request

from ingest.deps import Tenant, get_container
from ingest.failures import ConflictError
from ingest.presigned import PresignedUploads, UploadTarget

PRESIGNED_UPLOADS_DISABLED: Final = "presigned_uploads_disabled"

router = APIRouter()


def get_presigned(request: Request) -> PresignedUploads:
    """The presigned-upload side; 409 `presigned_uploads_disabled` on a filesystem store."""
    container = get_container(request)
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
)
async def create_upload(
    tenant: Tenant,
    presigned: Presigned,
) -> UploadTarget:
    """Sign a PUT target under the tenant's prefix; the bytes never pass through ingest."""
    return await presigned.create(tenant)
