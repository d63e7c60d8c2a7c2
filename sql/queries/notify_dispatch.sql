-- claim_deliveries --
-- The dispatcher's next deliveries (worker/notify/dispatch.py), claimed in one statement. Only
-- a lane's head is eligible (its lowest-seq pending delivery: order per user), and only when
-- it is due; a claimed head is in flight until its lease ends (next_at), so while one
-- dispatcher delivers it, no dispatcher takes that lane (SKIP LOCKED covers the moment of the
-- claim itself). A lease that ends without an outcome (a dispatcher killed mid-delivery) makes
-- the head due again: it is delivered again, with the same webhook-id. Endpoints not in $1
-- (no longer configured) are left pending.
-- $1 endpoint names text[], $2 limit int, $3 lease seconds float8
WITH heads AS (
    SELECT DISTINCT ON (endpoint, lane) endpoint, seq, next_at
    FROM worker.notification_delivery
    WHERE status = 'pending' AND endpoint = ANY($1::text[])
    ORDER BY endpoint, lane, seq
), due AS (  -- locked, and checked again once locked: another dispatcher may have claimed it since
    SELECT d.endpoint, d.seq
    FROM heads h
    JOIN worker.notification_delivery d ON d.endpoint = h.endpoint AND d.seq = h.seq
    WHERE h.next_at <= now() AND d.status = 'pending' AND d.next_at <= now()
    ORDER BY d.next_at, d.seq
    LIMIT $2
    FOR UPDATE OF d SKIP LOCKED
)
UPDATE worker.notification_delivery d
SET in_flight = true, attempts = d.attempts + 1, last_attempt_at = now(),
    next_at = now() + make_interval(secs => $3::float8)
FROM due, worker.notification n
WHERE d.endpoint = due.endpoint AND d.seq = due.seq AND n.seq = d.seq
RETURNING d.endpoint, d.seq, d.lane, d.attempts, n.webhook_id, n.type, n.data, n.created_at

-- mark_delivered --
-- A 2xx: the delivery is done, if the claim that made attempt $3 still holds it (a claim whose
-- lease ended may have been taken again: that attempt records the outcome). The endpoint is
-- up, so its deliveries waiting out a backoff after it gave no answer (no status: refused,
-- timed out; or 502, 503, 504 from a proxy in front of it) are due now: an endpoint back from
-- an outage is drained at once, not after each lane's backoff. A delivery the receiver
-- answered with another status keeps its schedule (that answer was about the notification).
-- $1 endpoint text, $2 seq bigint, $3 attempts int, $4 HTTP status int
WITH delivered AS (
    UPDATE worker.notification_delivery
    SET status = 'delivered', delivered_at = now(), in_flight = false, last_status = $4, last_error = NULL
    WHERE endpoint = $1 AND seq = $2 AND attempts = $3 AND status = 'pending' AND in_flight
    RETURNING seq
), backing_off AS (
    SELECT endpoint, seq
    FROM worker.notification_delivery
    WHERE status = 'pending' AND next_at > now() AND endpoint = $1 AND NOT in_flight
      AND (last_status IS NULL OR last_status IN (502, 503, 504))
    FOR UPDATE SKIP LOCKED
), hastened AS (
    UPDATE worker.notification_delivery d
    SET next_at = now()
    FROM backing_off b
    WHERE d.endpoint = b.endpoint AND d.seq = b.seq
    RETURNING d.seq
)
SELECT (SELECT count(*) FROM delivered)::int AS delivered, (SELECT count(*) FROM hastened)::int AS hastened

-- schedule_retry --
-- A failed attempt with retries left: due again in $6 seconds (if the claim that made attempt
-- $3 still holds it). $1 endpoint text, $2 seq bigint, $3 attempts int, $4 HTTP status int
-- (NULL: no answer), $5 error text, $6 seconds float8
UPDATE worker.notification_delivery
SET in_flight = false, last_status = $4, last_error = $5, next_at = now() + make_interval(secs => $6::float8)
WHERE endpoint = $1 AND seq = $2 AND attempts = $3 AND status = 'pending' AND in_flight

-- mark_failed --
-- A failed last attempt: the delivery is `failed` (ops show it and can redeliver it), and its
-- lane goes on with the next one. $1 endpoint text, $2 seq bigint, $3 attempts int, $4 HTTP
-- status int (NULL: no answer), $5 error text
UPDATE worker.notification_delivery
SET status = 'failed', failed_at = now(), in_flight = false, last_status = $4, last_error = $5
WHERE endpoint = $1 AND seq = $2 AND attempts = $3 AND status = 'pending' AND in_flight
