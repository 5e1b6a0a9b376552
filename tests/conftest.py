"""Shared fixtures for integration and end-to-end tests: real RabbitMQ, PostgreSQL and S3."""

from tests.support.fixtures import (
    amqp_url,
    database_disposer,
    database_url,
    postgres_server,
    rabbit_server,
    s3_bucket,
    seaweed,
    vhost_disposer,
)

__all__ = [
    "amqp_url",
    "database_disposer",
    "database_url",
    "postgres_server",
    "rabbit_server",
    "s3_bucket",
    "seaweed",
    "vhost_disposer",
]
