-- insert_user_with_balance --
-- Create a "User" and its "CreditBalance" unless the Clerk id exists (ids are Prisma cuids made
-- by the caller; updatedAt set here as Prisma's client would). Returns the user id, or nothing
-- when the user already existed.
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
-- Make sure the "User" and its "CreditBalance" exist; write email and name only when this event
-- is the newest profile ($5); a deleted user is created inactive and never reactivated. A new
-- balance gets the starter credits and its journal opening. Returns the user id and whether a
-- balance was created.
-- $1 new user id text, $2 clerkId text, $3 email text, $4 name text, $5 apply profile bool,
-- $6 active bool, $7 new balance id text, $8 starter credits int
WITH u AS (
    INSERT INTO "User" AS u ("id", "clerkId", "email", "name", "isActive", "updatedAt")
    VALUES ($1, $2, $3, $4, $6, CURRENT_TIMESTAMP)
    ON CONFLICT ("clerkId") DO UPDATE
    SET "email" = CASE WHEN $5 THEN EXCLUDED."email" ELSE u."email" END,
        "name" = CASE WHEN $5 THEN EXCLUDED."name" ELSE u."name" END,
        "isActive" = u."isActive" AND EXCLUDED."isActive",
        "updatedAt" = CASE WHEN $5 OR (u."isActive" AND NOT EXCLUDED."isActive")
                           THEN CURRENT_TIMESTAMP ELSE u."updatedAt" END
    RETURNING u."id", u."clerkId"
), balance AS (
    INSERT INTO "CreditBalance" ("id", "userId", "clerkUserId", "creditsRemaining", "updatedAt")
    SELECT $7, u."id", u."clerkId", $8, CURRENT_TIMESTAMP FROM u
    ON CONFLICT DO NOTHING
    RETURNING "userId"
), opening AS (
    INSERT INTO worker.balance_opening (user_id, opening)
    SELECT "userId", $8 FROM balance
    ON CONFLICT (user_id) DO NOTHING
    RETURNING 1
)
SELECT u."id" AS user_id, EXISTS (SELECT 1 FROM balance) AS balance_created FROM u

-- deactivate_user --
-- "User".isActive = false (no row is deleted). Returns the user id, or nothing if no such user
-- or already inactive. $1 clerkId text
UPDATE "User" SET "isActive" = false, "updatedAt" = CURRENT_TIMESTAMP
WHERE "clerkId" = $1 AND "isActive"
RETURNING "id"

-- find_user_id --
-- The "User".id of a Clerk user, if any. $1 clerkId text
SELECT "id" FROM "User" WHERE "clerkId" = $1
