"""Ingest settings (env prefix `SCRIBE_INGEST_`)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class IngestSettings(BaseSettings):
    """How the HTTP front door behaves."""

    model_config = SettingsConfigDict(env_prefix="SCRIBE_INGEST_", extra="ignore", frozen=True)

    host: str = Field(default="127.0.0.1", description="Address the HTTP server binds to.")
    port: int = Field(default=8000, ge=1, le=65535, description="HTTP port.")
    # --- connections (issue 14) ---
    max_header_bytes: int = Field(
        default=64 * 1024,
        ge=1024,
        description="Largest request head (request line and headers) in bytes; beyond it 431.",
    )
    max_headers: int = Field(
        default=100, ge=8, le=10_000, description="Most request headers; beyond it 431."
    )
    header_timeout_seconds: float = Field(
        default=10.0,
        gt=0,
        description=(
            "Time a client has to send a complete request head, from connecting or from the "
            "previous answer on a kept-alive connection; then 408 and the connection closes "
            "(slowloris)."
        ),
    )
    keep_alive_timeout_seconds: float = Field(
        default=5.0, gt=0, description="An idle kept-alive connection is closed after this long."
    )
    max_connections: int = Field(
        default=1000,
        ge=1,
        description=(
            "Connections (and requests in progress) the server holds at once; beyond it new "
            "requests get 503 (uvicorn's `limit_concurrency`)."
        ),
    )
    backlog: int = Field(
        default=2048, ge=1, description="Connections the kernel queues before ingest accepts them."
    )
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
    upload_idle_timeout_seconds: float = Field(
        default=30.0,
        gt=0,
        description=(
            "Longest pause between two chunks of a request body; beyond it 408 "
            "`upload_too_slow`, the partial upload removed and the tenant's slot freed."
        ),
    )
    upload_min_bytes_per_second: int = Field(
        default=1024,
        ge=0,
        description=(
            "Slowest average rate a request body may arrive at once the grace period is "
            "over (0: no minimum); below it 408 `upload_too_slow`."
        ),
    )
    upload_rate_grace_seconds: float = Field(
        default=30.0,
        ge=0,
        description="How long a body may arrive below the minimum rate before it counts.",
    )
    min_free_bytes: int = Field(
        default=1024**3,
        ge=0,
        description=(
            "Free space the media root's filesystem must keep; below it `/readyz` answers 503 "
            "(uploads that still come and find the disk full get 507 `insufficient_storage`)."
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
    cursor_secret: SecretStr | None = Field(
        default=None,
        description=(
            "Secret that signs paging cursors (HMAC-SHA256), so a forged or edited cursor is "
            "refused (422 `invalid_cursor`). Give every replica the same one. Unset, each "
            "process makes its own at start: cursors then stop working after a restart and "
            "on another replica (clients start again from the first page)."
        ),
    )
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
    # --- OpenAI-compatible API (issue 18) ---
    served_models: tuple[str, ...] = Field(
        default=("tiny.en",),
        min_length=1,
        description=(
            "Models the transcriber fleet serves (JSON list), the default first: one per pool "
            "of workers you run (`SCRIBE_TRANSCRIBER_MODEL`). `GET /v1/models` lists them; a "
            "submission naming another is refused (422 `model_unavailable`, 400 on the "
            "OpenAI-compatible routes, which also take `openai_model_aliases`). A name ending "
            "in `.en` is English-only: translation or a language other than `en` with it is "
            "refused as `unsupported_option`. A job naming no model goes to the first, which "
            "must be the transcribers' `SCRIBE_TRANSCRIBER_DEFAULT_MODEL`."
        ),
    )
    openai_model_aliases: tuple[str, ...] = Field(
        default=("whisper-1",),
        description=(
            "OpenAI model names (JSON list) that mean the default served model, so clients "
            "that always send `whisper-1` work unchanged."
        ),
    )
    openai_wait_seconds: float = Field(
        default=300.0,
        gt=0,
        le=3600,
        description=(
            "How long `POST /v1/audio/transcriptions` and `/translations` wait for the job's "
            "outcome; then 504 `transcription_pending` with the job id to poll (the job goes "
            "on). Keep it under your reverse proxy's read timeout."
        ),
    )
    max_webhooks_per_tenant: int = Field(
        default=20,
        ge=1,
        le=10_000,
        description=(
            "Live webhook endpoints a tenant may have; registering one more is 409 "
            "`webhook_limit_reached` (every job event becomes a delivery per endpoint)."
        ),
    )
    openai_max_waiting_per_tenant: int = Field(
        default=64,
        ge=1,
        le=100_000,
        description=(
            "Requests of one tenant that may wait on `POST /v1/audio/transcriptions` and "
            "`/translations` at once on this replica (each holds a connection until its "
            "job ends); beyond it 429 `too_many_waiting` with Retry-After, before the "
            "upload. Keep the sum over tenants under `max_connections`."
        ),
    )
    openai_poll_max_interval_seconds: float = Field(
        default=1.0,
        gt=0,
        le=60,
        description=(
            "Longest pause between two reads of a waited-on job's status (the pause starts "
            "at 0.05 s and grows by half each time): the most latency the wait adds."
        ),
    )
