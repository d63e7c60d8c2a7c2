-- lock_accounts --
-- Lock the balance rows of these users, one at a time in the order given (callers sort the
-- ids, so concurrent batches take locks in the same order and cannot deadlock). Users without
-- a balance are simply absent. A LATERAL per user, not `= ANY(...) FOR UPDATE`: the latter
-- re-sorts the whole array after every lock wait and collapses under contention.
-- $3 clerk user ids (sorted), packed (worker/repo/packed.py): $1 separator, $2 NULL marker
SELECT cb.id AS balance_id, cb."userId" AS user_id, cb."clerkUserId" AS clerk_user_id,
       cb."creditsRemaining" AS balance
FROM unnest((string_to_array($3, $1, $2))[2:]) WITH ORDINALITY AS k(clerk_user_id, n)
CROSS JOIN LATERAL (
    SELECT c.id, c."userId", c."clerkUserId", c."creditsRemaining"
    FROM "CreditBalance" c
    WHERE c."clerkUserId" = k.clerk_user_id
    FOR NO KEY UPDATE
) cb
ORDER BY k.n

-- limit_lock_wait --
-- For the rest of this transaction only (is_local = true: nothing outlives it), give up on a
-- lock after $1 milliseconds (text) instead of waiting until statement_timeout.
SELECT set_config('lock_timeout', $1, true)

-- lock_free_accounts --
-- Like lock_accounts, but skips balance rows another transaction holds (it never waits, so it
-- cannot deadlock): a batch first applies the users nobody else is busy with, then waits only
-- for the rest. Users that are locked or have no balance are absent alike (see
-- find_existing_accounts).
-- $3 clerk user ids (sorted), packed (worker/repo/packed.py): $1 separator, $2 NULL marker
SELECT cb.id AS balance_id, cb."userId" AS user_id, cb."clerkUserId" AS clerk_user_id,
       cb."creditsRemaining" AS balance
FROM unnest((string_to_array($3, $1, $2))[2:]) WITH ORDINALITY AS k(clerk_user_id, n)
CROSS JOIN LATERAL (
    SELECT c.id, c."userId", c."clerkUserId", c."creditsRemaining"
    FROM "CreditBalance" c
    WHERE c."clerkUserId" = k.clerk_user_id
    FOR NO KEY UPDATE SKIP LOCKED
) cb
ORDER BY k.n

-- find_existing_accounts --
-- Which of these Clerk users have a balance (locked by someone or not). $1 clerk user ids text[]
SELECT "clerkUserId" AS clerk_user_id FROM "CreditBalance" WHERE "clerkUserId" = ANY($1::text[])

-- get_feature_costs --
-- The admin-configured cost per operation type (JSON object or NULL). No parameters.
SELECT "featureCosts" FROM "AdminSettings" WHERE id = 'singleton'

-- find_refund_targets --
-- For each usage id: its row (if any), what has been refunded of it, whether the worker already
-- decided on that event (a rejected usage has a decision but no row), and what the usage took
-- from which grant (its movement's grants, or for a usage that captured a hold what the hold
-- recorded it took: worker/ledger/holds.py; refunds give back the last taken first).
-- $1 usage ids text[]
SELECT t.id,
       u."creditsUsed" AS credits_used,
       u."operationType"::text AS operation_type,
       cb."clerkUserId" AS clerk_user_id,
       COALESCE((SELECT sum(j.delta) FROM worker.journal j WHERE j.refund_of = t.id), 0)::int AS refunded,
       EXISTS (SELECT 1 FROM worker.event_log e WHERE e.event_id = t.id) AS decided,
       coalesce((SELECT h.taken FROM worker.credit_hold h WHERE h.usage_id = t.id),
                (SELECT j.grants FROM worker.journal j WHERE j.event_id = t.id))::text AS taken
FROM unnest($1::text[]) AS t(id)
LEFT JOIN "UsageHistory" u ON u.id = t.id
LEFT JOIN "CreditBalance" cb ON cb.id = u."creditBalanceId"

