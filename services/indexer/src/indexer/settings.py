"""Indexer settings (env prefix `SCRIBE_INDEXER_`); the database URL is the shared one."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from contracts.envelope import TenantId
from scribe_runtime.settings import SharedSettings


class IndexerSettings(BaseSettings):
    """How the indexer prepares PostgreSQL and consumes job events."""

    model_config = SettingsConfigDict(env_prefix="SCRIBE_INDEXER_", extra="ignore", frozen=True)

    tenants: Annotated[tuple[TenantId, ...] | None, NoDecode] = Field(
        default=None,
        description=(
            "Comma-separated tenants seeded into the tenants table at start; events of any "
            "other tenant are dead-lettered. Default: the shared `SCRIBE_TENANTS`, which the "
            "transcriber reads too; set this only to seed more tenants than the workers know."
        ),
    )
    reader_role: str = Field(
        default="scribe_reader",
        min_length=1,
        max_length=63,
        description="PostgreSQL role (LOGIN, SELECT only) that ingest's read API connects as.",
    )
    reader_password: SecretStr | None = Field(
        default=None,
        description="Password set on the reader role; leave unset for trust/peer auth.",
    )
    pool_size: int = Field(default=4, ge=1, le=100, description="Writer connections.")
    prefetch: int = Field(
        default=16, ge=1, le=1000, description="Unacknowledged events buffered per consumer."
    )
    window_linger_ms: float = Field(
        default=0.0,
        ge=0.0,
        le=1000.0,
        description=(
            "How long the first event of a window waits for others before the window is "
            "written in one transaction (the events in hand while the previous window was "
            "being written join it anyway)."
        ),
    )
    retry_attempts: int = Field(
        default=6,
        ge=1,
        le=20,
        description=(
            "Tries per event when PostgreSQL is unreachable, with exponential backoff, before "
            "the event is handed back to RabbitMQ for redelivery."
        ),
    )

    retain_days: Annotated[dict[TenantId, Annotated[int, Field(ge=1)]], NoDecode] = Field(
        default_factory=dict,
        description=(
            "Per-tenant retention, `tenant=days` comma-separated (e.g. `acme=30,beta=365`): "
            "completed, failed and cancelled jobs are deleted that many days after they "
            "finished. A tenant not named keeps its jobs forever (the default)."
        ),
    )
    retention_interval_seconds: float = Field(
        default=3600.0,
        gt=0,
        description="How often the indexer looks for jobs past their tenant's retention.",
    )

    health_host: str = Field(
        default="127.0.0.1",
        description="Address of the `/healthz`, `/readyz`, `/metrics` endpoint (compose: 0.0.0.0).",
    )
    health_port: int | None = Field(
        default=9102,
        ge=0,
        le=65535,
        description="Port of the health endpoint; 0 picks a free one, empty turns it off.",
    )

    @field_validator("retain_days", mode="before")
    @classmethod
    def _split_pairs(cls, value: object) -> object:
        if not isinstance(value, str):
            return value
        pairs: dict[str, str] = {}
        for part in (p.strip() for p in value.split(",")):
            if not part:
                continue
            tenant, sep, days = part.partition("=")
            if not sep:
                raise ValueError(f"{part!r} is not `tenant=days`")
            pairs[tenant.strip()] = days.strip()
        return pairs

    def seeded_tenants(self, shared: SharedSettings) -> tuple[str, ...]:
        """The tenants to seed: this setting when given, else the shared `SCRIBE_TENANTS`."""
        return self.tenants if self.tenants is not None else shared.tenants

    @field_validator("tenants", mode="before")
    @classmethod
    def _split_commas(cls, value: object) -> object:
        if isinstance(value, str) and not value.strip():
            return None
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value
