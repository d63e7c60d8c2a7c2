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

-- find_grant_drift --
-- One page of the grants check (docs/ledger.md, "Journal and reconcile"), in user id order, over
-- the users with a balance, an opening or a live grant. One row per finding, by kind:
--   grants                  "CreditBalance"."creditsRemaining" (actual; NULL: the row is gone)
--                           differs from the sum of the user's live grants' remaining (expected)
--   balance_without_grants  a balance <> 0 the worker never touched (no live grant, no
--                           opening): not drift, the worker makes it a legacy grant when it
--                           first moves it
--   grant                   one grant (grant_id) whose remaining (actual) differs from its
--                           opening + what the journal's `grants` pairs moved in or out of it
--                           (expected); for a pending or voided grant, what they moved (actual)
--                           must be 0; a pair naming a grant the user does not have: expected =
--                           what it moved, actual NULL
-- The grants looked at are the page users' live grants (credit_grant_user_live_idx) and those
-- their journal names (by key); find_expired_grant_drift covers the expired ones nothing names.
-- Always one row at least: page_last / page_size as in find_balance_drift, kind NULL when the
-- page had no finding.
-- $1 after user id text ('' for the first page), $2 page size int
WITH page AS (
    SELECT user_id FROM (
        (SELECT "userId" AS user_id FROM "CreditBalance" WHERE "userId" > $1 ORDER BY 1 LIMIT $2)
        UNION
        (SELECT user_id FROM worker.balance_opening WHERE user_id > $1 ORDER BY 1 LIMIT $2)
        UNION
        (SELECT DISTINCT user_id FROM worker.credit_grant
         WHERE state = 'live' AND user_id > $1 ORDER BY 1 LIMIT $2)
    ) u
    ORDER BY user_id LIMIT $2
), moved AS (
    SELECT j.user_id, m.value ->> 0 AS grant_id, sum((m.value ->> 1)::bigint)::bigint AS moved
    FROM page p
    JOIN worker.journal j ON j.user_id = p.user_id
    CROSS JOIN LATERAL jsonb_array_elements(j.grants) m
    GROUP BY 1, 2
), grants AS (
    -- every live grant of a user in the page's range is a page user's (the page is that range)
    SELECT g.user_id, g.grant_id, g.state, g.remaining, g.opening
    FROM worker.credit_grant g
    WHERE g.state = 'live' AND g.user_id > $1 AND g.user_id <= (SELECT max(user_id) FROM page)
    UNION
    -- by key: an array keeps the plan on the primary key whatever the estimate of `moved`
    SELECT g.user_id, g.grant_id, g.state, g.remaining, g.opening
    FROM worker.credit_grant g
    WHERE g.grant_id = ANY (ARRAY(SELECT DISTINCT grant_id FROM moved))
      AND g.user_id IN (SELECT user_id FROM page)
), per_grant AS (
    SELECT coalesce(g.user_id, m.user_id) AS user_id, coalesce(g.grant_id, m.grant_id) AS grant_id,
           CASE WHEN g.grant_id IS NULL THEN m.moved
                WHEN g.state IN ('pending', 'voided') THEN 0
                ELSE g.opening + coalesce(m.moved, 0) END AS expected,
           CASE WHEN g.grant_id IS NULL THEN NULL
                WHEN g.state IN ('pending', 'voided') THEN coalesce(m.moved, 0)
                ELSE g.remaining END AS actual
    FROM grants g
    FULL JOIN moved m ON m.grant_id = g.grant_id AND m.user_id = g.user_id
), live AS (
    SELECT user_id, sum(remaining)::bigint AS total
    FROM grants WHERE state = 'live' GROUP BY user_id
), per_user AS (
    SELECT p.user_id,
           CASE WHEN l.user_id IS NULL AND o.user_id IS NULL THEN 'balance_without_grants'
                ELSE 'grants' END AS kind,
           coalesce(l.total, 0) AS expected, cb."creditsRemaining" AS actual
    FROM page p
    LEFT JOIN live l ON l.user_id = p.user_id
    -- the ranges keep these on their indexes (a hash of the whole table per page adds up)
    LEFT JOIN "CreditBalance" cb ON cb."userId" = p.user_id
        AND cb."userId" > $1 AND cb."userId" <= (SELECT max(user_id) FROM page)
    LEFT JOIN worker.balance_opening o ON o.user_id = p.user_id
        AND o.user_id > $1 AND o.user_id <= (SELECT max(user_id) FROM page)
    WHERE cb."userId" IS NOT NULL OR l.user_id IS NOT NULL  -- neither: find_balance_drift's case
), found AS (
    SELECT kind, user_id, NULL::text AS grant_id, expected, actual::bigint AS actual
    FROM per_user WHERE actual IS DISTINCT FROM expected
    UNION ALL
    SELECT 'grant', user_id, grant_id, expected, actual
    FROM per_grant WHERE actual IS DISTINCT FROM expected
)
SELECT s.page_last, s.page_size, d.kind, d.user_id, d.grant_id, cb."clerkUserId" AS clerk_user_id,
       d.expected, d.actual
