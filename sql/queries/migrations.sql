-- lock_migrations --
-- Serialize concurrent `migrate` runs for the rest of the transaction. No parameters.
SELECT pg_advisory_xact_lock(hashtext('pedro-worker.migrate'))

-- create_migrations_table --
-- Bootstrap the worker schema and its migration record. No parameters.
CREATE SCHEMA IF NOT EXISTS worker;
CREATE TABLE IF NOT EXISTS worker.schema_migrations (
    version    TEXT PRIMARY KEY,
    checksum   TEXT NOT NULL,
    applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
)

-- list_applied_migrations --
-- Every applied migration with its checksum. No parameters.
SELECT version, checksum FROM worker.schema_migrations ORDER BY version

-- record_migration --
-- $1 version text, $2 checksum text (sha256 hex of the file)
INSERT INTO worker.schema_migrations (version, checksum) VALUES ($1, $2)

-- app_tables_present --
-- Which of the app's tables exist in the current schema. $1 table names text[]
SELECT c.relname
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = current_schema() AND c.relkind = 'r' AND c.relname = ANY($1::text[])

-- migrations_table_exists --
-- Whether `migrate` ever ran here. No parameters.
SELECT to_regclass('worker.schema_migrations') IS NOT NULL
