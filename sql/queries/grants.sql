-- grants_of --
-- The grants made for one reference (a payment's allowances: reference = its billing grant id),
-- in the order they start. $1 reference text
SELECT grant_id, state
FROM worker.credit_grant WHERE reference = $1
ORDER BY effective_at, grant_id

-- set_grant_states --
-- Grants that started (pending -> live) or ended (live -> expired): the state, and when it ended.
-- $1 grant ids text[], $2 states text[], $3 ended at timestamptz[] (NULL: still going)
UPDATE worker.credit_grant g
SET state = s.state, ended_at = s.ended_at
FROM unnest($1::text[], $2::text[], $3::timestamptz[]) AS s(grant_id, state, ended_at)
WHERE g.grant_id = s.grant_id

-- due_grant_users --
-- Users with a grant due (live past its expiry, or pending past its start) or a hold past its
-- expiry. At most $2 of them, those due longest first. $1 now timestamptz, $2 limit int
SELECT d.user_id, cb."clerkUserId" AS clerk_user_id
FROM (
    SELECT user_id, min(due) AS due FROM (
        SELECT user_id, expires_at AS due FROM worker.credit_grant
        WHERE state = 'live' AND expires_at <= $1
        UNION ALL
        SELECT user_id, effective_at FROM worker.credit_grant
        WHERE state = 'pending' AND effective_at <= $1
        UNION ALL
        SELECT user_id, expires_at FROM worker.credit_hold
        WHERE status = 'held' AND expires_at <= $1
    ) g GROUP BY user_id ORDER BY min(due) LIMIT $2
) d
JOIN "CreditBalance" cb ON cb."userId" = d.user_id

-- due_pending_grants --
-- The pending grants of these users that have started by $2, in start order.
-- $1 "User".id values text[], $2 now timestamptz
SELECT grant_id, user_id, source, amount, reference, priority, effective_at, expires_at
FROM worker.credit_grant
WHERE user_id = ANY($1::text[]) AND state = 'pending' AND effective_at <= $2
ORDER BY user_id, effective_at, grant_id

-- grant_terms --
-- What the scheduler needs of live grants it ends: rollover cap, period and times.
-- $1 grant ids text[]
SELECT grant_id, rollover, period_months, effective_at, expires_at, priority
FROM worker.credit_grant WHERE grant_id = ANY($1::text[])

-- try_grant_sweep_lock --
-- One grant sweep at a time among all worker processes and hosts: a transaction-level advisory
-- lock (released at commit or rollback, or when the session dies); the others skip their turn.
SELECT pg_try_advisory_xact_lock(hashtext('pedro.grant_sweep'))

-- next_grant_due --
-- When the next grant is due to expire or start, or the next hold to expire (NULL: none), for the
-- sweep to wake on time. No parameters.
SELECT least(
    (SELECT min(expires_at) FROM worker.credit_grant WHERE state = 'live' AND expires_at IS NOT NULL),
    (SELECT min(effective_at) FROM worker.credit_grant WHERE state = 'pending'),
    (SELECT min(expires_at) FROM worker.credit_hold WHERE status = 'held'))
