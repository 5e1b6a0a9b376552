"""Schema migrations, roles and tenants: everything PostgreSQL needs before events flow.

Migrations are plain SQL files `migrations/NNNN_name.sql`, applied in order, each in its
own transaction together with its `schema_migrations` record. A session advisory lock
serialises concurrent starts (several indexer replicas, or `scribe-indexer migrate` while
one runs); an applied file whose text changed is refused rather than silently skipped.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from importlib import resources
from typing import Final
from urllib.parse import unquote, urlsplit, urlunsplit

import asyncpg
import structlog

log = structlog.get_logger(__name__)

MIGRATION_LOCK_KEY: Final = 0x5C21BE_1D3E
"""Session advisory-lock key held while migrating (any constant unique to Scribe)."""

_FILE_NAME: Final = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
_CONNECT_TIMEOUT: Final = 10.0


class MigrationError(RuntimeError):
    """The database's migration history disagrees with the migrations shipped."""


@dataclass(frozen=True, slots=True)
class Migration:
    """One versioned SQL file."""

    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        """SHA-256 of the file's text: an applied migration must never change."""
        return hashlib.sha256(self.sql.encode()).hexdigest()


def shipped_migrations() -> list[Migration]:
    """The migrations in this package, in version order."""
    found: list[Migration] = []
    for entry in resources.files("indexer").joinpath("migrations").iterdir():
        match = _FILE_NAME.match(entry.name)
        if match:
            found.append(Migration(int(match[1]), match[2], entry.read_text(encoding="utf-8")))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise MigrationError(f"duplicate migration versions: {versions}")
    return found


def database_name(url: str) -> str:
    """The database a PostgreSQL URL names."""
    name = unquote(urlsplit(url).path.lstrip("/"))
    if not name:
        raise ValueError(f"the database URL names no database: {url!r}")
    return name


def _maintenance_url(url: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/postgres", parts.query, parts.fragment))


async def ensure_database(url: str) -> bool:
    """Create the URL's database when it does not exist; True if it was created."""
    try:
        conn = await asyncpg.connect(url, timeout=_CONNECT_TIMEOUT)
    except asyncpg.InvalidCatalogNameError:
        pass
    else:
        await conn.close()
        return False
    name = database_name(url)
    admin = await asyncpg.connect(_maintenance_url(url), timeout=_CONNECT_TIMEOUT)
    try:
        statement = await admin.fetchval("SELECT format('CREATE DATABASE %I', $1::text)", name)
        await admin.execute(statement)
    except (asyncpg.DuplicateDatabaseError, asyncpg.UniqueViolationError):
        # Another replica created it first (a close race surfaces as the catalog's unique key).
        return False
    finally:
        await admin.close()
    log.info("database_created", database=name)
    return True


async def apply_migrations(
    conn: asyncpg.Connection, migrations: list[Migration] | None = None
) -> list[Migration]:
    """Apply what is missing, under the advisory lock; returns what was applied now."""
    migrations = shipped_migrations() if migrations is None else migrations
    await conn.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK_KEY)
    try:
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version integer PRIMARY KEY,"
            " name text NOT NULL,"
            " checksum text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        applied = {
            r["version"]: r["checksum"]
            for r in await conn.fetch("SELECT version, checksum FROM schema_migrations")
        }
        done: list[Migration] = []
        for migration in migrations:
            if migration.version in applied:
                if applied[migration.version] != migration.checksum:
                    raise MigrationError(
                        f"migration {migration.version:04d}_{migration.name} was changed "
                        "after it was applied; add a new migration instead"
                    )
                continue
            async with conn.transaction():
                await conn.execute(migration.sql)
                await conn.execute(
                    "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                    migration.version,
                    migration.name,
                    migration.checksum,
                )
            log.info("migration_applied", version=migration.version, name=migration.name)
            done.append(migration)
        unknown = sorted(set(applied) - {m.version for m in migrations})
        if unknown:
            # A newer indexer migrated this database; running older code against it is
            # how data gets corrupted, so say so loudly (but do not refuse: reads still work).
            log.warning("database_ahead_of_code", unknown_versions=unknown)
        return done
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK_KEY)


async def ensure_reader_role(
    conn: asyncpg.Connection, role: str, password: str | None = None
) -> None:
    """Create the SELECT-only role if missing and grant it read access to this database.

    Roles are cluster-wide, so several databases (or replicas) may race to create it; the
    loser's duplicate error is the expected outcome. Where the writer may not create roles
    (`infra/postgres` made it already), an existing role is simply granted to.
    """
    exists = await conn.fetchval("SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)", role)
    if not exists:
        create = await conn.fetchval(
            "SELECT format('CREATE ROLE %I LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE', $1::text)",
            role,
        )
        try:
            await conn.execute(create)
            log.info("reader_role_created", role=role)
        except (asyncpg.DuplicateObjectError, asyncpg.UniqueViolationError):
            pass
    if password is not None:
        alter = await conn.fetchval(
            "SELECT format('ALTER ROLE %I WITH LOGIN PASSWORD %L', $1::text, $2::text)",
            role,
            password,
        )
        await conn.execute(alter)
    grants = await conn.fetchval(
        "SELECT format("
        "'GRANT CONNECT ON DATABASE %1$I TO %2$I; "
        "GRANT USAGE ON SCHEMA public TO %2$I; "
        "GRANT SELECT ON ALL TABLES IN SCHEMA public TO %2$I; "
        "ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON TABLES TO %2$I', "
        "current_database(), $1::text)",
        role,
    )
    await conn.execute(grants)


async def seed_tenants(conn: asyncpg.Connection, tenants: tuple[str, ...]) -> None:
    """Make sure every configured tenant exists (never removes one: rows refer to it)."""
    await conn.executemany(
        "INSERT INTO tenants (tenant_id) VALUES ($1) ON CONFLICT DO NOTHING",
        [(t,) for t in tenants],
    )


async def warn_if_search_index_unusable(conn: asyncpg.Connection) -> None:
    """Say so when row-level security keeps search off its GIN index (see migration 0002)."""
    leakproof = await conn.fetchval(
        "SELECT proleakproof FROM pg_proc "
        "WHERE oid = 'pg_catalog.ts_match_vq(tsvector, tsquery)'::regprocedure"
    )
    if not leakproof:
        log.warning(
            "search_index_unusable_under_rls",
            message=(
                "search scans every segment of a tenant instead of the GIN index; as a "
                "superuser, run in this database: ALTER FUNCTION "
                "pg_catalog.ts_match_vq(tsvector, tsquery) LEAKPROOF"
            ),
        )


async def prepare_database(
    url: str,
    *,
    reader_role: str,
    reader_password: str | None,
    tenants: tuple[str, ...],
) -> list[Migration]:
    """Create the database if needed, migrate, ensure the reader role, seed the tenants."""
    await ensure_database(url)
    conn = await asyncpg.connect(url, timeout=_CONNECT_TIMEOUT)
    try:
        # Grants on one object from two sessions at once can fail ("tuple concurrently
        # updated"), so the whole preparation runs under the (re-entrant) migration lock.
        await conn.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK_KEY)
        applied = await apply_migrations(conn)
        await ensure_reader_role(conn, reader_role, reader_password)
        await seed_tenants(conn, tenants)
        await conn.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK_KEY)
        await warn_if_search_index_unusable(conn)
    finally:
        await conn.close()
    return applied
