#!/usr/bin/env bash
# Runs once, when the postgres image initialises an empty data directory
# (mounted at /docker-entrypoint-initdb.d). Creates Scribe's two roles:
#   scribe_indexer  the only writer: owns the `scribe` database, so its migrations can
#                   create tables, and grants the reader SELECT on them;
#   scribe_reader   SELECT only: ingest's read API connects as it.
# Passwords come from the environment; nothing here has a default password.
set -euo pipefail

: "${SCRIBE_INDEXER_DB_PASSWORD:?set SCRIBE_INDEXER_DB_PASSWORD}"
: "${SCRIBE_READER_DB_PASSWORD:?set SCRIBE_READER_DB_PASSWORD}"
database="${POSTGRES_DB:-scribe}"
reader="${SCRIBE_INDEXER_READER_ROLE:-scribe_reader}"

psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$database" \
  -v indexer_password="$SCRIBE_INDEXER_DB_PASSWORD" \
  -v reader_password="$SCRIBE_READER_DB_PASSWORD" \
  -v reader="$reader" \
  -v database="$database" <<'SQL'
SELECT format('CREATE ROLE scribe_indexer LOGIN PASSWORD %L', :'indexer_password')
WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'scribe_indexer') \gexec
SELECT format('CREATE ROLE %I LOGIN PASSWORD %L', :'reader', :'reader_password')
WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = :'reader') \gexec
SELECT format('ALTER DATABASE %I OWNER TO scribe_indexer', :'database') \gexec
-- The reader must never create objects, in any database it can reach.
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
-- Lets full-text search use its GIN index under row-level security (why: migration 0002);
-- it needs a superuser, which the indexer's role is not. This database only.
ALTER FUNCTION pg_catalog.ts_match_vq(tsvector, tsquery) LEAKPROOF;
SQL
