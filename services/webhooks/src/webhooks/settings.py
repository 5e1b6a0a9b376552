"""Dispatcher settings (env prefix `SCRIBE_WEBHOOKS_`); the allow-list is shared (`SCRIBE_`)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class WebhooksSettings(BaseSettings):
    """How `scribe-webhooks` reads endpoints and delivers to them."""

    model_config = SettingsConfigDict(env_prefix="SCRIBE_WEBHOOKS_", extra="ignore", frozen=True)

    database_url: str = Field(
        default="postgresql://scribe_reader@127.0.0.1:5432/scribe",
        description="PostgreSQL URL of the SELECT-only role: endpoints are read, never written.",
    )
    pool_size: int = Field(default=4, ge=1, le=100, description="Read connections.")
    endpoint_cache_tenants: int = Field(
        default=4096,
        ge=0,
        le=1_000_000,
        description=(
            "Tenants whose live endpoints are kept in memory (least recently used dropped "
            "first), each dropped when PostgreSQL NOTIFYs a change; 0 reads PostgreSQL for "
            "every job event."
        ),
    )
    request_timeout_seconds: float = Field(
        default=10.0,
        gt=0,
        le=120,
        description=(
            "Longest an attempt may take, all of it (resolving the host, connecting, "
            "sending, the answer's status line and headers); longer is a failed attempt."
        ),
    )
    max_attempts_in_flight_per_tenant: int = Field(
        default=8,
        ge=1,
        le=1000,
        description=(
            "Attempts one tenant may have running at once in a dispatcher; its further "
            "deliveries wait in the first retry stage (5 s) without spending a retry, so "
            "a tenant whose endpoints are slow never holds up another's. Keep it well "
            "under `prefetch`."
        ),
    )
    prefetch: int = Field(
        default=32, ge=1, le=1000, description="Unacknowledged messages buffered per queue."
    )
    health_host: str = Field(
        default="127.0.0.1",
        description="Address of the `/healthz`, `/readyz`, `/metrics` endpoint (compose: 0.0.0.0).",
    )
    health_port: int | None = Field(
        default=9103,
        ge=0,
        le=65535,
        description="Port of the health endpoint; 0 picks a free one, empty turns it off.",
    )
