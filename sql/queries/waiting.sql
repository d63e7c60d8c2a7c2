-- lock_waiting_hashes --
-- The payload hashes of these events if they are already stored, locked (sorted: one lock
-- order): the same id with another payload is an idempotency conflict, never an overwrite.
-- $1 event ids text[]
SELECT w.event_id, w.payload_hash
FROM unnest($1::text[]) AS k(event_id)
JOIN worker.waiting w ON w.event_id = k.event_id
ORDER BY w.event_id
FOR UPDATE OF w

-- wait_events --
-- Store events that cannot apply yet (worker/waiting.py). A row already there with the same
-- payload (the same event found waiting again: a redelivery, or a release that came back) is
-- updated in place: new reason and what it waits for, counted once more. Callers lock the
-- existing rows first and never pass another payload under a stored id (lock_waiting_hashes).
-- Rows come sorted by event id (one lock order).
-- $1 event ids text[], $2 queues text[], $3 event types text[], $4 events (JSON text) text[],
-- $5 payload hashes text[], $6 clerk user ids text[], $7 reasons text[], $8 waits_for text[],
-- $9 details text[], $10 occurred_at timestamptz[], $11 now timestamptz
INSERT INTO worker.waiting AS w
    (event_id, queue, event_type, event, payload_hash, clerk_user_id, reason, waits_for, detail,
     occurred_at, first_waited_at, last_waited_at)
SELECT r.event_id, r.queue, r.event_type, r.event::jsonb, r.payload_hash, r.clerk_user_id,
       r.reason, r.waits_for, r.detail, r.occurred_at, $11, $11
FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],
            $8::text[], $9::text[], $10::timestamptz[])
     AS r(event_id, queue, event_type, event, payload_hash, clerk_user_id, reason, waits_for,
          detail, occurred_at)
ON CONFLICT (event_id) DO UPDATE
SET state = 'waiting', reason = EXCLUDED.reason, waits_for = EXCLUDED.waits_for,
    detail = EXCLUDED.detail, last_waited_at = EXCLUDED.last_waited_at,
    times_waited = w.times_waited + 1
WHERE w.state IN ('waiting', 'released') AND w.payload_hash = EXCLUDED.payload_hash

-- try_sweep_lock --
-- One sweep at a time among all worker processes and hosts: the others skip their turn (a
-- transaction-level advisory lock, released at commit). No parameters.
SELECT pg_try_advisory_xact_lock(hashtext('pedro-worker: waiting sweep'))

-- resolve_decided_waiting --
-- Open waiting rows whose event has been decided since (applied or rejected through its queue,
-- after a release or a redelivery) are closed. $1 now timestamptz
UPDATE worker.waiting w
SET state = 'applied', resolved_at = $1
FROM worker.event_log e
WHERE w.state IN ('waiting', 'released') AND e.event_id = w.event_id

-- open_waiting_keys --
-- What the open waiting events wait for, with how many, and when they last waited or were
-- released (the sweep decides which keys are satisfied now). Released rows count only once
-- their release is older than $1 (sent back, still undecided: re-sent).
-- $1 resend cutoff timestamptz
SELECT waits_for, count(*)::int AS events, max(last_waited_at) AS last_waited_at
FROM worker.waiting
WHERE state = 'waiting' OR (state = 'released' AND released_at < $1)
GROUP BY waits_for

-- operation_type_labels --
-- The labels of the app's "OperationType" enum, in their order. No parameters.
SELECT e.enumlabel FROM pg_enum e WHERE e.enumtypid = '"OperationType"'::regtype ORDER BY e.enumsortorder

-- lock_releasable --
-- The open waiting events for these keys (or these event ids), locked for the release (others
-- releasing at the same time skip them), in release order: per queue, event time, then arrival.
-- Released rows come only once their release is older than $3; at most $4 rows.
-- $1 waits_for keys text[] (or NULL), $2 event ids text[] (or NULL), $3 resend cutoff timestamptz, $4 limit int
SELECT event_id, queue, event
FROM worker.waiting
WHERE ($1::text[] IS NULL OR waits_for = ANY($1::text[]))
  AND ($2::text[] IS NULL OR event_id = ANY($2::text[]))
  AND (state = 'waiting' OR (state = 'released' AND released_at < $3))
ORDER BY queue, occurred_at NULLS LAST, first_waited_at, event_id
LIMIT $4
FOR UPDATE SKIP LOCKED

-- mark_released --
-- These waiting events were sent back to their queues. $1 event ids text[], $2 now timestamptz
UPDATE worker.waiting
SET state = 'released', released_at = $2, times_released = times_released + 1
WHERE event_id = ANY($1::text[])
