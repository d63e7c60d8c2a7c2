-- Notifications to the app (docs/notifications.md): a transactional outbox. Each notification is
-- written by the transaction that makes the change it reports (a usage batch crossing a
-- threshold, a grant, a reversal, an expiry…), so a crash neither loses nor invents one; the
-- dispatcher (`pedro-worker notify`) delivers it to every endpoint whose filter takes it, signed
-- per Standard Webhooks, at least once, in order per user.
CREATE TABLE worker.notification (
    seq           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, -- write order
    key           TEXT NOT NULL UNIQUE,       -- what it reports, once ever: 'credits.low/<clerk id>/20/<period>', …
    webhook_id    TEXT NOT NULL UNIQUE,       -- 'msg_…' (from the key): the receiver's dedupe id
    type          TEXT NOT NULL,              -- credits.low, credits.granted, … (docs/notifications.schema.json)
    clerk_user_id TEXT,                       -- the user it is about (its delivery lane)
    data          JSONB NOT NULL,             -- the body's `data`
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now()  -- the body's `timestamp`
);
CREATE INDEX notification_user_idx ON worker.notification (clerk_user_id, seq DESC);
CREATE INDEX notification_type_idx ON worker.notification (type, created_at DESC);

-- One row per notification and endpoint it goes to (the endpoints are settings: those whose
-- event filter took it when it was written). A lane (endpoint, user) delivers one at a time,
-- lowest seq first: the next waits while its predecessor is pending.
-- No foreign key to worker.notification: both rows are written by one statement
-- (insert_notifications), and a key check per delivery row cost the ledger's transaction more
-- than the rest of the outbox write (planned as a scan on a young table; docs/performance.md).
CREATE TABLE worker.notification_delivery (
    seq             BIGINT NOT NULL,              -- worker.notification.seq
    endpoint        TEXT NOT NULL,            -- the endpoint's name in the settings
    lane            TEXT NOT NULL,            -- clerk user id ('' for none)
    status          TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_at         TIMESTAMPTZ NOT NULL DEFAULT now(), -- due; while in flight, when its lease ends
    in_flight       BOOLEAN NOT NULL DEFAULT false,     -- claimed by a dispatcher (lease: next_at)
    last_attempt_at TIMESTAMPTZ,
    last_status     INTEGER,                  -- the receiver's HTTP status (NULL: no answer)
    last_error      TEXT,
    delivered_at    TIMESTAMPTZ,
    failed_at       TIMESTAMPTZ,
    PRIMARY KEY (endpoint, seq)
);
-- the lanes' heads, and what is due
CREATE INDEX notification_delivery_lane_idx ON worker.notification_delivery (endpoint, lane, seq)
    WHERE status = 'pending';
CREATE INDEX notification_delivery_due_idx ON worker.notification_delivery (next_at) WHERE status = 'pending';
CREATE INDEX notification_delivery_seq_idx ON worker.notification_delivery (seq);
CREATE INDEX notification_delivery_done_idx ON worker.notification_delivery (status, last_attempt_at)
    WHERE status <> 'pending';

-- Scans that write notifications for what happens by the clock: a grant about to expire
-- (credits.expiring, once per grant), an event waiting too long (event.waiting, once per event).
ALTER TABLE worker.credit_grant ADD COLUMN expiring_noticed_at TIMESTAMPTZ;
CREATE INDEX credit_grant_expiring_idx ON worker.credit_grant (expires_at)
    WHERE state = 'live' AND expires_at IS NOT NULL AND expiring_noticed_at IS NULL;
ALTER TABLE worker.waiting ADD COLUMN noticed_at TIMESTAMPTZ;
CREATE INDEX waiting_unnoticed_idx ON worker.waiting (first_waited_at)
    WHERE state IN ('waiting', 'released') AND noticed_at IS NULL;
