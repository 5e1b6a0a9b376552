"""Ingest settings (env prefix `SCRIBE_INGEST_`)."""

from __future__ import annotations

from pathlib import Path

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
    # --- security (issue 8) ---
    api_keys: dict[str, str] = Field(
        default_factory=dict,
        description=(
            'API keys as JSON {"<sha256-hex of the key>": "<tenant>"} (make entries with '
            "`scribe-ingest hash-key`). With none here nor in the keys file, only the public "
            "development key `dev-insecure-key` (tenant `default`) works, and start-up warns."
        ),
    )
    api_keys_file: Path | None = Field(
        default=None,
        description="File of `<sha256-hex> <tenant>` lines, merged with `api_keys`; read at start.",
    )
    max_concurrent_uploads_per_tenant: int = Field(
        default=8,
        ge=1,
        le=10_000,
        description=(
            "Submissions one tenant may have in flight on this replica; beyond it 429 "
            "`too_many_uploads` with Retry-After."
        ),
    )
    # --- uploads (issue 3) ---
    max_upload_bytes: int = Field(
        default=2 * 1024**3,
        gt=0,
        description="Largest upload accepted, in bytes; enforced while streaming (413).",
    )
    max_duration_seconds: float = Field(
        default=4 * 3600.0,
        gt=0,
        description="Longest audio accepted, in seconds, as decoded at upload (413).",
    )
    allowed_models: tuple[str, ...] = Field(
        default=(
            "tiny",
            "tiny.en",
            "base",
            "base.en",
            "small",
            "small.en",
            "medium",
            "medium.en",
            "large-v1",
            "large-v2",
            "large-v3",
            "large",
            "large-v3-turbo",
            "turbo",
            "distil-small.en",
            "distil-medium.en",
            "distil-large-v2",
            "distil-large-v3",
        ),
        description=(
            "Model names a caller may ask for (JSON list). Names only, never paths: "
            "a worker maps them to its own model files."
        ),
    )
    presigned_upload_expires_seconds: int = Field(
        default=3600,
        ge=60,
        le=7 * 24 * 3600,
        description="How long a `POST /v1/uploads` URL may be used to PUT the audio.",
    )
    publish_timeout_seconds: float = Field(
        default=10.0,
        gt=0,
        description="How long an upload waits for the broker's confirm before answering 503.",
    )
    # --- reads (issue 5) ---
    reader_pool_size: int = Field(
        default=10, ge=1, le=100, description="Most connections the read endpoints hold open."
    )
    database_timeout_seconds: float = Field(
        default=5.0,
        gt=0,
        description=(
            "Connect / pool wait / statement limit for reads; beyond it a read answers 503."
        ),
    )
    search_candidate_limit: int = Field(
        default=1000,
        ge=10,
        le=1_000_000,
        description=(
            "Matches a search ranks at most. A common word can match hundreds of thousands of "
            "segments; ranking only the first N keeps search fast, at the cost of the best "
            "hit possibly lying outside those N (hits then say `approximate: true`)."
        ),
    )
