-- show_payment_grants --
-- The grants a payment belongs to: its own (grant id = payment id) and its installment plan's
-- ('installment:' || installment id). $1 grant ids text[]
SELECT grant_id, clerk_user_id, user_id, kind, outcome, plan_id, cycle, credits,
       reversed_credits, debt_recorded, moves, note, granted_at, updated_at
FROM worker.billing_grant
WHERE grant_id = ANY($1::text[])
ORDER BY granted_at, grant_id

-- show_grant_movements --
-- The journal movements of these grants (grant, grant_reversal, grant_restore, debt_payment:
-- their reference is the grant id), oldest first. Narrowed to the grants' users, so the read
-- goes through journal_user_created_idx: the journal has no index on reference.
-- $1 grant ids text[], $2 "User".ids text[]
SELECT event_id, user_id, kind, delta, reference, reason, created_at
FROM worker.journal
WHERE user_id = ANY($2::text[]) AND reference = ANY($1::text[])
ORDER BY created_at, event_id

-- show_payment_subscription_events --
-- The "SubscriptionEvent" rows of a payment: those whose Asaas payload names it, and those of
-- its events that waited (their ids). An ops read of the whole table: the payload has no index.
-- $1 payment id text, $2 event ids text[]
SELECT "id" AS event_id, "eventType" AS event_type, "status" AS status,
       "occurredAt" AT TIME ZONE 'UTC' AS occurred_at, "planKey" AS plan_key,
       "clerkUserId" AS clerk_user_id, "userId" AS user_id
FROM "SubscriptionEvent"
WHERE "metadata"->'payment'->>'id' = $1 OR "id" = ANY($2::text[])
ORDER BY "occurredAt", "id"

-- show_payment_waiting --
-- The billing events of a payment in worker.waiting, whatever their state, oldest first. An ops
-- read of the billing rows: the payload has no index. $1 payment id text
SELECT event_id, event_type, clerk_user_id, reason, waits_for, detail, state, occurred_at,
       first_waited_at, times_waited, released_at, times_released, resolved_at, dropped_by,
       drop_reason
FROM worker.waiting
WHERE queue = 'billing' AND event->>'paymentId' = $1
ORDER BY first_waited_at, event_id

-- show_event_rejections --
-- What was stored as refused (or noted) of these events, oldest first. $1 event ids text[]
SELECT event_id, event_type, reason, detail, created_at
FROM worker.rejection
WHERE event_id = ANY($1::text[])
ORDER BY created_at, id

-- show_billing_customer --
-- Which Clerk user an Asaas customer belongs to. $1 customer id text
SELECT customer_id, clerk_user_id, updated_at
FROM worker.billing_customer
WHERE customer_id = $1

-- show_subscription_state --
-- An Asaas subscription as its events describe it now. $1 subscription id text
SELECT subscription_id, clerk_user_id, customer_id, plan_ref, cycle, value_cents, status,
       next_due_date, state_at, created_at, updated_at
FROM worker.billing_subscription
WHERE subscription_id = $1

-- show_subscription_plans --
-- A subscription's plan history (which plan, cycle and value from when), oldest first.
-- $1 subscription id text
SELECT effective_at, event_id, plan_ref, cycle, value_cents
FROM worker.billing_subscription_plan
WHERE subscription_id = $1
ORDER BY effective_at, event_id

-- show_payment_allowances --
-- The credit grants a payment's grant made (its monthly allowances, a pack's grant), in start
-- order. $1 grant ids text[] (the payment, or its installment plan)
SELECT grant_id, source, amount, remaining, priority, state, effective_at, expires_at, expired
FROM worker.credit_grant
WHERE reference = ANY($1::text[]) AND source IN ('plan', 'pack')
ORDER BY effective_at, grant_id
