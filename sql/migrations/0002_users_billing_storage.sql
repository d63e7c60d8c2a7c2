-- Worker-owned state for the user, billing and storage event families (docs/ingress.md).
-- Each row is written in the same transaction as the event's effects and its claim in
-- worker.event_log. The worker role has no DELETE: resolved rows are marked, never removed.

-- Per Clerk user: the version (event time) of the profile last applied and when the user was
-- deleted, so that user events converge to one state whatever order they arrive in.
CREATE TABLE worker.user_state (
    clerk_user_id       TEXT PRIMARY KEY,
    profile_updated_at  TIMESTAMPTZ,
    deleted_at          TIMESTAMPTZ,
    updated_at          TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Per Asaas payment: the event times that decide its credits and what was decided, so that a
-- payment grants once and reverses once whatever order its events arrive in.
CREATE TABLE worker.billing_payment (
    payment_id        TEXT PRIMARY KEY,
    clerk_user_id     TEXT,
    paid_at           TIMESTAMPTZ,   -- earliest PAYMENT_CONFIRMED / PAYMENT_RECEIVED event time
    reversed_at       TIMESTAMPTZ,   -- earliest refund / chargeback event time
    grant_outcome     TEXT CHECK (grant_outcome IN ('granted', 'no_plan', 'refused')),
    plan_id           TEXT,
    granted_credits   INTEGER,
    reversal_outcome  TEXT CHECK (reversal_outcome IN ('reversed', 'refused')),
    updated_at        TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- A delete that arrived before its object: applied (or refused) when the create lands.
CREATE TABLE worker.storage_tombstone (
    object_id      TEXT PRIMARY KEY,
    clerk_user_id  TEXT NOT NULL,
    deleted_at     TIMESTAMPTZ NOT NULL,
    event_id       TEXT NOT NULL,
    resolved       TEXT CHECK (resolved IN ('applied', 'refused')),
    created_at     TIMESTAMPTZ NOT NULL DEFAULT now()
);
