-- Credit grants (docs/ledger.md, "Grants"): every credit a user holds belongs to a grant with a
-- priority and an optional expiry; a debit burns live grants in order and the journal records
-- what it took from which grant.
--
-- Invariant (reconcile): "CreditBalance"."creditsRemaining" = sum(remaining) of the user's live
-- grants. The user's `overdraft/<user id>` grant is the debt: its remaining is <= 0.
-- Per grant: remaining = opening + the sum of what the journal's `grants` moved in or out of it.
CREATE TABLE worker.credit_grant (
    grant_id      TEXT PRIMARY KEY,          -- '<source>/<reference>' (starter/<clerk id>, plan/<payment>/<n>, …)
    user_id       TEXT NOT NULL,             -- "User".id, as in worker.journal
    source        TEXT NOT NULL CHECK (source IN ('starter', 'plan', 'pack', 'adjustment', 'promo',
                                                  'legacy', 'overdraft', 'rollover')),
    amount        INTEGER NOT NULL,          -- what it gave (or will give, while pending)
    remaining     INTEGER NOT NULL,
    opening       INTEGER NOT NULL DEFAULT 0, -- credits it holds that no journal movement gave (legacy)
    priority      INTEGER NOT NULL,          -- lower is used first
    effective_at  TIMESTAMPTZ NOT NULL,
    expires_at    TIMESTAMPTZ,               -- NULL: never
    rollover      INTEGER NOT NULL DEFAULT 0 CHECK (rollover >= 0), -- carried into a new grant at expiry, at most
    period_months INTEGER,                   -- a plan allowance's period (its rollover lasts one more)
    reference     TEXT,                      -- the payment, event or grant it comes from
    state         TEXT NOT NULL CHECK (state IN ('pending', 'live', 'expired', 'voided')),
    expired       INTEGER NOT NULL DEFAULT 0, -- credits that expired with it
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    ended_at      TIMESTAMPTZ,               -- expired or voided at
    CHECK (source <> 'overdraft' OR remaining <= 0),
    CHECK (source = 'overdraft' OR remaining >= 0)
);
-- the burn-down reads a user's live grants; the scheduler what is due
CREATE INDEX credit_grant_user_live_idx ON worker.credit_grant (user_id) WHERE state = 'live';
CREATE INDEX credit_grant_user_idx ON worker.credit_grant (user_id, ended_at DESC);
CREATE INDEX credit_grant_due_expiry_idx ON worker.credit_grant (expires_at) WHERE state = 'live' AND expires_at IS NOT NULL;
CREATE INDEX credit_grant_due_start_idx ON worker.credit_grant (effective_at) WHERE state = 'pending';
CREATE INDEX credit_grant_reference_idx ON worker.credit_grant (reference);
CREATE INDEX credit_grant_ended_idx ON worker.credit_grant (ended_at) WHERE state = 'expired';

-- What each movement took from or gave to which grant: [["<grant id>", delta], …], in the order
-- taken, summing to `delta`. NULL on movements written before grants existed (their credits are in the legacy
-- grant's opening).
ALTER TABLE worker.journal ADD COLUMN grants JSONB;

ALTER TABLE worker.journal DROP CONSTRAINT journal_kind_check;
ALTER TABLE worker.journal ADD CONSTRAINT journal_kind_check
    CHECK (kind IN ('usage', 'refund', 'adjustment', 'grant', 'grant_reversal', 'starter',
                    'grant_restore', 'debt_payment', 'grant_start', 'grant_expiry'));

-- Every existing balance becomes one non-expiring legacy grant (or, below zero, the user's debt).
INSERT INTO worker.credit_grant (grant_id, user_id, source, amount, remaining, opening, priority,
                                 effective_at, reference, state)
SELECT CASE WHEN cb."creditsRemaining" >= 0 THEN 'legacy/' ELSE 'overdraft/' END || cb."userId",
       cb."userId",
       CASE WHEN cb."creditsRemaining" >= 0 THEN 'legacy' ELSE 'overdraft' END,
       GREATEST(cb."creditsRemaining", 0), cb."creditsRemaining", cb."creditsRemaining",
       CASE WHEN cb."creditsRemaining" >= 0 THEN 10 ELSE 2147483647 END,
       now(), 'balance before grants', 'live'
FROM "CreditBalance" cb
WHERE cb."creditsRemaining" <> 0;
