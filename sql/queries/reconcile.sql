-- find_balance_drift --
-- One page of reconcile, in user id order: tracked users whose "CreditBalance"."creditsRemaining"
-- differs from opening + sum of journal movements (or whose balance row is gone). Always one row
-- at least: page_last / page_size say where the page ended and how many balances it checked;
-- the drift columns are NULL when the page had none.
-- $1 after user id text ('' for the first page), $2 page size int
WITH page AS (
    SELECT user_id, opening FROM worker.balance_opening
    WHERE user_id > $1 ORDER BY user_id LIMIT $2
), movements AS (
    SELECT j.user_id, sum(j.delta)::bigint AS total
    FROM worker.journal j JOIN page p ON p.user_id = j.user_id
    GROUP BY j.user_id
), checked AS (
    SELECT p.user_id, cb."clerkUserId" AS clerk_user_id,
           p.opening::bigint + coalesce(m.total, 0) AS expected,
           cb."creditsRemaining" AS actual
    FROM page p
    LEFT JOIN movements m ON m.user_id = p.user_id
    LEFT JOIN "CreditBalance" cb ON cb."userId" = p.user_id
)
SELECT s.page_last, s.page_size, d.user_id, d.clerk_user_id, d.expected, d.actual
FROM (SELECT max(user_id) AS page_last, count(*) AS page_size FROM page) s
LEFT JOIN checked d ON d.actual IS DISTINCT FROM d.expected
ORDER BY d.user_id

-- find_journal_without_opening --
-- Users with journal movements but no opening balance (always drift: expected is unknown).
-- One anti-join over the journal. No parameters.
SELECT m.user_id, cb."clerkUserId" AS clerk_user_id, NULL::bigint AS expected,
       cb."creditsRemaining" AS actual
FROM (
    SELECT DISTINCT j.user_id FROM worker.journal j
    WHERE NOT EXISTS (SELECT 1 FROM worker.balance_opening o WHERE o.user_id = j.user_id)
) m
LEFT JOIN "CreditBalance" cb ON cb."userId" = m.user_id
ORDER BY m.user_id

-- count_tracked_balances --
-- How many users the journal tracks. No parameters.
SELECT count(*) FROM worker.balance_opening
