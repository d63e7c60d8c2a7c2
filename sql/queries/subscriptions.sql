-- save_subscription_state --
-- A SUBSCRIPTION_* event's view of its subscription: each field it states replaces the stored
-- one if the event is at least as new as the newest applied (state_at); ids fill gaps.
-- $1 subscription id, $2 clerk user id, $3 customer id, $4 plan ref, $5 cycle, $6 value cents,
-- $7 status, $8 next due date, $9 event time
INSERT INTO worker.billing_subscription AS s (subscription_id, clerk_user_id, customer_id,
    plan_ref, cycle, value_cents, status, next_due_date, state_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
ON CONFLICT (subscription_id) DO UPDATE
SET clerk_user_id = coalesce(s.clerk_user_id, EXCLUDED.clerk_user_id),
    customer_id = coalesce(s.customer_id, EXCLUDED.customer_id),
    plan_ref = CASE WHEN $9 >= coalesce(s.state_at, '-infinity') THEN coalesce($4, s.plan_ref)
                    ELSE coalesce(s.plan_ref, $4) END,
    cycle = CASE WHEN $9 >= coalesce(s.state_at, '-infinity') THEN coalesce($5, s.cycle)
                 ELSE coalesce(s.cycle, $5) END,
    value_cents = CASE WHEN $9 >= coalesce(s.state_at, '-infinity') THEN coalesce($6, s.value_cents)
                       ELSE coalesce(s.value_cents, $6) END,
    status = CASE WHEN $9 >= coalesce(s.state_at, '-infinity') THEN coalesce($7, s.status)
                  ELSE coalesce(s.status, $7) END,
    next_due_date = CASE WHEN $9 >= coalesce(s.state_at, '-infinity') THEN coalesce($8, s.next_due_date)
                         ELSE coalesce(s.next_due_date, $8) END,
    state_at = greatest(s.state_at, $9),
    updated_at = now()

-- note_subscription_payment --
-- A payment of the subscription names its user or customer: kept if the subscription had none.
-- Does not make the subscription's state newer. $1 subscription id, $2 clerk user id, $3 customer id
INSERT INTO worker.billing_subscription AS s (subscription_id, clerk_user_id, customer_id)
VALUES ($1, $2, $3)
ON CONFLICT (subscription_id) DO UPDATE
SET clerk_user_id = coalesce(s.clerk_user_id, EXCLUDED.clerk_user_id),
    customer_id = coalesce(s.customer_id, EXCLUDED.customer_id), updated_at = now()
WHERE (s.clerk_user_id IS NULL AND EXCLUDED.clerk_user_id IS NOT NULL)
   OR (s.customer_id IS NULL AND EXCLUDED.customer_id IS NOT NULL)

-- insert_subscription_plan --
-- From this event's time on, the subscription has this plan (cycle, value).
-- $1 subscription id, $2 effective at, $3 event id, $4 plan ref, $5 cycle, $6 value cents
INSERT INTO worker.billing_subscription_plan (subscription_id, effective_at, event_id, plan_ref, cycle, value_cents)
VALUES ($1, $2, $3, $4, $5, $6)
ON CONFLICT DO NOTHING

-- subscription_plan_at --
-- The plan (and cycle) a subscription had at $2: the newest entry stating one at or before it,
-- else its first (a subscription's first payment is created before its SUBSCRIPTION_CREATED is
-- dated, within the same day). $1 subscription id, $2 timestamptz
SELECT
  (SELECT plan_ref FROM worker.billing_subscription_plan
   WHERE subscription_id = $1 AND plan_ref IS NOT NULL
   ORDER BY (effective_at <= $2) DESC, CASE WHEN effective_at <= $2 THEN effective_at END DESC,
            effective_at, event_id DESC
   LIMIT 1) AS plan_ref,
  (SELECT cycle FROM worker.billing_subscription_plan
   WHERE subscription_id = $1 AND cycle IS NOT NULL
   ORDER BY (effective_at <= $2) DESC, CASE WHEN effective_at <= $2 THEN effective_at END DESC,
            effective_at, event_id DESC
   LIMIT 1) AS cycle

-- subscription_clerk_user --
-- $1 subscription id
SELECT clerk_user_id, customer_id, plan_ref, cycle FROM worker.billing_subscription WHERE subscription_id = $1

-- subscriptions_with_plans --
-- Which of these subscriptions name a plan now (or are a "Plan".asaasId with credits): releases
-- `subscription:<id>`. $1 subscription ids text[]
SELECT s.id
FROM unnest($1::text[]) AS s(id)
WHERE EXISTS (SELECT 1 FROM worker.billing_subscription b WHERE b.subscription_id = s.id AND b.plan_ref IS NOT NULL)
   OR EXISTS (SELECT 1 FROM "Plan" p WHERE p."asaasId" = s.id AND p."credits" > 0)