FROM (SELECT max(user_id) AS page_last, count(*) AS page_size FROM page) s
LEFT JOIN found d ON true
LEFT JOIN "CreditBalance" cb ON cb."userId" = d.user_id
ORDER BY d.user_id, d.kind, d.grant_id

-- find_expired_grant_drift --
-- Expired grants whose remaining differs from their opening although no journal movement of
-- their user names them (find_grant_drift checks every grant the journal names, and every live
-- one). Reads the expired grants once (credit_grant_ended_idx), the journal only for the few
-- whose remaining <> opening. Rows as find_grant_drift's, kind 'grant'. No parameters.
SELECT 'grant' AS kind, g.user_id, g.grant_id, cb."clerkUserId" AS clerk_user_id,
       g.opening::bigint AS expected, g.remaining::bigint AS actual
FROM worker.credit_grant g
LEFT JOIN "CreditBalance" cb ON cb."userId" = g.user_id
WHERE g.state = 'expired' AND g.remaining <> g.opening
  AND NOT EXISTS (
      SELECT 1 FROM worker.journal j CROSS JOIN LATERAL jsonb_array_elements(j.grants) m
      WHERE j.user_id = g.user_id AND m.value ->> 0 = g.grant_id
  )
ORDER BY g.user_id, g.grant_id

-- count_grant_checked_users --
-- How many users the grants check pages over (a balance, an opening or a live grant).
-- No parameters.
SELECT count(*) FROM (
    SELECT "userId" FROM "CreditBalance"
    UNION SELECT user_id FROM worker.balance_opening
    UNION SELECT user_id FROM worker.credit_grant WHERE state = 'live'
) u

