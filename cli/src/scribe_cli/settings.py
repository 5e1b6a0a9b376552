"""CLI settings: where the HTTP API is and who the caller is."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class CliSettings(BaseSettings):
    """Read from the environment (`SCRIBE_API_URL`, `SCRIBE_API_KEY`, ...)."""

    model_config = SettingsConfigDict(env_prefix="SCRIBE_", extra="ignore", frozen=True)

    api_url: str = Field(
        default="http://127.0.0.1:8000", description="Base URL of the ingest HTTP API."
    )
    api_key: str | None = Field(
        # The development key a fresh `scribe-ingest` without configured keys accepts
        # (loudly); any real deployment gives each caller its own key.
        default="dev-insecure-key",
        description="API key sent as `Authorization: Bearer <key>`.",
    )
    tenant_id: str = Field(
        default="default", description="Tenant of events published with `scribe publish`."
    )
