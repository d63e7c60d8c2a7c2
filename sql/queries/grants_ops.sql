-- list_user_live_grants --
-- `pedro-worker user show`: a user's live grants in burn order, the order a debit takes them
-- (worker/ledger/grants.py `burn_order`): lower priority first, then the earliest expiry (none
-- last), the earliest effective, the oldest, then the id. The overdraft grant (the debt,
-- priority 2^31-1) comes last. Reads credit_grant_user_live_idx. $1 user id text
SELECT grant_id, source, state, amount, remaining, priority, effective_at, expires_at, reference,
       expired, ended_at
FROM worker.credit_grant
WHERE user_id = $1 AND state = 'live'
ORDER BY priority, expires_at NULLS LAST, effective_at, created_at, grant_id

-- list_user_pending_grants --
-- `pedro-worker user show`: a user's pending grants (not live yet), the next to start first.
-- $1 user id text
SELECT grant_id, source, state, amount, remaining, priority, effective_at, expires_at, reference,
       expired, ended_at
FROM worker.credit_grant
WHERE user_id = $1 AND state = 'pending'
ORDER BY effective_at, priority, grant_id

-- list_user_ended_grants --
-- `pedro-worker user show`: a user's last expired or voided grants, the latest ended first, with
-- how many it has in all. Reads credit_grant_user_idx (user_id, ended_at DESC).
-- $1 user id text, $2 limit int
SELECT grant_id, source, state, amount, remaining, priority, effective_at, expires_at, reference,
       expired, ended_at, count(*) OVER () AS ended_total
FROM worker.credit_grant
WHERE user_id = $1 AND state IN ('expired', 'voided')
ORDER BY ended_at DESC NULLS LAST, grant_id DESC
LIMIT $2

-- summarize_expiring_credits --
-- The dashboard and /metrics at every refresh: credits left in live grants that expire before
-- $1, and how many users hold them. Grants past their expiry that the expiry job has not ended
-- yet count too: they are about to expire. A range scan of credit_grant_due_expiry_idx (live
-- grants with an expiry only). $1 until timestamptz
SELECT COALESCE(sum(remaining), 0)::bigint AS credits,
       count(DISTINCT user_id) FILTER (WHERE remaining > 0)::int AS users
FROM worker.credit_grant
WHERE state = 'live' AND expires_at IS NOT NULL AND expires_at < $1 AND remaining > 0

-- sum_expired_credits_by_day --
-- The dashboard: credits that expired (worker.credit_grant.expired) per UTC day the grant ended,
-- since $1, with how many grants ended. Days with none are not returned. A range scan of
-- credit_grant_ended_idx (expired grants by ended_at). $1 since timestamptz
SELECT (ended_at AT TIME ZONE 'UTC')::date AS day, sum(expired)::bigint AS credits,
       count(*)::int AS grants
FROM worker.credit_grant
WHERE state = 'expired' AND ended_at >= $1
GROUP BY 1
ORDER BY 1