-- find_live_grants --
-- The live grants of these users (worker.credit_grant), in burn order (worker/ledger/grants.py:
-- priority, earliest expiry, earliest start, then oldest), times as epoch seconds (cheaper to
-- decode than timestamps, on the batch path). The caller holds the users' "CreditBalance" rows:
-- nobody else changes their grants meanwhile.
-- $3 "User".id values, packed (worker/repo/packed.py): $1 separator, $2 NULL marker
SELECT g.user_id, g.grant_id, g.source, g.remaining, g.priority,
       extract(epoch FROM g.effective_at)::float8, extract(epoch FROM g.expires_at)::float8, g.amount
FROM worker.credit_grant g
WHERE g.user_id = ANY((string_to_array($3, $1, $2))[2:]) AND g.state = 'live'
ORDER BY g.user_id, g.priority, g.expires_at NULLS LAST, g.effective_at, g.created_at, g.grant_id

-- insert_grants --
-- New grants (worker.credit_grant). A grant id taken already adds to that grant (the user's
-- overdraft or legacy grant, made by a concurrent path): never a second row.
-- $1 grant_id text[], $2 user_id text[], $3 source text[], $4 amount int[], $5 remaining int[],
-- $6 opening int[], $7 priority int[], $8 effective_at timestamptz[], $9 expires_at timestamptz[],
-- $10 reference text[], $11 state text[], $12 rollover int[], $13 period_months int[]
INSERT INTO worker.credit_grant AS g (grant_id, user_id, source, amount, remaining, opening, priority,
                                      effective_at, expires_at, reference, state, rollover, period_months)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::int[], $5::int[], $6::int[], $7::int[],
                     $8::timestamptz[], $9::timestamptz[], $10::text[], $11::text[], $12::int[], $13::int[])
ON CONFLICT (grant_id) DO UPDATE
SET amount = g.amount + EXCLUDED.amount, remaining = g.remaining + EXCLUDED.remaining,
    opening = g.opening + EXCLUDED.opening

-- claim_events --
-- (The per-event families' claim, worker/domain/each.py; usage batches write their keys in
-- write_ledger.)
-- Take the idempotency keys of new events. Rows come sorted by event id so that concurrent
-- claimers wait on each other in one order. Returns only the keys this call took.
-- $1 event ids text[], $2 event types text[], $3 payload hashes text[], $4 clerk user ids text[],
-- $5 raw hashes text[] (of the event as it arrived; NULL when it has none)
INSERT INTO worker.event_log (event_id, event_type, payload_hash, clerk_user_id, raw_hash)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[])
ON CONFLICT (event_id) DO NOTHING
RETURNING event_id

-- find_decided_events --
-- The recorded hashes of events already decided: the payload hash (same payload: a duplicate,
-- else an idempotency conflict) and the raw hash (a replay that matches it is a duplicate
-- before it is validated again). worker.decided_events always uses the primary key, whatever
-- the table's statistics say (migrations 0004, 0005).
-- $3 event ids, packed (worker/repo/packed.py): $1 separator, $2 NULL marker
SELECT event_id, payload_hash, raw_hash FROM worker.decided_events((string_to_array($3, $1, $2))[2:])

