-- Billing that fits Asaas (issue 17): subscription state, credit packs and installments,
-- reversals that always take credits back (partial refunds, won disputes, cash undone), debts.
--
-- worker.billing_payment becomes the facts of one Asaas payment, merged from its events by event
-- time; what a payment (or an installment plan) granted moves to worker.billing_grant.

ALTER TABLE worker.billing_payment
    ADD COLUMN customer_id        TEXT,
    ADD COLUMN subscription_id    TEXT,
    ADD COLUMN installment_id     TEXT,
    ADD COLUMN installment_number INTEGER,
    ADD COLUMN installment_count  INTEGER,
    ADD COLUMN payment_link_id    TEXT,
    ADD COLUMN plan_ref           TEXT,          -- the plan the payment's own externalReference names
    ADD COLUMN value_cents        BIGINT,
    ADD COLUMN value_at           TIMESTAMPTZ,   -- event time of the event value_cents came from
    ADD COLUMN created_at         TIMESTAMPTZ,   -- when Asaas created the payment
    ADD COLUMN paid_last_at       TIMESTAMPTZ,   -- latest PAYMENT_CONFIRMED / PAYMENT_RECEIVED time
    ADD COLUMN refunded_cents     BIGINT,        -- largest cumulative refund seen
    ADD COLUMN refunded_full_at   TIMESTAMPTZ,   -- earliest PAYMENT_REFUNDED time
    ADD COLUMN chargeback_at      TIMESTAMPTZ,   -- time of the latest chargeback signal
    ADD COLUMN chargeback_open    BOOLEAN,       -- that signal opened (true) or closed (false) it
    ADD COLUMN cash_undone_at     TIMESTAMPTZ,   -- latest PAYMENT_RECEIVED_IN_CASH_UNDONE time
    ADD COLUMN plan_override      TEXT;          -- the plan ops named (`billing regrant --plan`)

-- Before this version a refund and a chargeback were one fact: the earliest reversal time.
UPDATE worker.billing_payment SET refunded_full_at = reversed_at, paid_last_at = paid_at;
CREATE INDEX billing_payment_installment_idx ON worker.billing_payment (installment_id)
    WHERE installment_id IS NOT NULL;

-- One grant per payment (one-off, subscription) or per installment plan: what it gave and how
-- much of it has been taken back. The journal rows carry the movements; this is their total.
CREATE TABLE worker.billing_grant (
    grant_id          TEXT PRIMARY KEY,   -- the payment id, or 'installment:' || installment id
    clerk_user_id     TEXT NOT NULL,
    user_id           TEXT NOT NULL,
    kind              TEXT NOT NULL CHECK (kind IN ('subscription', 'one_off', 'installment')),
    outcome           TEXT NOT NULL CHECK (outcome IN ('granted', 'refused')),
    plan_id           TEXT,
    cycle             TEXT,
    credits           INTEGER NOT NULL DEFAULT 0,   -- what the grant gave
    reversed_credits  INTEGER NOT NULL DEFAULT 0,   -- how much of it is taken back now
    debt_recorded     INTEGER NOT NULL DEFAULT 0,   -- shortfall its reversals recorded as debt
    moves             INTEGER NOT NULL DEFAULT 0,   -- reversal/restore movements written so far
    note              TEXT,                         -- e.g. amount_differs_from_price
    granted_at        TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at        TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX billing_grant_user_idx ON worker.billing_grant (clerk_user_id);

INSERT INTO worker.billing_grant
    (grant_id, clerk_user_id, user_id, kind, outcome, plan_id, credits, reversed_credits, moves)
SELECT p.payment_id, p.clerk_user_id, j.user_id, 'subscription', 'granted', p.plan_id,
       p.granted_credits,
       CASE WHEN p.reversal_outcome = 'reversed' THEN p.granted_credits ELSE 0 END,
       CASE WHEN p.reversal_outcome = 'reversed' THEN 1 ELSE 0 END
FROM worker.billing_payment p
JOIN worker.journal j ON j.event_id = 'grant/' || p.payment_id
WHERE p.grant_outcome = 'granted' AND p.clerk_user_id IS NOT NULL;

-- no_plan and refused were final before; now a payment without a grant is decided again by its
-- next event or by `pedro-worker billing regrant`.
ALTER TABLE worker.billing_payment
    DROP COLUMN grant_outcome, DROP COLUMN plan_id, DROP COLUMN granted_credits,
    DROP COLUMN reversal_outcome, DROP COLUMN reversed_at;

-- An Asaas subscription as its SUBSCRIPTION_* events (and its payments) describe it: the newest
-- event by event time wins for each field.
CREATE TABLE worker.billing_subscription (
    subscription_id  TEXT PRIMARY KEY,
    clerk_user_id    TEXT,
    customer_id      TEXT,
    plan_ref         TEXT,          -- the plan its externalReference names now
    cycle            TEXT,
    value_cents      BIGINT,
    status           TEXT,          -- ACTIVE, INACTIVE, EXPIRED (DELETED after SUBSCRIPTION_DELETED)
    next_due_date    TIMESTAMPTZ,
    state_at         TIMESTAMPTZ,   -- event time of the newest SUBSCRIPTION_* event applied
    created_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at       TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX billing_subscription_clerk_idx ON worker.billing_subscription (clerk_user_id);

-- Which plan (cycle, value) a subscription had from when: a payment maps to the entry in force
-- when Asaas created it.
CREATE TABLE worker.billing_subscription_plan (
    subscription_id  TEXT NOT NULL,
    effective_at     TIMESTAMPTZ NOT NULL,
    event_id         TEXT NOT NULL,
    plan_ref         TEXT,
    cycle            TEXT,
    value_cents      BIGINT,
    PRIMARY KEY (subscription_id, effective_at, event_id)
);

-- Which Clerk user an Asaas customer belongs to, learnt from any event that names both.
CREATE TABLE worker.billing_customer (
    customer_id    TEXT PRIMARY KEY,
    clerk_user_id  TEXT NOT NULL,
    updated_at     TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- What a user owes after a reversal under PEDRO_REVERSAL_POLICY=clamp stopped the balance at zero;
-- the next credits the user is given pay it first.
CREATE TABLE worker.credit_debt (
    user_id     TEXT PRIMARY KEY,
    amount      INTEGER NOT NULL CHECK (amount >= 0),
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

ALTER TABLE worker.journal DROP CONSTRAINT journal_kind_check;
ALTER TABLE worker.journal ADD CONSTRAINT journal_kind_check
    CHECK (kind IN ('usage', 'refund', 'adjustment', 'grant', 'grant_reversal', 'starter',
                    'grant_restore', 'debt_payment'));