-- find_hold_drift --
-- One page of the holds check (docs/ledger.md, "Journal and reconcile"), in hold id order: every
-- hold whose journal disagrees with its row. A hold's movements are `hold/<id>` (kind hold, the
-- hold's user, delta -credits) and then, by status:
--   held                nothing else
--   captured            `capture/<id>` (kind capture), the two summing to -captured, and the
--                       "UsageHistory" row usage_id with creditsUsed = captured
--   released, expired   `release/<id>` (kind release), the two summing to 0
-- (`expire/capture/<id>`, `expire/release/<id>`: credits back to an ended grant expiring, are the
-- grants check's.) One row per hold found: expected = what its movements should sum to, actual =
-- what they sum to (NULL: none found), detail = every disagreement, in words. Movements and
-- usages are looked up by key (primary keys), so a page costs the same however long the journal.
-- Always one row at least: page_last / page_size as in find_balance_drift, hold_id NULL when the
-- page had no finding.
-- $1 after hold id text ('' for the first page), $2 page size int
WITH page AS (
    SELECT hold_id, user_id, clerk_user_id, credits, status, captured, usage_id
    FROM worker.credit_hold WHERE hold_id > $1 ORDER BY hold_id LIMIT $2
), moves AS (
    SELECT event_id, user_id, kind, delta FROM worker.journal
    WHERE event_id = ANY (ARRAY(SELECT k || p.hold_id FROM page p
                                CROSS JOIN unnest(ARRAY['hold/', 'capture/', 'release/']) k))
), usages AS (
    SELECT id, "creditsUsed" AS used FROM "UsageHistory"
    WHERE id = ANY (ARRAY(SELECT usage_id FROM page WHERE usage_id IS NOT NULL))
), checked AS (
    SELECT p.hold_id, p.user_id, p.clerk_user_id,
           CASE p.status WHEN 'held' THEN -p.credits WHEN 'captured' THEN -p.captured ELSE 0 END
               ::bigint AS expected,
           CASE WHEN coalesce(h.event_id, c.event_id, r.event_id) IS NOT NULL
                THEN (coalesce(h.delta, 0) + coalesce(c.delta, 0) + coalesce(r.delta, 0))::bigint
           END AS actual,
           concat_ws('; ',
               CASE WHEN h.event_id IS NULL THEN 'no movement hold/' || p.hold_id
                    WHEN h.delta <> -p.credits
                    THEN 'hold/' || p.hold_id || ' moved ' || h.delta || ', the hold is of ' || p.credits
               END,
               CASE WHEN p.status = 'captured' AND c.event_id IS NULL
                    THEN 'captured, but no movement capture/' || p.hold_id
                    WHEN p.status <> 'captured' AND c.event_id IS NOT NULL
                    THEN p.status || ', but a movement capture/' || p.hold_id
               END,
               CASE WHEN p.status IN ('released', 'expired') AND r.event_id IS NULL
                    THEN p.status || ', but no movement release/' || p.hold_id
                    WHEN p.status NOT IN ('released', 'expired') AND r.event_id IS NOT NULL
                    THEN p.status || ', but a movement release/' || p.hold_id
               END,
               CASE WHEN h.kind <> 'hold' OR h.user_id <> p.user_id
                    THEN h.event_id || ' is a ' || h.kind || ' movement of user ' || h.user_id END,
               CASE WHEN c.kind <> 'capture' OR c.user_id <> p.user_id
                    THEN c.event_id || ' is a ' || c.kind || ' movement of user ' || c.user_id END,
               CASE WHEN r.kind <> 'release' OR r.user_id <> p.user_id
                    THEN r.event_id || ' is a ' || r.kind || ' movement of user ' || r.user_id END,
               CASE WHEN p.status = 'captured' AND u.id IS NULL
                    THEN 'no "UsageHistory" row ' || p.usage_id
                    WHEN p.status = 'captured' AND u.used IS DISTINCT FROM p.captured
                    THEN '"UsageHistory" ' || p.usage_id || ' used ' || u.used || ', the hold captured '
                         || coalesce(p.captured::text, 'nothing')
               END
           ) AS detail
    FROM page p
    LEFT JOIN moves h ON h.event_id = 'hold/' || p.hold_id
    LEFT JOIN moves c ON c.event_id = 'capture/' || p.hold_id
    LEFT JOIN moves r ON r.event_id = 'release/' || p.hold_id
    LEFT JOIN usages u ON u.id = p.usage_id
), found AS (
    SELECT hold_id, user_id, clerk_user_id, expected, actual,
           CASE WHEN actual IS DISTINCT FROM expected
                THEN concat_ws('; ', nullif(detail, ''), 'its movements net '
                               || coalesce(actual::text, 'nothing') || ', the row says '
                               || coalesce(expected::text, 'nothing'))
                ELSE detail END AS detail
    FROM checked
    WHERE detail <> '' OR actual IS DISTINCT FROM expected
)
SELECT s.page_last, s.page_size, d.hold_id, d.user_id, d.clerk_user_id, d.expected, d.actual,
       d.detail
FROM (SELECT max(hold_id) AS page_last, count(*) AS page_size FROM page) s
LEFT JOIN found d ON true
ORDER BY d.hold_id

-- find_orphan_hold_movements --
-- Hold movements (kinds hold, capture, release) whose hold has no worker.credit_hold row: what
-- find_hold_drift, paging over the rows, cannot see. One row per hold id named (the key's last
-- word), as find_hold_drift's: expected NULL (no row says anything), actual what they sum to.
-- One pass over the journal. No parameters.
SELECT m.hold_id, m.user_id, cb."clerkUserId" AS clerk_user_id, NULL::bigint AS expected,
       m.actual, 'no worker.credit_hold row, but ' || m.keys AS detail
FROM (
    SELECT substr(j.event_id, strpos(j.event_id, '/') + 1) AS hold_id, j.user_id,
           sum(j.delta)::bigint AS actual, string_agg(j.event_id, ', ' ORDER BY j.event_id) AS keys
    FROM worker.journal j
    WHERE j.kind IN ('hold', 'capture', 'release')
      AND NOT EXISTS (SELECT 1 FROM worker.credit_hold h
                      WHERE h.hold_id = substr(j.event_id, strpos(j.event_id, '/') + 1))
    GROUP BY 1, 2
) m
LEFT JOIN "CreditBalance" cb ON cb."userId" = m.user_id
ORDER BY m.hold_id, m.user_id

-- find_overdue_holds --
-- Holds still held although they expired before $1 (reconcile passes now - 5 minutes): not
-- drift — their journal agrees with them — but the grant sweep has not released them (is it
-- running?). A range scan of credit_hold_due_idx. $1 expired before timestamptz
SELECT hold_id, user_id, clerk_user_id, credits, expires_at
FROM worker.credit_hold
WHERE status = 'held' AND expires_at < $1
ORDER BY expires_at, hold_id

-- count_holds --
-- How many holds the holds check pages over. No parameters.
SELECT count(*) FROM worker.credit_hold
