"""Ingest settings (env prefix `SCRIBE_INGEST_`)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class IngestSettings(BaseSettings):
    """How the HTTP front door behaves."""

    model_config = SettingsConfigDict(env_prefix="SCRIBE_INGEST_", extra="ignore", frozen=True)

    host: str = Field(default="127.0.0.1", description="Address the HTTP server binds to.")
    port: int = Field(default=8000, ge=1, le=65535, description="HTTP port.")
    database_url: str = Field(
        default="postgresql://scribe_reader@127.0.0.1:5432/scribe",
        description="PostgreSQL URL of the read-only role used by the read endpoints.",
    )
    default_tenant: str = Field(
        default="default",
        description="Tenant of requests until API keys map callers to tenants.",
    )
