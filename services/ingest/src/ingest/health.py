"""Liveness and readiness: what an orchestrator asks before sending traffic."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Response
from pydantic import BaseModel, Field

from ingest.deps import Broker, Media
from ingest.openapi import NOT_READY_EXAMPLE, READY_EXAMPLE

router = APIRouter()


class Liveness(BaseModel):
    """The process answers."""

    status: Literal["alive"] = "alive"


class Check(BaseModel):
    """One readiness check."""

    ok: bool
    message: str | None = None


class Readiness(BaseModel):
    """Whether this replica can accept uploads now, check by check."""

    status: Literal["ready", "not_ready"]
    checks: dict[str, Check]
    code: str | None = Field(default=None, description="`not_ready` when a check failed.")
    message: str | None = None


@router.get("/healthz", response_model=Liveness, summary="Liveness", tags=["health"])
async def healthz() -> Liveness:
    """Answers while the process runs; says nothing about its dependencies."""
    return Liveness()


@router.get(
    "/readyz",
    response_model=Readiness,
    response_model_exclude_none=True,
    summary="Readiness",
    tags=["health"],
    responses={
        200: {"content": {"application/json": {"example": READY_EXAMPLE}}},
        503: {
            "model": Readiness,
            "description": "A dependency is down; the failing check says which.",
            "content": {"application/json": {"example": NOT_READY_EXAMPLE}},
        },
    },
)
async def readyz(response: Response, broker: Broker, media: Media) -> Readiness:
    """Ready when the broker connection is up and the media root is writable."""
    checks: dict[str, Check] = {}
    broker_up = await broker.is_connected()
    checks["broker"] = Check(ok=broker_up, message=None if broker_up else "not connected")
    media_problem = await media.check_writable()
    checks["media_root"] = Check(ok=media_problem is None, message=media_problem)
    failed = [f"{name}: {check.message}" for name, check in checks.items() if not check.ok]
    if failed:
        response.status_code = 503
        return Readiness(
            status="not_ready", checks=checks, code="not_ready", message="; ".join(failed)
        )
    return Readiness(status="ready", checks=checks)
