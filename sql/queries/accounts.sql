-- find_user_account --
-- One user as ops see it (`pedro-worker user show`, `billing show`): the "User" row, its balance
-- (NULL when the user has no "CreditBalance") and what it owes (worker.credit_debt, 0 if nothing).
-- $1 clerk user id text
SELECT u.id AS user_id, u."clerkId" AS clerk_user_id, u.email, u."isActive" AS is_active,
       cb."creditsRemaining" AS balance, COALESCE(d.amount, 0) AS debt
FROM "User" u
LEFT JOIN "CreditBalance" cb ON cb."userId" = u.id
LEFT JOIN worker.credit_debt d ON d.user_id = u.id
WHERE u."clerkId" = $1

-- list_user_movements --
-- One page of a user's journal movements, newest first: keyset pagination on
-- (created_at, event_id) through journal_user_created_idx (migration 0006). The page starts
-- after the cursor, the last row of the previous page (NULLs: the first page).
-- $1 user id text, $2 cursor created_at timestamptz (or NULL), $3 cursor event id text
-- (or NULL), $4 rows int
SELECT event_id, kind, delta, reference, reason, created_at
FROM worker.journal
WHERE user_id = $1
  AND (created_at, event_id) < (COALESCE($2::timestamptz, 'infinity'), COALESCE($3::text, ''))
ORDER BY created_at DESC, event_id DESC
LIMIT $4
