"""Shared fixtures for integration and end-to-end tests: real RabbitMQ and PostgreSQL."""

from tests.support.fixtures import amqp_url, database_url, postgres_server, rabbit_server

__all__ = ["amqp_url", "database_url", "postgres_server", "rabbit_server"]