-- write_ledger --
-- Everything a batch decided, in one statement: the idempotency keys of its decided events
-- (applied or rejected), usage rows, journal movements, openings, balances, grants and holds. Balance
-- and grant deltas come aggregated, one per row. Keys come sorted, so concurrent writers wait on each
-- other in one order. No ON CONFLICT: a key decided since the batch's lookup (a twin that
-- committed first) fails the statement and rolls the transaction back; the caller then settles
-- that event as seen and runs the rest again (worker/ledger/apply.py).
-- Columns come packed as delimited text (worker/repo/packed.py: $1 separator, $2 NULL marker;
-- `(string_to_array($n, $1, $2))[2:]` is the column), but for the timestamps:
-- $3..$7 worker.event_log: event_id, event_type, payload_hash, clerk_user_id, raw_hash (of the
--        event as it arrived; NULL when it has none)
-- $8..$13 "UsageHistory": id, userId, creditBalanceId, operationType, creditsUsed (int),
--        details (JSON text); $46 its timestamps, timestamp[]
-- $14..$20 journal: event_id, user_id, kind, delta (int), refund_of, reference, reason;
--        $25 its grants (JSON text: [[grant id, delta], …])
-- $21..$22 openings: user_id, opening (int)
-- $23..$24 balances: "CreditBalance".id, delta (int)
-- $26..$30 grants (worker.credit_grant): grant_id, remaining, expired, opening and amount deltas
-- $31..$39 new holds (worker.credit_hold): hold_id, user_id, clerk_user_id, credits (int),
--        operation_type, details (JSON text), over_capture, request_hash, allocation (JSON text);
--        $47 expires_at, $48 created_at, timestamptz[]
-- $40..$45 resolved holds: hold_id, status, captured (int), usage_id, taken (JSON text),
--        resolved_by; $49 resolved_at timestamptz. Only a hold still `held` resolves: the
--        count says how many did (the callers hold the balance lock and checked; this is the
--        last word)
WITH decided AS (
    INSERT INTO worker.event_log (event_id, event_type, payload_hash, clerk_user_id, raw_hash)
    SELECT * FROM unnest((string_to_array($3, $1, $2))[2:], (string_to_array($4, $1, $2))[2:],
                         (string_to_array($5, $1, $2))[2:], (string_to_array($6, $1, $2))[2:],
                         (string_to_array($7, $1, $2))[2:])
    RETURNING 1
), usage_rows AS (
    INSERT INTO "UsageHistory" ("id", "userId", "creditBalanceId", "operationType", "creditsUsed", "details", "timestamp")
    SELECT u.id, u.user_id, u.balance_id, u.op::"OperationType", u.credits, u.details::jsonb, u.ts
    FROM unnest((string_to_array($8, $1, $2))[2:], (string_to_array($9, $1, $2))[2:],
                (string_to_array($10, $1, $2))[2:], (string_to_array($11, $1, $2))[2:],
                (string_to_array($12, $1, $2))[2:]::int[], (string_to_array($13, $1, $2))[2:],
                $46::timestamp[])
         AS u(id, user_id, balance_id, op, credits, details, ts)
    RETURNING 1
), journal_rows AS (
    INSERT INTO worker.journal (event_id, user_id, kind, delta, refund_of, reference, reason, grants)
    SELECT j.event_id, j.user_id, j.kind, j.delta, j.refund_of, j.reference, j.reason, j.grants::jsonb
    FROM unnest((string_to_array($14, $1, $2))[2:], (string_to_array($15, $1, $2))[2:],
                (string_to_array($16, $1, $2))[2:], (string_to_array($17, $1, $2))[2:]::int[],
                (string_to_array($18, $1, $2))[2:], (string_to_array($19, $1, $2))[2:],
                (string_to_array($20, $1, $2))[2:], (string_to_array($25, $1, $2))[2:])
         AS j(event_id, user_id, kind, delta, refund_of, reference, reason, grants)
    RETURNING 1
), openings AS (
    INSERT INTO worker.balance_opening (user_id, opening)
    SELECT * FROM unnest((string_to_array($21, $1, $2))[2:], (string_to_array($22, $1, $2))[2:]::int[])
    ON CONFLICT (user_id) DO NOTHING
    RETURNING 1
), balances AS (
    UPDATE "CreditBalance" cb
    SET "creditsRemaining" = cb."creditsRemaining" + d.delta,
        "updatedAt" = CURRENT_TIMESTAMP,
        "lastSyncedAt" = CURRENT_TIMESTAMP
    FROM unnest((string_to_array($23, $1, $2))[2:], (string_to_array($24, $1, $2))[2:]::int[]) AS d(id, delta)
    WHERE cb.id = d.id
    RETURNING 1
), grant_rows AS (
    UPDATE worker.credit_grant g
    SET remaining = g.remaining + d.remaining, expired = g.expired + d.expired,
        opening = g.opening + d.opening, amount = g.amount + d.amount
    FROM unnest((string_to_array($26, $1, $2))[2:], (string_to_array($27, $1, $2))[2:]::int[],
                (string_to_array($28, $1, $2))[2:]::int[], (string_to_array($29, $1, $2))[2:]::int[],
                (string_to_array($30, $1, $2))[2:]::int[])
         AS d(grant_id, remaining, expired, opening, amount)
    WHERE g.grant_id = d.grant_id
    RETURNING 1
), new_holds AS (
    INSERT INTO worker.credit_hold (hold_id, user_id, clerk_user_id, credits, operation_type, details,
                                    over_capture, request_hash, allocation, expires_at, created_at)
    SELECT h.hold_id, h.user_id, h.clerk_user_id, h.credits, h.operation_type, h.details::jsonb,
           h.over_capture, h.request_hash, h.allocation::jsonb, h.expires_at, h.created_at
    FROM unnest((string_to_array($31, $1, $2))[2:], (string_to_array($32, $1, $2))[2:],
                (string_to_array($33, $1, $2))[2:], (string_to_array($34, $1, $2))[2:]::int[],
                (string_to_array($35, $1, $2))[2:], (string_to_array($36, $1, $2))[2:],
                (string_to_array($37, $1, $2))[2:], (string_to_array($38, $1, $2))[2:],
                (string_to_array($39, $1, $2))[2:], $47::timestamptz[], $48::timestamptz[])
         AS h(hold_id, user_id, clerk_user_id, credits, operation_type, details, over_capture, request_hash,
              allocation, expires_at, created_at)
    RETURNING 1
), resolved_holds AS (
    UPDATE worker.credit_hold h
    SET status = r.status, captured = r.captured, usage_id = r.usage_id, taken = r.taken::jsonb,
        resolved_by = r.resolved_by, resolved_at = $49
    FROM unnest((string_to_array($40, $1, $2))[2:], (string_to_array($41, $1, $2))[2:],
                (string_to_array($42, $1, $2))[2:]::int[], (string_to_array($43, $1, $2))[2:],
                (string_to_array($44, $1, $2))[2:], (string_to_array($45, $1, $2))[2:])
         AS r(hold_id, status, captured, usage_id, taken, resolved_by)
    -- `status || ''`: the partial indexes on status = 'held' must not be picked over the
    -- primary key (a cached plan scanned every open hold for each one resolved)
    WHERE h.hold_id = r.hold_id AND h.status || '' = 'held'
    RETURNING 1
)
SELECT (SELECT count(*) FROM decided) AS decided,
       (SELECT count(*) FROM usage_rows) AS usage_rows,
       (SELECT count(*) FROM journal_rows) AS journal_rows,
       (SELECT count(*) FROM openings) AS openings,
       (SELECT count(*) FROM balances) AS balances,
       (SELECT count(*) FROM grant_rows) AS grants,
       (SELECT count(*) FROM new_holds) AS new_holds,
       (SELECT count(*) FROM resolved_holds) AS resolved_holds

-- insert_rejections --
-- Store refused events with their reason (overdraft, refund too large, invalid input…); returns
-- the (event_id, reason) stored now (one already there is a redelivery: skipped).
-- $1 event_id text[], $2 event_type text[], $3 reason text[], $4 detail text[], $5 payload text[]
INSERT INTO worker.rejection (event_id, event_type, reason, detail, payload)
SELECT r.event_id, r.event_type, r.reason, r.detail, r.payload::jsonb
FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[])
     AS r(event_id, event_type, reason, detail, payload)
ON CONFLICT (event_id, reason) DO NOTHING
RETURNING event_id, reason
