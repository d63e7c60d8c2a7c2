"""Queue `storage`: storage.object_created / storage.object_deleted.

The create's `id` is the "StorageObject" id and its idempotency key; a delete is keyed
`storage.object_deleted/<id>` (one delete per object). Both take a per-object advisory lock, so
a create and a delete of one object are decided one at a time even before the row exists:

- create: insert once (its user must exist, else it waits: `unknown_user`); a delete that
  arrived first (a tombstone) is applied now if it came from the owner, refused otherwise;
- delete: only the owner's (else `not_owner`, nothing changed); an object already deleted stays
  as it is; an object not created yet gets a tombstone.
"""

from __future__ import annotations

from typing import Any

import asyncpg

from ..errors import RetryLater
from ..events import StorageObjectCreated, StorageObjectDeleted, storage_event_adapter
from ..ledger.decide import APPLIED, Outcome
from ..repo import storage as repo
from ..repo.users import find_user_id
from ..settings import Settings
from .each import Family, reject


def claim_key(event: StorageObjectCreated | StorageObjectDeleted) -> str:
    return event.id if isinstance(event, StorageObjectCreated) else f"{event.type}/{event.id}"


async def _create(conn: asyncpg.Connection, event: StorageObjectCreated) -> Outcome:
    user_id = await find_user_id(conn, event.clerkUserId)
    if user_id is None:
        raise RetryLater(["unknown_user"])
    deleted_at = None
    note = None
    tombstone = await repo.find_open_tombstone(conn, event.id)
    if tombstone is not None and tombstone.clerk_user_id == event.clerkUserId:
        deleted_at, note = tombstone.deleted_at, "deleted_before_created"
        await repo.resolve_tombstone(conn, event.id, "applied")
    elif tombstone is not None:
        early_delete = StorageObjectDeleted(
            type="storage.object_deleted", id=event.id, clerkUserId=tombstone.clerk_user_id,
            deletedAt=tombstone.deleted_at,
        )  # fmt: skip
        await reject(
            conn,
            early_delete,
            tombstone.event_id,
            "not_owner",
            "the object belongs to another user",
        )
        await repo.resolve_tombstone(conn, event.id, "refused")
    inserted = await repo.insert_storage_object(conn, event, user_id, deleted_at)
    return Outcome(event.id, APPLIED, note if inserted else "already_exists")


async def _delete(conn: asyncpg.Connection, event: StorageObjectDeleted) -> Outcome:
    key = claim_key(event)
    stored = await repo.find_storage_object(conn, event.id)
    if stored is None:
        await repo.insert_tombstone(conn, event.id, event.clerkUserId, event.deletedAt, key)
        return Outcome(key, APPLIED, "before_create")
    if stored.clerk_user_id != event.clerkUserId:
        return await reject(conn, event, key, "not_owner", "the object belongs to another user")
    if stored.deleted_at is not None:
        return Outcome(key, APPLIED, "already_deleted")
    await repo.soft_delete_storage_object(conn, event.id, event.deletedAt)
    return Outcome(key, APPLIED)


async def apply_storage_event(conn: asyncpg.Connection, event: Any, settings: Settings) -> Outcome:
    await repo.lock_storage_object(conn, event.id)
    if isinstance(event, StorageObjectCreated):
        return await _create(conn, event)
    return await _delete(conn, event)


STORAGE = Family("storage", storage_event_adapter, apply_storage_event, claim_key=claim_key,
                 warnings=frozenset({"already_exists"}))  # fmt: skip
