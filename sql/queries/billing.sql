-- find_plan --
-- The plan a payment grants: by "Plan".id = planId, else "Plan".asaasId = planId, else
-- "Plan".asaasId = one of the Asaas ids the payment came through (payment link, subscription),
-- in that order. $1 planId text (or NULL), $2 Asaas ids text[] in order of preference
SELECT "id", "credits", "billingSource", "priceMonthlyCents", "priceYearlyCents", "features"::text
FROM "Plan"
WHERE "id" = $1 OR "asaasId" = $1 OR "asaasId" = ANY($2::text[])
ORDER BY ("id" = $1) DESC NULLS LAST, ("asaasId" = $1) DESC NULLS LAST,
         array_position($2::text[], "asaasId") NULLS LAST
LIMIT 1

-- plans_with_credits --
-- Which of these references name a plan with credits now ("Plan".id or "Plan".asaasId): what
-- releases payments waiting for `plan:<ref>`. $1 references text[]
SELECT r.ref
FROM unnest($1::text[]) AS r(ref)
WHERE EXISTS (SELECT 1 FROM "Plan" p WHERE (p."id" = r.ref OR p."asaasId" = r.ref) AND p."credits" > 0)

-- read_payment --
-- A payment's facts, unlocked (to tell whose it is before locking the balance). $1 payment id
SELECT * FROM worker.billing_payment WHERE payment_id = $1

-- lock_payment --
-- A payment's facts, created if missing and locked until commit. $1 payment id text
INSERT INTO worker.billing_payment AS p (payment_id) VALUES ($1)
ON CONFLICT (payment_id) DO UPDATE SET updated_at = now()
RETURNING p.*

-- save_payment --
-- $1 payment id, then the facts in PaymentFacts order (worker/domain/payments.py)
UPDATE worker.billing_payment
SET clerk_user_id = $2, customer_id = $3, subscription_id = $4, installment_id = $5,
    installment_number = $6, installment_count = $7, payment_link_id = $8, plan_ref = $9,
    value_cents = $10, value_at = $11, created_at = $12, paid_at = $13, paid_last_at = $14,
    refunded_cents = $15, refunded_full_at = $16, chargeback_at = $17, chargeback_open = $18,
    cash_undone_at = $19, plan_override = $20, updated_at = now()
WHERE payment_id = $1

-- installment_payments --
-- The facts of every installment of an installment plan seen so far. $1 installment id
SELECT * FROM worker.billing_payment WHERE installment_id = $1 ORDER BY installment_number, payment_id

-- lock_grant --
-- A grant, locked until commit (no row: nothing granted yet). $1 grant id
SELECT * FROM worker.billing_grant WHERE grant_id = $1 FOR UPDATE

-- save_grant --
-- $1 grant id, $2 clerk user id, $3 user id, $4 kind, $5 outcome, $6 plan id, $7 cycle,
-- $8 credits, $9 reversed credits, $10 debt recorded, $11 moves, $12 note
INSERT INTO worker.billing_grant AS g (grant_id, clerk_user_id, user_id, kind, outcome, plan_id,
    cycle, credits, reversed_credits, debt_recorded, moves, note)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
ON CONFLICT (grant_id) DO UPDATE
SET kind = EXCLUDED.kind, outcome = EXCLUDED.outcome, plan_id = EXCLUDED.plan_id,
    cycle = EXCLUDED.cycle, credits = EXCLUDED.credits, reversed_credits = EXCLUDED.reversed_credits,
    debt_recorded = EXCLUDED.debt_recorded, moves = EXCLUDED.moves, note = EXCLUDED.note,
    updated_at = now()

-- read_debt --
-- What a user owes (0: nothing). Read under the user's balance lock. $1 user id
SELECT coalesce((SELECT amount FROM worker.credit_debt WHERE user_id = $1), 0)

-- save_debt --
-- $1 user id, $2 amount
INSERT INTO worker.credit_debt (user_id, amount) VALUES ($1, $2)
ON CONFLICT (user_id) DO UPDATE SET amount = EXCLUDED.amount, updated_at = now()

-- remember_customer --
-- An Asaas customer belongs to this Clerk user (the first event naming both decides).
-- $1 customer id, $2 clerk user id
INSERT INTO worker.billing_customer (customer_id, clerk_user_id) VALUES ($1, $2)
ON CONFLICT (customer_id) DO NOTHING

-- customer_clerk_user --
-- $1 customer id
SELECT clerk_user_id FROM worker.billing_customer WHERE customer_id = $1

-- known_customers --
-- Which of these customers have a Clerk user: releases `customer:<id>`. $1 customer ids text[]
SELECT customer_id FROM worker.billing_customer WHERE customer_id = ANY($1::text[])

-- insert_subscription_event --
-- One row per provider event (its id is the provider's event id). Returns the id, or nothing if
-- the row existed. $1 id text, $2 userId text, $3 clerkUserId text, $4 planKey text,
-- $5 status text, $6 eventType text, $7 occurredAt timestamp (UTC), $8 metadata jsonb
INSERT INTO "SubscriptionEvent" ("id", "userId", "clerkUserId", "planKey", "status", "eventType",
                                 "occurredAt", "metadata")
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
ON CONFLICT ("id") DO NOTHING
RETURNING "id"

-- lock_user_link_shared --
-- Before looking up the "User".id of a "SubscriptionEvent" row (users.sql lock_user_link).
-- $1 clerkUserId text
SELECT pg_advisory_xact_lock_shared(hashtextextended('pedro.user_link:' || $1, 0))
