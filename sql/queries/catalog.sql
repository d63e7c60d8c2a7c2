-- list_columns --
-- Columns of the given tables in the current schema. $1 table names text[]
SELECT c.relname AS table_name, a.attname AS column_name,
       format_type(a.atttypid, a.atttypmod) AS data_type, a.attnotnull AS not_null
FROM pg_attribute a
JOIN pg_class c ON c.oid = a.attrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = current_schema() AND c.relkind = 'r' AND c.relname = ANY($1::text[])
  AND a.attnum > 0 AND NOT a.attisdropped

-- list_enum_labels --
-- Labels of an enum type in the current schema, in order. $1 type name text
SELECT e.enumlabel
FROM pg_enum e
JOIN pg_type t ON t.oid = e.enumtypid
JOIN pg_namespace n ON n.oid = t.typnamespace
WHERE n.nspname = current_schema() AND t.typname = $1
ORDER BY e.enumsortorder

-- list_unique_columns --
-- Single-column unique indexes of the given tables (the worker's ON CONFLICT targets). $1 text[]
SELECT c.relname AS table_name, a.attname AS column_name
FROM pg_index i
JOIN pg_class c ON c.oid = i.indrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = i.indkey[0]
WHERE n.nspname = current_schema() AND i.indisunique AND i.indnatts = 1
  AND c.relname = ANY($1::text[])

-- ping --
-- Is the server answering? (readiness probes) No parameters.
SELECT 1
