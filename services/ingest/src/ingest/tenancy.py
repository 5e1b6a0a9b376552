"""Which tenant a request acts for."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request


def current_tenant(request: Request) -> str:
    """The caller's tenant. Until API keys exist, every caller is the default tenant."""
    tenant: str = request.app.state.settings.default_tenant
    return tenant


Tenant = Annotated[str, Depends(current_tenant)]
