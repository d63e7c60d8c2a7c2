-- Credit holds (docs/ledger.md, "Holds"): credits set aside for an AI call in progress, taken
-- from the user's grants in burn order the moment the hold is placed (journal kind `hold`, so
-- "CreditBalance"."creditsRemaining" shows them gone at once), then resolved exactly once:
-- captured (kind `capture`: what was held but not used comes back, or what was used beyond it
-- is taken), released by the app or expired by the grant sweep (kind `release`: everything
-- comes back). Every change to a hold row is made under its user's "CreditBalance" row lock.
CREATE TABLE worker.credit_hold (
    hold_id        TEXT PRIMARY KEY,           -- the app's id: an idempotency key, in worker.event_log too
    user_id        TEXT NOT NULL,              -- "User".id
    clerk_user_id  TEXT NOT NULL,
    credits        INTEGER NOT NULL CHECK (credits > 0),
    operation_type TEXT,                       -- what the capture's "UsageHistory" row says, if it names none
    details        JSONB,
    over_capture   TEXT NOT NULL DEFAULT 'overflow' CHECK (over_capture IN ('reject', 'cap', 'overflow')),
    request_hash   TEXT NOT NULL,              -- sha256 of the request: the same id with another one is a 409
    allocation     JSONB NOT NULL,             -- [[grant id, delta], …]: what the hold took, in order
    status         TEXT NOT NULL DEFAULT 'held'
                   CHECK (status IN ('held', 'captured', 'released', 'expired')),
    captured       INTEGER,                    -- credits the usage was charged
    usage_id       TEXT,                       -- "UsageHistory".id of the capture
    taken          JSONB,                      -- what that usage took from which grant (refunds give it back)
    resolved_by    TEXT,                       -- 'http', 'sweep', 'ops', or the usage event's id
    expires_at     TIMESTAMPTZ NOT NULL,
    created_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    resolved_at    TIMESTAMPTZ,
    CHECK ((status = 'held') = (resolved_at IS NULL)),
    CHECK ((status = 'captured') = (usage_id IS NOT NULL))
);
-- the sweep: open holds by expiry
CREATE INDEX credit_hold_due_idx ON worker.credit_hold (expires_at) WHERE status = 'held';
-- a user's open holds (every hold transaction, balance reads), and all of them newest first
-- (`holds list --user`, user show)
CREATE INDEX credit_hold_user_open_idx ON worker.credit_hold (user_id) WHERE status = 'held';
CREATE INDEX credit_hold_user_idx ON worker.credit_hold (user_id, created_at DESC);
-- a refund of a captured usage finds what the usage took
CREATE UNIQUE INDEX credit_hold_usage_idx ON worker.credit_hold (usage_id) WHERE usage_id IS NOT NULL;
-- ops: recently resolved holds by outcome
CREATE INDEX credit_hold_resolved_idx ON worker.credit_hold (resolved_at, status) WHERE status <> 'held';

ALTER TABLE worker.journal DROP CONSTRAINT journal_kind_check;
ALTER TABLE worker.journal ADD CONSTRAINT journal_kind_check
    CHECK (kind IN ('usage', 'refund', 'adjustment', 'grant', 'grant_reversal', 'starter',
                    'grant_restore', 'debt_payment', 'grant_start', 'grant_expiry',
                    'hold', 'capture', 'release'));
