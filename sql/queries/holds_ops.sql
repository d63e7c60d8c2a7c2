-- list_holds --
-- `pedro-worker holds list`: holds newest first, with how many match in all. With a user, its
-- "User".id leads to credit_hold_user_idx (user_id, created_at DESC); `held` alone reads the
-- partial index of open holds (credit_hold_due_idx).
-- $1 clerk user id text (or NULL), $2 status text (or NULL), $3 limit int
SELECT hold_id, user_id, clerk_user_id, credits, status, captured, usage_id, operation_type,
       over_capture, resolved_by, created_at, expires_at, resolved_at,
       count(*) OVER () AS matching
FROM worker.credit_hold
WHERE ($1::text IS NULL OR user_id = (SELECT u.id FROM "User" u WHERE u."clerkId" = $1))
  AND ($2::text IS NULL OR status = $2)
ORDER BY created_at DESC, hold_id DESC
LIMIT $3

-- get_hold --
-- `pedro-worker holds show` / `holds release`: one hold in full. $1 hold id text
SELECT hold_id, user_id, clerk_user_id, credits, status, captured, usage_id, operation_type,
       over_capture, resolved_by, created_at, expires_at, resolved_at,
       details::text AS details, allocation::text AS allocation, taken::text AS taken
FROM worker.credit_hold
WHERE hold_id = $1

-- list_hold_movements --
-- `pedro-worker holds show`: a hold's journal movements, by key (the journal's primary key):
-- `hold/<id>`, `capture/<id>` or `release/<id>`, and the expiry of credits that went back to an
-- ended grant (`expire/capture/<id>`, `expire/release/<id>`); oldest first, an expiry after the
-- movement it comes with (same transaction, same time). $1 hold id text
SELECT event_id, kind, delta, reference, reason, grants::text AS grants, created_at
FROM worker.journal
WHERE event_id = ANY (ARRAY['hold/' || $1, 'capture/' || $1, 'release/' || $1,
                            'expire/capture/' || $1, 'expire/release/' || $1])
ORDER BY created_at, kind = 'grant_expiry', event_id

-- find_hold_usage --
-- `pedro-worker holds show`: the "UsageHistory" row a capture wrote. $1 usage id text
SELECT id, "operationType"::text AS operation_type, "creditsUsed" AS credits_used,
       "timestamp" AS used_at
FROM "UsageHistory"
WHERE id = $1

-- list_user_open_holds --
-- `pedro-worker user show`: a user's open holds (past their expiry or not), the next to expire
-- first. Reads credit_hold_user_idx. $1 user id text
SELECT hold_id, user_id, clerk_user_id, credits, status, captured, usage_id, operation_type,
       over_capture, resolved_by, created_at, expires_at, resolved_at
FROM worker.credit_hold
WHERE user_id = $1 AND status = 'held'
ORDER BY expires_at, hold_id

-- list_user_resolved_holds --
-- `pedro-worker user show`: a user's last resolved holds (captured, released, expired), the
-- latest resolved first, with how many it has in all. $1 user id text, $2 limit int
SELECT hold_id, user_id, clerk_user_id, credits, status, captured, usage_id, operation_type,
       over_capture, resolved_by, created_at, expires_at, resolved_at,
       count(*) OVER () AS resolved_total
FROM worker.credit_hold
WHERE user_id = $1 AND status <> 'held'
ORDER BY resolved_at DESC, hold_id DESC
LIMIT $2

-- summarize_open_holds --
-- The dashboard and /metrics at every refresh: open holds and the credits they keep out of the
-- balances, and those past their expiry that no sweep has released yet (overdue), with the
-- earliest expiry among them. Reads the partial index of open holds only (credit_hold_due_idx),
-- so resolved history costs nothing here. $1 now timestamptz
SELECT count(*)::int AS holds, coalesce(sum(credits), 0)::bigint AS credits,
       count(*) FILTER (WHERE expires_at <= $1)::int AS overdue,
       coalesce(sum(credits) FILTER (WHERE expires_at <= $1), 0)::bigint AS overdue_credits,
       min(expires_at) FILTER (WHERE expires_at <= $1) AS overdue_since
FROM worker.credit_hold
WHERE status = 'held'

-- count_resolved_holds --
-- The dashboard and /metrics: holds resolved since $1, per status (captured, released,
-- expired; statuses with none are not returned), with the credits they held and, for captures,
-- the credits charged. A range scan of credit_hold_resolved_idx. $1 since timestamptz
SELECT status, count(*)::int AS holds, sum(credits)::bigint AS credits,
       coalesce(sum(captured), 0)::bigint AS charged
FROM worker.credit_hold
WHERE status <> 'held' AND resolved_at >= $1
GROUP BY status
ORDER BY status
