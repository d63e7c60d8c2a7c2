-- list_waiting --
-- `pedro-worker waiting list`: open waiting events (states in $4, a subset of waiting and
-- released), oldest first, with how many match in all. The fixed state predicate lets the
-- planner use the partial indexes on open rows, whatever else the table holds.
-- $1 reason text (or NULL), $2 queue text (or NULL), $3 clerk user id text (or NULL),
-- $4 states text[], $5 limit int
SELECT event_id, queue, event_type, clerk_user_id, reason, waits_for, detail, state, occurred_at,
       first_waited_at, last_waited_at, times_waited, released_at, times_released,
       count(*) OVER () AS matching
FROM worker.waiting
WHERE state IN ('waiting', 'released') AND state = ANY($4::text[])
  AND ($1::text IS NULL OR reason = $1)
  AND ($2::text IS NULL OR queue = $2)
  AND ($3::text IS NULL OR clerk_user_id = $3)
ORDER BY first_waited_at, event_id
LIMIT $5

-- get_waiting --
-- `pedro-worker waiting show`: one waiting row in full, whatever its state. $1 event id text
SELECT event_id, queue, event_type, event, clerk_user_id, reason, waits_for, detail, occurred_at,
       state, first_waited_at, last_waited_at, times_waited, released_at, times_released,
       resolved_at, dropped_by, drop_reason
FROM worker.waiting
WHERE event_id = $1

-- find_waiting_states --
-- The state of each of these waiting rows (ids that have none are not returned).
-- $1 event ids text[]
SELECT event_id, state FROM worker.waiting WHERE event_id = ANY($1::text[])

-- lock_waiting_for_drop --
-- The rows an operator drops, locked in event id order (one lock order with the releasers and
-- the families that store waiting events), whatever their state: the caller refuses the drop
-- when one is not open. $1 event ids text[]
SELECT event_id, queue, event_type, event, payload_hash, clerk_user_id, state
FROM worker.waiting
WHERE event_id = ANY($1::text[])
ORDER BY event_id
FOR UPDATE

-- mark_dropped --
-- These waiting events were dropped by an operator (their rejection and key are written in the
-- same transaction). $1 event ids text[], $2 who text, $3 why text, $4 now timestamptz
UPDATE worker.waiting
SET state = 'dropped', dropped_by = $2, drop_reason = $3, resolved_at = $4
WHERE event_id = ANY($1::text[]) AND state IN ('waiting', 'released')

-- summarize_waiting --
-- Open waiting events per reason and queue, with the oldest one's first wait: what /metrics,
-- `stats` and the dashboard show at every refresh. Reads the partial index waiting_reason_idx
-- (open rows only), so applied and dropped history costs nothing here. No parameters.
SELECT reason, queue, count(*)::int AS events, min(first_waited_at) AS oldest
FROM worker.waiting
WHERE state IN ('waiting', 'released')
GROUP BY reason, queue
ORDER BY reason, queue
