-- list_ops_notifications --
-- `pedro-worker notifications list`: deliveries newest first (a notification no endpoint took
-- shows once, without a delivery), with how many match up to a cap. The inner LIMIT bounds the
-- work however long the outbox's history is: newest first walks the primary key backwards; a
-- user's reads notification_user_idx, a type's notification_type_idx.
-- $1 status text (or NULL), $2 type text (or NULL), $3 clerk user id text (or NULL),
-- $4 endpoint text (or NULL), $5 limit int, $6 count up to this many int
WITH matching AS (
    SELECT n.seq, n.webhook_id, n.type, n.clerk_user_id, n.created_at, d.endpoint, d.status,
           d.attempts, d.next_at, d.in_flight, d.last_attempt_at, d.last_status, d.last_error,
           d.delivered_at, d.failed_at
    FROM worker.notification n
    LEFT JOIN worker.notification_delivery d ON d.seq = n.seq
    WHERE ($1::text IS NULL OR d.status = $1)
      AND ($2::text IS NULL OR n.type = $2)
      AND ($3::text IS NULL OR n.clerk_user_id = $3)
      AND ($4::text IS NULL OR d.endpoint = $4)
    ORDER BY n.seq DESC, d.endpoint
    LIMIT $6
)
SELECT *, count(*) OVER () AS matching
FROM matching
ORDER BY seq DESC, endpoint
LIMIT $5

-- get_ops_notification --
-- `pedro-worker notifications show` / `redeliver`: one notification by seq, webhook id or key
-- (each unique). $1 seq bigint (or NULL), $2 webhook id or key text
SELECT seq, key, webhook_id, type, clerk_user_id, data::text AS data, created_at
FROM worker.notification
WHERE seq = $1 OR webhook_id = $2 OR key = $2

-- list_ops_notification_deliveries --
-- `pedro-worker notifications show` / `redeliver`: a notification's delivery to each endpoint,
-- by endpoint name. Reads notification_delivery_seq_idx. $1 seq bigint
SELECT seq, endpoint, status, attempts, next_at, in_flight, last_attempt_at, last_status,
       last_error, delivered_at, failed_at
FROM worker.notification_delivery
WHERE seq = $1
ORDER BY endpoint

-- list_failed_notification_deliveries --
-- `pedro-worker notifications redeliver --failed`: the failed deliveries (to this endpoint,
-- failed since then), oldest first: what a bulk redelivery sends again, in the lanes' order.
-- A range scan of notification_delivery_done_idx. $1 endpoint text (or NULL), $2 since
-- timestamptz (or NULL)
SELECT d.seq, d.endpoint, d.status, d.attempts, d.next_at, d.in_flight, d.last_attempt_at,
       d.last_status, d.last_error, d.delivered_at, d.failed_at, n.webhook_id, n.type, n.clerk_user_id,
       n.created_at
FROM worker.notification_delivery d
JOIN worker.notification n ON n.seq = d.seq
WHERE d.status = 'failed'
  AND ($1::text IS NULL OR d.endpoint = $1)
  AND ($2::timestamptz IS NULL OR d.last_attempt_at >= $2)
ORDER BY d.seq, d.endpoint

-- redeliver_notification_deliveries --
-- `notifications redeliver` and the dashboard: these deliveries, unless pending (the dispatcher
-- owns those), go back to pending, due now, attempts from 0; the webhook id stays (the receiver
-- dedupes on it). The last attempt's status and error stay until the next attempt. The
-- dispatcher is woken (NOTIFY pedro_notifications) at commit.
-- $1 seq bigint[], $2 endpoint text[]
WITH redelivered AS (
    UPDATE worker.notification_delivery d
    SET status = 'pending', attempts = 0, next_at = now(), in_flight = false, failed_at = NULL
    FROM unnest($1::bigint[], $2::text[]) AS k(seq, endpoint)
    WHERE d.seq = k.seq AND d.endpoint = k.endpoint AND d.status <> 'pending'
    RETURNING d.seq, d.endpoint
), wake AS (
    SELECT pg_notify('pedro_notifications', '') WHERE EXISTS (SELECT 1 FROM redelivered)
)
SELECT seq, endpoint, (SELECT count(*) FROM wake)::int AS woken
FROM redelivered
ORDER BY seq, endpoint

-- list_user_notifications --
-- `pedro-worker user show`: a user's latest notifications, newest first, with how many it has
-- in all. Reads notification_user_idx. $1 clerk user id text, $2 limit int
SELECT seq, webhook_id, type, clerk_user_id, created_at, count(*) OVER () AS total
FROM worker.notification
WHERE clerk_user_id = $1
ORDER BY seq DESC
LIMIT $2

-- list_ops_deliveries_of --
-- `pedro-worker user show`: the deliveries of these notifications. $1 seq bigint[]
SELECT seq, endpoint, status, attempts, next_at, in_flight, last_attempt_at, last_status,
       last_error, delivered_at, failed_at
FROM worker.notification_delivery
WHERE seq = ANY ($1::bigint[])
ORDER BY seq DESC, endpoint

-- summarize_pending_notifications --
-- The dashboard and /metrics at every refresh: pending deliveries per endpoint, those due by
-- $1, and the oldest pending notification (the lowest seq: seq is write order). Reads the
-- partial index of pending deliveries only (notification_delivery_due_idx), so the delivered
-- history costs nothing here. $1 now timestamptz
SELECT d.endpoint, count(*)::int AS pending, count(*) FILTER (WHERE d.next_at <= $1)::int AS due,
       count(*) FILTER (WHERE d.in_flight)::int AS in_flight,
       (SELECT n.created_at FROM worker.notification n WHERE n.seq = min(d.seq)) AS oldest
FROM worker.notification_delivery d
WHERE d.status = 'pending'
GROUP BY d.endpoint
ORDER BY d.endpoint

-- summarize_failed_notifications --
-- The dashboard and /metrics: deliveries failed for good (their retries ran out) per endpoint,
-- and those whose last attempt was since $1. Reads the partial index of finished deliveries
-- (notification_delivery_done_idx). $1 since timestamptz
SELECT endpoint, count(*)::int AS failed, count(*) FILTER (WHERE last_attempt_at >= $1)::int AS recent
FROM worker.notification_delivery
WHERE status = 'failed'
GROUP BY endpoint
ORDER BY endpoint

-- list_latest_notification_failures --
-- The dashboard: the latest failed deliveries, the last attempt first. A backward scan of
-- notification_delivery_done_idx. $1 limit int
SELECT d.seq, d.endpoint, d.status, d.attempts, d.next_at, d.in_flight, d.last_attempt_at,
       d.last_status, d.last_error, d.delivered_at, d.failed_at, n.webhook_id, n.type, n.clerk_user_id,
       n.created_at
FROM worker.notification_delivery d
JOIN worker.notification n ON n.seq = d.seq
WHERE d.status = 'failed'
ORDER BY d.last_attempt_at DESC, d.seq DESC
LIMIT $1

-- count_delivered_notifications --
-- The dashboard and /metrics: deliveries delivered since $1, per notification type (types with
-- none are not returned). A range scan of notification_delivery_done_idx (a delivery's last
-- attempt is its delivery). $1 since timestamptz
SELECT n.type, count(*)::int AS delivered
FROM worker.notification_delivery d
JOIN worker.notification n ON n.seq = d.seq
WHERE d.status = 'delivered' AND d.last_attempt_at >= $1
GROUP BY n.type
ORDER BY n.type
