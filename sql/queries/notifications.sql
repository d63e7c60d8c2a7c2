-- insert_notifications --
-- Notices into the outbox (worker.notification), in the caller's transaction, with a delivery
-- row for each endpoint that takes them. A key already there is skipped, with its deliveries:
-- a notification is written once, ever (worker/notify/notices.py). The dispatcher is woken
-- (NOTIFY pedro_notifications) when the transaction commits.
-- $1 key text[], $2 webhook_id text[], $3 type text[], $4 clerk_user_id text[], $5 data (JSON text)[],
-- $6 delivery key text[], $7 delivery endpoint text[]
WITH written AS (
    INSERT INTO worker.notification (key, webhook_id, type, clerk_user_id, data)
    SELECT k, w, t, c, d::jsonb
    FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[]) WITH ORDINALITY AS n(k, w, t, c, d, i)
    ORDER BY i
    ON CONFLICT (key) DO NOTHING
    RETURNING seq, key, clerk_user_id
), deliveries AS (
    INSERT INTO worker.notification_delivery (seq, endpoint, lane)
    SELECT w.seq, d.endpoint, coalesce(w.clerk_user_id, '')
    FROM written w JOIN unnest($6::text[], $7::text[]) AS d(key, endpoint) ON d.key = w.key
    RETURNING 1
), wake AS (  -- the dispatcher LISTENs on this channel; a notification is sent at commit
    SELECT pg_notify('pedro_notifications', '') WHERE EXISTS (SELECT 1 FROM deliveries)
)
SELECT (SELECT count(*) FROM written)::int AS notifications, (SELECT count(*) FROM deliveries)::int AS deliveries,
       (SELECT count(*) FROM wake)::int AS woken

-- notice_expiring_grants --
-- Live grants expiring by $1 not noticed yet, marked noticed ($3) in the same statement, with
-- their user's Clerk id: credits.expiring is written for those with credits left, once per grant
-- (a grant spent to 0 is marked too: it has nothing to lose). Rows a ledger transaction holds are
-- skipped this time. $1 horizon timestamptz, $2 limit int, $3 now timestamptz
WITH due AS (
    SELECT grant_id FROM worker.credit_grant
    WHERE state = 'live' AND expires_at IS NOT NULL AND expiring_noticed_at IS NULL AND expires_at <= $1
    ORDER BY expires_at
    LIMIT $2
    FOR UPDATE SKIP LOCKED
)
UPDATE worker.credit_grant g SET expiring_noticed_at = $3
FROM due
WHERE g.grant_id = due.grant_id
RETURNING g.grant_id, g.user_id, (SELECT u."clerkId" FROM "User" u WHERE u.id = g.user_id) AS clerk_user_id,
          g.source, g.remaining, g.expires_at

-- notice_long_waiting --
-- Events waiting since before $1 not noticed yet, marked noticed ($3) in the same statement:
-- event.waiting is written once per event. $1 cutoff timestamptz, $2 limit int, $3 now timestamptz
WITH due AS (
    SELECT event_id FROM worker.waiting
    WHERE state IN ('waiting', 'released') AND noticed_at IS NULL AND first_waited_at <= $1
    ORDER BY first_waited_at
    LIMIT $2
    FOR UPDATE SKIP LOCKED
)
UPDATE worker.waiting w SET noticed_at = $3
FROM due
WHERE w.event_id = due.event_id
RETURNING w.event_id, w.queue, w.event_type, w.clerk_user_id, w.reason, w.waits_for, w.detail, w.first_waited_at
