-- Storage deletes are decided per object *and user* (issue 16): a delete that arrives before its
-- object is kept per (object, user), so another user's early delete no longer takes the place of
-- the owner's. When the object lands, the owner's is applied and every other user's is refused
-- (`not_owner`). Rows are still marked resolved, never removed.
ALTER TABLE worker.storage_tombstone DROP CONSTRAINT storage_tombstone_pkey;
ALTER TABLE worker.storage_tombstone ADD CONSTRAINT storage_tombstone_pkey
    PRIMARY KEY (object_id, clerk_user_id);
