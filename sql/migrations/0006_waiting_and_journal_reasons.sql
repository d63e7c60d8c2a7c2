-- Durable waiting (docs/ledger.md, "Waiting"), and a journal whose movements explain themselves.

-- An event that cannot apply *yet* waits here, in PostgreSQL, never in an expiring Redis key.
-- It is written in the transaction that found it must wait (or, for the per-event families,
-- right after that transaction rolled back, before the message is acknowledged), and it is
-- released — sent back to its queue, in event-time order — by what it waits for
-- (`waits_for`): 'user:<clerk user id>', 'usage:<usage event id>',
-- 'operation_type:<label>', 'cost:<label>', 'blob:<object id>'.
-- Exactly once rests on worker.event_log as everywhere else: a released event is applied
-- through its queue's normal path, so a release sent twice is a duplicate the second time.
--
-- state: waiting  -> nothing it waits for has happened (or it was found waiting again);
--        released -> sent back to its queue at released_at (re-sent if still undecided later);
--        applied  -> its key is in worker.event_log (decided: applied or rejected);
--        dropped  -> an operator dropped it (`pedro-worker waiting drop`): a rejection
--                    `dropped` is stored with who and why, and its key is decided.
CREATE TABLE worker.waiting (
    event_id         TEXT PRIMARY KEY,              -- the event's idempotency (claim) key
    queue            TEXT NOT NULL,                 -- usage | users | billing | storage
    event_type       TEXT NOT NULL,
    event            JSONB NOT NULL,                -- the event as it arrived
    payload_hash     TEXT NOT NULL,                 -- of the validated event: the same id with
                                                   -- another payload is an idempotency conflict
    clerk_user_id    TEXT,
    reason           TEXT NOT NULL,                 -- unknown_user, refund_before_usage, …
    waits_for        TEXT NOT NULL,
    detail           TEXT,
    occurred_at      TIMESTAMPTZ,                   -- event time: the release order
    state            TEXT NOT NULL DEFAULT 'waiting'
                     CHECK (state IN ('waiting', 'released', 'applied', 'dropped')),
    first_waited_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    last_waited_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    times_waited     INTEGER NOT NULL DEFAULT 1,
    released_at      TIMESTAMPTZ,
    times_released   INTEGER NOT NULL DEFAULT 0,
    resolved_at      TIMESTAMPTZ,                   -- applied or dropped
    dropped_by       TEXT,
    drop_reason      TEXT
);
CREATE INDEX waiting_open_idx ON worker.waiting (waits_for, occurred_at)
    WHERE state IN ('waiting', 'released');
CREATE INDEX waiting_reason_idx ON worker.waiting (reason, first_waited_at)
    WHERE state IN ('waiting', 'released');
CREATE INDEX waiting_user_idx ON worker.waiting (clerk_user_id, first_waited_at);

-- Every movement says what it is, what it refers to and why: kind (usage, refund, adjustment,
-- grant, grant_reversal, starter), reference (the usage a refund gives back, the payment of a
-- grant, …) and reason (an adjustment's reason, a grant's plan, …).
ALTER TABLE worker.journal ADD COLUMN reference TEXT;
ALTER TABLE worker.journal ADD COLUMN reason TEXT;
ALTER TABLE worker.journal DROP CONSTRAINT journal_kind_check;
ALTER TABLE worker.journal ADD CONSTRAINT journal_kind_check
    CHECK (kind IN ('usage', 'refund', 'adjustment', 'grant', 'grant_reversal', 'starter'));
CREATE INDEX journal_user_created_idx ON worker.journal (user_id, created_at DESC, event_id DESC);
