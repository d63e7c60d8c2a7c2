-- find_holds --
-- These holds (worker.credit_hold), times as epoch seconds. The caller holds the users'
-- "CreditBalance" rows, so nothing changes them meanwhile.
-- $1 hold ids text[]
SELECT hold_id, user_id, clerk_user_id, credits, status, extract(epoch FROM expires_at)::float8 AS expires,
       allocation::text AS allocation, over_capture, operation_type, request_hash, captured, usage_id,
       resolved_by, details::text AS details, created_at, expires_at, resolved_at
FROM worker.credit_hold WHERE hold_id = ANY($1::text[])

-- find_due_holds --
-- The open holds of these users past their expiry: released before anything else is decided for
-- them (the grant sweep, and every usage batch: almost always no row, one index probe per user).
-- $3 "User".id values, packed (worker/repo/packed.py): $1 separator, $2 NULL marker; $4 now timestamptz
SELECT hold_id, user_id, clerk_user_id, credits, status, extract(epoch FROM expires_at)::float8 AS expires,
       allocation::text AS allocation, over_capture, operation_type
FROM worker.credit_hold
WHERE user_id = ANY((string_to_array($3, $1, $2))[2:]) AND status = 'held' AND expires_at <= $4
ORDER BY expires_at, hold_id

-- hold_books --
-- What a hold transaction reads once it holds the user's balance, in one round trip: the user's
-- live grants in burn order (as find_live_grants), and the hold it is about ($2, any user, any
-- status) with the user's open holds (those past their expiry are released first; the others
-- are what the answer shows as held). Both as JSON text.
-- $1 "User".id text, $2 hold id text
SELECT
    (SELECT coalesce(json_agg(json_build_array(g.grant_id, g.source, g.remaining, g.priority,
                                               extract(epoch FROM g.effective_at)::float8,
                                               extract(epoch FROM g.expires_at)::float8, g.amount)
                              ORDER BY g.priority, g.expires_at NULLS LAST, g.effective_at, g.created_at,
                                       g.grant_id), '[]')
     FROM worker.credit_grant g WHERE g.user_id = $1 AND g.state = 'live')::text AS grants,
    (SELECT coalesce(json_agg(h), '[]') FROM (
        SELECT hold_id, user_id, clerk_user_id, credits, status, extract(epoch FROM expires_at)::float8 AS expires,
               allocation::text AS allocation, over_capture, operation_type, request_hash, captured, usage_id,
               resolved_by, details::text AS details, created_at, expires_at, resolved_at
        FROM worker.credit_hold WHERE hold_id = $2
        UNION
        SELECT hold_id, user_id, clerk_user_id, credits, status, extract(epoch FROM expires_at)::float8 AS expires,
               allocation::text AS allocation, over_capture, operation_type, request_hash, captured, usage_id,
               resolved_by, details::text AS details, created_at, expires_at, resolved_at
        FROM worker.credit_hold WHERE user_id = $1 AND status = 'held'
    ) h)::text AS holds

-- lock_account_of_hold --
-- Lock the "CreditBalance" row of a hold's user (a capture or release names only the hold): the
-- same row lock as lock_accounts. No row: no such hold (or its user's balance is gone).
-- $1 hold id text
SELECT cb.id AS balance_id, cb."userId" AS user_id, cb."clerkUserId" AS clerk_user_id,
       cb."creditsRemaining" AS balance
FROM "CreditBalance" cb
WHERE cb."userId" = (SELECT h.user_id FROM worker.credit_hold h WHERE h.hold_id = $1)
FOR NO KEY UPDATE OF cb

-- resolve_holds --
-- Holds the grant sweep released (expired), each once: a row already resolved is left alone (the
-- sweep holds the balance locks and checked; this is the last word). The other paths resolve
-- holds in write_ledger.
-- $1 hold ids text[], $2 statuses text[], $3 captured int[], $4 usage ids text[], $5 taken (JSON
-- text)[], $6 resolved_by text[], $7 resolved_at timestamptz
UPDATE worker.credit_hold h
SET status = r.status, captured = r.captured, usage_id = r.usage_id, taken = r.taken::jsonb,
    resolved_by = r.resolved_by, resolved_at = $7
FROM unnest($1::text[], $2::text[], $3::int[], $4::text[], $5::text[], $6::text[])
     AS r(hold_id, status, captured, usage_id, taken, resolved_by)
WHERE h.hold_id = r.hold_id AND h.status || '' = 'held'  -- by the primary key (see write_ledger)
RETURNING h.hold_id


-- user_balance --
-- One user's balance as the API shows it: "CreditBalance", open holds, the user's waiting events, and
-- the grants usable now (the live ones started and not past their expiry; the debt apart).
-- No lock: a read. $1 clerk user id text, $2 now timestamptz
SELECT cb."userId" AS user_id, cb."creditsRemaining" AS remaining,
       (SELECT coalesce(sum(g.remaining) FILTER (WHERE g.source <> 'overdraft' AND g.remaining > 0
                                                  AND g.effective_at <= $2
                                                  AND (g.expires_at IS NULL OR g.expires_at > $2)), 0)::bigint
        FROM worker.credit_grant g WHERE g.user_id = cb."userId" AND g.state = 'live') AS usable,
       (SELECT coalesce(sum(h.credits), 0)::bigint FROM worker.credit_hold h
        WHERE h.user_id = cb."userId" AND h.status = 'held' AND h.expires_at > $2) AS held,
       (SELECT coalesce(sum(h.credits), 0)::bigint FROM worker.credit_hold h
        WHERE h.user_id = cb."userId" AND h.status = 'held' AND h.expires_at <= $2) AS overdue,
       (SELECT count(*)::int FROM worker.waiting w
        WHERE w.clerk_user_id = $1 AND w.state IN ('waiting', 'released')) AS waiting
FROM "CreditBalance" cb WHERE cb."clerkUserId" = $1

-- user_movements --
-- One page of a user's journal movements, newest first (journal_user_created_idx), after the
-- cursor ($3 created_at, $4 event_id; NULL for the first page). $1 "User".id, $2 page size int
SELECT j.event_id, j.kind, j.delta, j.reference, j.reason, j.refund_of, j.created_at
FROM worker.journal j
WHERE j.user_id = $1
  AND ($3::timestamptz IS NULL OR (j.created_at, j.event_id) < ($3::timestamptz, $4::text))
ORDER BY j.created_at DESC, j.event_id DESC
LIMIT $2
