-- insert_user_with_balance --
-- Create a "User" and its "CreditBalance" unless the Clerk id exists (ids are Prisma cuids made
-- by the caller; updatedAt set here as Prisma's client would), as the app or a seed would: no
-- journal movement; the ledger records the balance as its opening when it first moves it. For
-- the dev demo, benches and tests. Returns the user id, or nothing when the user already existed.
-- $1 user id text, $2 clerkId text, $3 email text, $4 name text, $5 balance id text, $6 credits int
WITH new_user AS (
    INSERT INTO "User" ("id", "clerkId", "email", "name", "updatedAt")
    VALUES ($1, $2, $3, $4, CURRENT_TIMESTAMP)
    ON CONFLICT ("clerkId") DO NOTHING
    RETURNING "id", "clerkId"
)
INSERT INTO "CreditBalance" ("id", "userId", "clerkUserId", "creditsRemaining", "updatedAt")
SELECT $5, new_user."id", new_user."clerkId", $6, CURRENT_TIMESTAMP FROM new_user
RETURNING "userId"

-- get_balances --
-- Current balance of each given Clerk user. $1 clerk user ids text[]
SELECT "clerkUserId" AS clerk_user_id, "creditsRemaining" AS credits
FROM "CreditBalance" WHERE "clerkUserId" = ANY($1::text[])

-- lock_user_state --
-- The ordering state of a Clerk user's events, created if missing and locked until commit, so
-- that events of one user are decided one at a time. $1 clerk user id text
INSERT INTO worker.user_state AS s (clerk_user_id) VALUES ($1)
ON CONFLICT (clerk_user_id) DO UPDATE SET updated_at = now()
RETURNING s.profile_updated_at, s.deleted_at

-- save_user_state --
-- Record the profile version applied and/or the deletion time (NULL keeps the stored value).
-- $1 clerk user id text, $2 profile_updated_at timestamptz, $3 deleted_at timestamptz
UPDATE worker.user_state
SET profile_updated_at = COALESCE($2, profile_updated_at),
    deleted_at = COALESCE($3, deleted_at),
    updated_at = now()
WHERE clerk_user_id = $1

-- upsert_user_profile --
-- Make sure the "User" and its "CreditBalance" exist. A new user gets this profile (and Clerk's
-- creation time); an existing one gets its email ($5) and name ($6) only when the caller says so
-- (the newest profile). An inactive user (deleted) never holds an email or a name and is never
-- reactivated. A new balance opens at 0 (the starter credits are a journal movement:
-- grant_starter_credits). Raises a unique violation on "User_email_key" when another user holds
-- the email. Returns the user id and the id of the balance created now (NULL if it existed).
-- $1 new user id text, $2 clerkId text, $3 email text, $4 name text, $5 write email bool,
-- $6 write name bool, $7 active bool, $8 createdAt timestamp (NULL: now), $9 new balance id text
WITH u AS (
    INSERT INTO "User" AS u ("id", "clerkId", "email", "name", "isActive", "createdAt", "updatedAt")
    VALUES ($1, $2, CASE WHEN $7 THEN $3::text END, CASE WHEN $7 THEN $4::text END, $7,
            COALESCE($8::timestamp, CURRENT_TIMESTAMP), CURRENT_TIMESTAMP)
    ON CONFLICT ("clerkId") DO UPDATE
    SET "email" = CASE WHEN NOT EXCLUDED."isActive" THEN NULL
                       WHEN $5 THEN EXCLUDED."email" ELSE u."email" END,
        "name" = CASE WHEN NOT EXCLUDED."isActive" THEN NULL
                      WHEN $6 THEN EXCLUDED."name" ELSE u."name" END,
        "isActive" = u."isActive" AND EXCLUDED."isActive",
        "updatedAt" = CASE WHEN $5 OR $6 OR (u."isActive" AND NOT EXCLUDED."isActive")
                           THEN CURRENT_TIMESTAMP ELSE u."updatedAt" END
    RETURNING u."id", u."clerkId"
), balance AS (
    INSERT INTO "CreditBalance" ("id", "userId", "clerkUserId", "creditsRemaining", "updatedAt")
    SELECT $9, u."id", u."clerkId", 0, CURRENT_TIMESTAMP FROM u
    ON CONFLICT DO NOTHING
    RETURNING "id", "userId"
), opening AS (
    INSERT INTO worker.balance_opening (user_id, opening)
    SELECT "userId", 0 FROM balance
    ON CONFLICT (user_id) DO NOTHING
    RETURNING 1
)
SELECT u."id" AS user_id, (SELECT "id" FROM balance) AS balance_id FROM u

-- grant_starter_credits --
-- A Clerk user's starter credits, once ever: the journal movement 'starter/<clerk user id>' (its
-- primary key: a Clerk id whose "User" was removed and created again gets none the second time),
-- their grant (never expiring, priority 10: worker/ledger/grants.py) and the balance created with
-- the user. Returns the credits granted, nothing if already granted.
-- $1 clerk user id text, $2 "User".id text, $3 "CreditBalance".id text, $4 credits int
WITH starter AS (
    INSERT INTO worker.journal (event_id, user_id, kind, delta, reference, reason, grants)
    VALUES ('starter/' || $1, $2, 'starter', $4::int, $1, 'starter credits',
            jsonb_build_array(jsonb_build_array('starter/' || $1, $4::int)))
    ON CONFLICT (event_id) DO NOTHING
    RETURNING delta
), grant_row AS (
    INSERT INTO worker.credit_grant (grant_id, user_id, source, amount, remaining, priority,
                                     effective_at, reference, state)
    SELECT 'starter/' || $1, $2, 'starter', s.delta, s.delta, 10, now(), $1, 'live' FROM starter s
    RETURNING 1
)
UPDATE "CreditBalance" cb
SET "creditsRemaining" = cb."creditsRemaining" + s.delta, "updatedAt" = CURRENT_TIMESTAMP
FROM starter s
WHERE cb."id" = $3
RETURNING s.delta

