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
