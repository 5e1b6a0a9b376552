"""Settings shared by every service (env prefix `SCRIBE_`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Final, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from contracts.envelope import TenantId
from scribe_runtime.objectstore import MediaUrl, S3Location, parse_grants

DEFAULT_MAX_DURATION_SECONDS: Final = 36000.0
"""`SCRIBE_MAX_DURATION_SECONDS`'s default: 10 hours."""


class SharedSettings(BaseSettings):
    """What every Scribe process needs: where the broker, database and media are."""

    model_config = SettingsConfigDict(env_prefix="SCRIBE_", extra="ignore", frozen=True)

    amqp_url: str = Field(
        default="amqp://guest:guest@127.0.0.1:5672/",
        description=(
            "RabbitMQ URL, including the vhost (`amqp://user:pass@host:5672/vhost`). A "
            "cluster: one load-balanced name, or its nodes' URLs comma-separated (each "
            "connection goes to the next node when one is lost; a comma in a password is "
            "written `%2C`)."
        ),
    )
    amqp_quorum_initial_group_size: int | None = Field(
        default=None,
        ge=1,
        description=(
            "Replicas of each quorum queue Scribe declares (`x-quorum-initial-group-size`): "
            "3 on a 3-node cluster, so a queue survives the loss of one node. Read when a "
            "queue is created; existing queues keep their members (`rabbitmq-queues grow`). "
            "Default: RabbitMQ's own (its own choice of members)."
        ),
    )
    database_url: str = Field(
        default="postgresql://postgres@127.0.0.1:5432/scribe",
        description="PostgreSQL URL of the indexer's writer role (the only writer).",
    )
    media_root: Path = Field(
        default=Path("./.scribe/media"),
        description="Shared media store; `file://` URIs must resolve under it.",
    )
    media_url: str | None = Field(
        default=None,
        description=(
            "Where media lives: `file:///srv/scribe/media` (a shared filesystem) or "
            "`s3://bucket/prefix` (S3-compatible object storage; endpoint, region and "
            "credentials from the standard `AWS_*` variables). Default: `file://` of "
            "`media_root`."
        ),
    )
    s3_tenant_prefixes: dict[str, list[str]] = Field(
        default_factory=dict,
        description=(
            'JSON {"<tenant>": ["s3://bucket/prefix/", ...]}: the buckets and prefixes, '
            "besides its own prefix of the media store, whose objects a tenant's jobs may "
            "name (events from external producers, bucket notifications). Any other "
            "`s3://` URI fails with `source_forbidden`, before anything is fetched."
        ),
    )
    allowed_private_endpoints: list[str] = Field(
        default_factory=list,
        description=(
            "`host:port` pairs that `http(s)://` audio URLs may reach although they resolve "
            "to private addresses (an object store inside the cluster serving presigned "
            "URLs). The configured S3 endpoint is always allowed; every other private, "
            "loopback or link-local address stays refused."
        ),
    )

    max_duration_seconds: float = Field(
        default=DEFAULT_MAX_DURATION_SECONDS,
        gt=0,
        description=(
            "Longest audio Scribe accepts, in seconds (default 10 h). Ingest refuses a "
            "longer upload when it probes it (413 `audio_too_long`); a transcriber fails "
            "a longer job from any producer with `audio_too_long` before any work. One "
            "variable, so the two never disagree. Long audio is split into chunks "
            "(`SCRIBE_TRANSCRIBER_CHUNK_*`), so this bounds time and disk, not memory."
        ),
    )

    def media(self) -> MediaUrl:
        """The configured media store (`media_url`, else `file://<media_root>`)."""
        return MediaUrl.parse(self.media_url, self.media_root)

    def s3_grants(self) -> dict[str, tuple[S3Location, ...]]:
        """`s3_tenant_prefixes` as locations."""
        return parse_grants(self.s3_tenant_prefixes)

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        default="INFO", description="Minimum level of log lines."
    )
    log_format: Literal["auto", "json", "console"] = Field(
        default="auto", description="`auto`: console on a TTY, JSON otherwise."
    )
    webhooks_allowed_hosts: Annotated[frozenset[str], NoDecode] = Field(
        default=frozenset(),
        description=(
            "Comma-separated hosts (names or addresses, as written in the URL) a webhook "
            "endpoint may name although they are not public: the SSRF guard lets these "
            "through, at registration (ingest) and at delivery (scribe-webhooks). Empty: "
            "public addresses only."
        ),
    )

    @field_validator("webhooks_allowed_hosts", mode="before")
    @classmethod
    def _split_hosts(cls, value: object) -> object:
        if isinstance(value, str):
            return frozenset(p.strip().lower() for p in value.split(",") if p.strip())
        return value

    tenants: Annotated[tuple[TenantId, ...], NoDecode] = Field(
        default=("default",),
        min_length=1,
        description=(
            "Comma-separated tenants Scribe serves. Every service reads the same list: the "
            "transcriber dead-letters an upload of any other tenant (`unknown_tenant`) "
            "without transcribing it, the indexer seeds the tenants table with it. List "
            "every tenant that ingest's API keys map to."
        ),
    )

    @field_validator("tenants", mode="before")
    @classmethod
    def _split_commas(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value
