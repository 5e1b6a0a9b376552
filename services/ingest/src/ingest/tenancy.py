"""Which tenant a request acts for: the tenant its API key belongs to (see `ingest.auth`)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from ingest.auth import authenticated_tenant

Tenant = Annotated[str, Depends(authenticated_tenant)]
"""Every `/v1` endpoint takes this: 401 `unauthenticated` without a valid API key."""
