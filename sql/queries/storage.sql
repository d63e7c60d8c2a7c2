-- lock_storage_object --
-- Serialize the create and the deletes of one object until commit (the object may not exist
-- yet, so there is no row to lock). $1 object id text
SELECT pg_advisory_xact_lock(hashtextextended('pedro.storage:' || $1, 0))

-- lock_storage_pathname --
-- Serialize the uploads of one user's pathname until commit (one live row per user and
-- pathname; an index on the app's table is not ours to add). Taken before the object's lock.
-- $1 clerk user id text, $2 pathname text
SELECT pg_advisory_xact_lock(hashtextextended('pedro.storage.path:' || $1 || E'\n' || $2, 0))

-- find_storage_object --
-- An object's owner and deletion, locked. $1 object id text
SELECT "clerkUserId" AS clerk_user_id, "deletedAt" AS deleted_at
FROM "StorageObject" WHERE "id" = $1
FOR NO KEY UPDATE

-- insert_storage_object --
-- Insert an object once; returns its createdAt, or nothing if a row with this id existed.
-- $1 id text, $2 userId text, $3 clerkUserId text, $4 provider text, $5 url text,
-- $6 pathname text, $7 name text, $8 contentType text, $9 size int, $10 deletedAt timestamp,
-- $11 createdAt timestamp (NULL: now)
INSERT INTO "StorageObject" ("id", "userId", "clerkUserId", "provider", "url", "pathname", "name",
                             "contentType", "size", "deletedAt", "createdAt", "updatedAt")
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, COALESCE($11, CURRENT_TIMESTAMP), CURRENT_TIMESTAMP)
ON CONFLICT ("id") DO NOTHING
RETURNING "createdAt" AS created_at

-- find_live_objects_at_pathname --
-- The other live objects of one user's pathname, locked (the upload that lands now replaces
-- them, or is replaced by a newer one). $1 clerk user id text, $2 pathname text, $3 id to leave out
SELECT "id" AS id, "createdAt" AS created_at
FROM "StorageObject"
WHERE "clerkUserId" = $1 AND "pathname" = $2 AND "deletedAt" IS NULL AND "id" <> $3
ORDER BY "id"
FOR NO KEY UPDATE

-- soft_delete_storage_objects --
-- Mark live objects deleted. $1 ids text[], $2 deletedAt timestamp
UPDATE "StorageObject" SET "deletedAt" = $2, "updatedAt" = CURRENT_TIMESTAMP
WHERE "id" = ANY($1::text[]) AND "deletedAt" IS NULL

-- find_open_tombstones --
-- The deletes (one per user) that arrived before their object and are not resolved yet.
-- $1 object id text
SELECT clerk_user_id, deleted_at, event_id
FROM worker.storage_tombstone WHERE object_id = $1 AND resolved IS NULL
ORDER BY clerk_user_id

-- insert_tombstone --
-- Keep a delete whose object does not exist yet, one per object and user.
-- $1 object id text, $2 clerk user id text, $3 deleted_at timestamptz, $4 event id text
INSERT INTO worker.storage_tombstone (object_id, clerk_user_id, deleted_at, event_id)
VALUES ($1, $2, $3, $4)
ON CONFLICT (object_id, clerk_user_id) DO NOTHING

-- resolve_tombstone --
-- The object's create landed: this user's early delete was applied or refused.
-- $1 object id text, $2 clerk user id text, $3 'applied' | 'refused'
UPDATE worker.storage_tombstone SET resolved = $3 WHERE object_id = $1 AND clerk_user_id = $2

-- storage_usage_by_user --
-- Live (not deleted) bytes and object count per Clerk user, for ops; all users when $1 is NULL.
-- $1 clerk user ids text[] or NULL
SELECT "clerkUserId" AS clerk_user_id, count(*) AS live_objects, COALESCE(sum("size"), 0)::bigint AS live_bytes
FROM "StorageObject"
WHERE "deletedAt" IS NULL AND ($1::text[] IS NULL OR "clerkUserId" = ANY($1::text[]))
GROUP BY "clerkUserId"
ORDER BY live_bytes DESC, "clerkUserId"
