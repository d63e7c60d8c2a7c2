-- find_plan --
-- The plan a payment grants: by "Plan".id = planId, else "Plan".asaasId = planId, else
-- "Plan".asaasId = one of the Asaas ids the payment came through (payment link, subscription),
-- in that order. $1 planId text (or NULL), $2 Asaas ids text[] in order of preference
SELECT "id", "credits"
FROM "Plan"
WHERE "id" = $1 OR "asaasId" = $1 OR "asaasId" = ANY($2::text[])
ORDER BY ("id" = $1) DESC NULLS LAST, ("asaasId" = $1) DESC NULLS LAST,
         array_position($2::text[], "asaasId") NULLS LAST
LIMIT 1

-- lock_payment --
-- A payment's grant state, created if missing and locked until commit.
-- $1 payment id text, $2 clerk user id text
INSERT INTO worker.billing_payment AS p (payment_id, clerk_user_id) VALUES ($1, $2)
ON CONFLICT (payment_id) DO UPDATE SET updated_at = now()
RETURNING p.clerk_user_id, p.paid_at, p.reversed_at, p.grant_outcome, p.plan_id,
          p.granted_credits, p.reversal_outcome

-- save_payment --
-- $1 payment id text, $2 paid_at timestamptz, $3 reversed_at timestamptz, $4 grant_outcome text,
-- $5 plan_id text, $6 granted_credits int, $7 reversal_outcome text
UPDATE worker.billing_payment
SET paid_at = $2, reversed_at = $3, grant_outcome = $4, plan_id = $5, granted_credits = $6,
    reversal_outcome = $7, updated_at = now()
WHERE payment_id = $1

-- insert_subscription_event --
-- One row per provider event (its id is the provider's event id). Returns the id, or nothing if
-- the row existed. $1 id text, $2 userId text, $3 clerkUserId text, $4 planKey text,
-- $5 status text, $6 eventType text, $7 occurredAt timestamp (UTC), $8 metadata jsonb
INSERT INTO "SubscriptionEvent" ("id", "userId", "clerkUserId", "planKey", "status", "eventType",
                                 "occurredAt", "metadata")
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
ON CONFLICT ("id") DO NOTHING
RETURNING "id"