-- deactivate_user --
-- A deleted Clerk user: "User".isActive = false and its email and name cleared (no personal data
-- kept for no purpose, and the address is free for a new sign-up); no row is deleted. Returns
-- whether the user was active, or nothing if no such user or nothing left to change.
-- $1 clerkId text
UPDATE "User" u
SET "isActive" = false, "email" = NULL, "name" = NULL, "updatedAt" = CURRENT_TIMESTAMP
FROM (SELECT "id", "isActive" FROM "User" WHERE "clerkId" = $1 FOR NO KEY UPDATE) old
WHERE u."id" = old."id" AND (u."isActive" OR u."email" IS NOT NULL OR u."name" IS NOT NULL)
RETURNING old."isActive" AS was_active

-- find_user_id --
-- The "User".id of a Clerk user, if any. $1 clerkId text
SELECT "id" FROM "User" WHERE "clerkId" = $1

-- link_subscription_events --
-- A user that exists now owns the "SubscriptionEvent" rows its billing events left without a
-- "userId" (recorded before the user arrived); in the user event's transaction. Through
-- "SubscriptionEvent_clerkUserId_idx". Returns how many rows were linked in its status.
-- $1 clerkUserId text, $2 "User".id text
UPDATE "SubscriptionEvent" SET "userId" = $2 WHERE "clerkUserId" = $1 AND "userId" IS NULL

-- lock_user_link --
-- Held from here to commit while a user event links the user's "SubscriptionEvent" rows: a
-- billing event recording a row without "userId" meanwhile (it takes the shared lock before it
-- looks the user up) either commits first, so the link sees its row, or waits for this commit,
-- so it finds the user. $1 clerkUserId text
SELECT pg_advisory_xact_lock(hashtextextended('pedro.user_link:' || $1, 0))
