-- Least-privilege role for pedro-worker (run as the database owner, after the app's Prisma
-- migrations and `pedro-worker migrate`, and again after every new worker migration):
--
--   psql "$OWNER_DATABASE_URL" -f sql/roles/least_privilege.sql
--   psql "$OWNER_DATABASE_URL" -c "ALTER ROLE pedro_worker PASSWORD '…'"
--
-- The worker then connects as pedro_worker: it can read what it relies on and insert/update
-- exactly the tables it writes. No DELETE, no TRUNCATE, no DDL: migrations run as the owner
-- (Procfile `release`), never as this role. The integration tests run the worker under it.

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'pedro_worker') THEN
        CREATE ROLE pedro_worker LOGIN;
    END IF;
END
$$;

REVOKE CREATE ON SCHEMA public FROM pedro_worker;
GRANT USAGE ON SCHEMA public TO pedro_worker;
GRANT USAGE ON SCHEMA worker TO pedro_worker;

-- The app's tables: read the configuration, write the ledger and the user/billing/storage rows.
GRANT SELECT ON "AdminSettings", "Plan" TO pedro_worker;
GRANT SELECT, INSERT, UPDATE ON "User", "CreditBalance", "UsageHistory", "StorageObject", "SubscriptionEvent"
    TO pedro_worker;

-- Worker-owned tables: everything in schema worker, except that migration records are read-only.
GRANT SELECT, INSERT, UPDATE ON ALL TABLES IN SCHEMA worker TO pedro_worker;
REVOKE INSERT, UPDATE ON worker.schema_migrations FROM pedro_worker;
GRANT USAGE ON ALL SEQUENCES IN SCHEMA worker TO pedro_worker;
