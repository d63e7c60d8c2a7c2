-- find_balance_drift --
-- Users whose balance differs from opening + sum of journal movements (or who have movements
-- but no opening). One pass over the journal, so it scales with rows, not round trips.
-- No parameters.
WITH movements AS (
    SELECT user_id, sum(delta)::bigint AS total FROM worker.journal GROUP BY user_id
)
SELECT coalesce(o.user_id, m.user_id) AS user_id,
       cb."clerkUserId" AS clerk_user_id,
       o.opening::bigint + coalesce(m.total, 0) AS expected,
       cb."creditsRemaining" AS actual
FROM worker.balance_opening o
FULL JOIN movements m ON m.user_id = o.user_id
LEFT JOIN "CreditBalance" cb ON cb."userId" = coalesce(o.user_id, m.user_id)
WHERE o.user_id IS NULL
   OR cb."creditsRemaining" IS DISTINCT FROM o.opening::bigint + coalesce(m.total, 0)
ORDER BY 1

-- count_tracked_balances --
-- How many users the journal tracks. No parameters.
SELECT count(*) FROM worker.balance_opening
