-- Worker-owned ledger objects. They live in the `worker` schema so that Prisma, which manages
-- `public`, never sees or drops them.

-- Idempotency record: one row per event the worker has decided on (applied or rejected),
-- written in the same transaction as the event's effects.
CREATE TABLE worker.event_log (
    event_id      TEXT PRIMARY KEY,
    event_type    TEXT NOT NULL,
    payload_hash  TEXT NOT NULL,
    clerk_user_id TEXT,
    processed_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Every change to a "CreditBalance".creditsRemaining, exactly one row per event.
-- For each user: creditsRemaining = balance_opening.opening + sum(delta).
CREATE TABLE worker.journal (
    event_id    TEXT PRIMARY KEY,
    user_id     TEXT NOT NULL,
    kind        TEXT NOT NULL CHECK (kind IN ('usage', 'refund', 'adjustment', 'grant', 'grant_reversal')),
    delta       INTEGER NOT NULL,
    refund_of   TEXT,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX journal_user_id_idx ON worker.journal (user_id);
CREATE INDEX journal_refund_of_idx ON worker.journal (refund_of) WHERE refund_of IS NOT NULL;

-- The balance a user had when the worker first changed it (or created it).
CREATE TABLE worker.balance_opening (
    user_id    TEXT PRIMARY KEY,
    opening    INTEGER NOT NULL,
    opened_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Events the worker refused, durably, with the reason (overdraft, refund too large, bad input…).
CREATE TABLE worker.rejection (
    id          BIGSERIAL PRIMARY KEY,
    event_id    TEXT,
    event_type  TEXT,
    reason      TEXT NOT NULL,
    detail      TEXT,
    payload     JSONB,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX rejection_event_reason_key ON worker.rejection (event_id, reason);
CREATE INDEX rejection_reason_created_idx ON worker.rejection (reason, created_at);
