"""Queue `storage`: storage.object_created / storage.object_deleted.

Keys in worker.event_log (`claim_key`):

- a create is one *upload*: its `id` is the "StorageObject" id and the key. An upload over the
  same pathname is another upload with its own id (the Vercel Blob ingress derives it from what
  tells uploads apart: etag, upload time, size…, docs/ingress.md).
- a delete is one per object *and user*: `storage.object_deleted/<id>/<clerkUserId>`, hashed
  without `deletedAt` (StorageObjectDeleted.payload_hash). An app retry with a fresh `deletedAt`
  is a duplicate, and another user's delete, refused (`not_owner`), claims only its own key, so
  the owner's delete still applies.

A create takes the advisory locks of its user's pathname, then of its object; a delete, of its
object. So the uploads of one pathname, and the create and deletes of one object, are decided
one at a time, even before the rows exist (no index on the app's table is ours to add).

- create: its user must exist, else it waits (`unknown_user`); without a size the blob is asked
  with HEAD, and it waits (`no_size`) until that answers. Inserted once; its owner's delete that
  came first (a tombstone) makes it deleted, other users' early deletes are refused
  (`not_owner`). Then one live row per (user, pathname): the newest upload stays live, the other
  live rows are soft-deleted at its createdAt (`replaced`; `superseded` when the new one is
  older than a live one). A re-upload after a delete is a new live row.
- delete: only the owner's (else `not_owner`, nothing changed); an object already deleted stays
  as it is; an object not created yet gets a tombstone (one per object and user).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import asyncpg
import httpx

from ..blob_head import BlobHeadFailed, head_blob
from ..errors import MustWait
from ..events import StorageObjectCreated, StorageObjectDeleted, storage_event_adapter
from ..ledger.decide import APPLIED, Outcome
from ..repo import storage as repo
from ..repo.storage import LiveObject
from ..repo.users import find_user_id
from ..settings import Settings
from .each import Family, reject


def claim_key(event: StorageObjectCreated | StorageObjectDeleted) -> str:
    if isinstance(event, StorageObjectCreated):
        return event.id
    return f"{event.type}/{event.id}/{event.clerkUserId}"


def superseded(
    new: LiveObject, new_is_live: bool, others: Sequence[LiveObject]
) -> tuple[list[str], datetime]:
    """One live row per (user, pathname): which rows an upload landing now makes deleted, and
    when. `others` are the pathname's other live rows. The newest upload stays (the new one on a
    tie); every other live row is deleted at its createdAt."""
    newest = max([new, *others], key=lambda o: (o.created_at, o is new))
    losers = [o.id for o in others if o is not newest]
    if new_is_live and newest is not new:
        losers.append(new.id)
    return losers, newest.created_at


async def _blob_size(event: StorageObjectCreated, settings: Settings) -> int:
    """The size of a create that came without one: one HEAD per try (the waiting event comes
    back every `waiting_retry_ms`, which is the retry)."""
    if event.size is not None:
        return event.size
    try:
        async with httpx.AsyncClient(headers={"user-agent": "pedro-worker"}) as client:
            head = await head_blob(client, event.url, retries=0,
                                   timeout_s=settings.blob_head_timeout_ms / 1000)  # fmt: skip
    except BlobHeadFailed as exc:
        raise MustWait("no_size", f"blob:{event.id}", exc.detail) from None
    return head.size


async def _settle_tombstones(
    conn: asyncpg.Connection, event: StorageObjectCreated
) -> datetime | None:
    """The deletes of this object that came first: the owner's is applied (returns when),
    every other user's is refused."""
    object_id, deleted_at = event.id, None
    for tombstone in await repo.find_open_tombstones(conn, object_id):
        if tombstone.clerk_user_id == event.clerkUserId:
            deleted_at = tombstone.deleted_at
            await repo.resolve_tombstone(conn, object_id, tombstone.clerk_user_id, "applied")
            continue
        early_delete = StorageObjectDeleted(
            type="storage.object_deleted", id=object_id, clerkUserId=tombstone.clerk_user_id,
            deletedAt=tombstone.deleted_at,
        )  # fmt: skip
        await reject(conn, early_delete, tombstone.event_id, "not_owner",
                     "the object belongs to another user")  # fmt: skip
        await repo.resolve_tombstone(conn, object_id, tombstone.clerk_user_id, "refused")
    return deleted_at


async def _create(
    conn: asyncpg.Connection, event: StorageObjectCreated, settings: Settings
) -> Outcome:
    user_id = await find_user_id(conn, event.clerkUserId)
    if user_id is None:
        raise MustWait("unknown_user", f"user:{event.clerkUserId}")
    size = await _blob_size(event, settings)
    await repo.lock_storage_pathname(conn, event.clerkUserId, event.pathname)
    await repo.lock_storage_object(conn, event.id)
    deleted_at = await _settle_tombstones(conn, event)
    created_at = await repo.insert_storage_object(conn, event, user_id, size, deleted_at)
    if created_at is None:  # a row with this id that the worker did not write (the app's own)
        return Outcome(event.id, APPLIED, "already_exists")
    others = await repo.find_live_objects_at_pathname(
        conn, event.clerkUserId, event.pathname, event.id
    )
    losers, at = superseded(LiveObject(event.id, created_at), deleted_at is None, others)
    await repo.soft_delete_storage_objects(conn, losers, at)
    if event.id in losers:
        return Outcome(event.id, APPLIED, "superseded")
    if deleted_at is not None:
        return Outcome(event.id, APPLIED, "deleted_before_created")
    return Outcome(event.id, APPLIED, "replaced" if losers else None)


async def _delete(conn: asyncpg.Connection, event: StorageObjectDeleted) -> Outcome:
    key = claim_key(event)
    await repo.lock_storage_object(conn, event.id)
    stored = await repo.find_storage_object(conn, event.id)
    if stored is None:
        await repo.insert_tombstone(conn, event.id, event.clerkUserId, event.deletedAt, key)
        return Outcome(key, APPLIED, "before_create")
    if stored.clerk_user_id != event.clerkUserId:
        return await reject(conn, event, key, "not_owner", "the object belongs to another user")
    if stored.deleted_at is not None:
        return Outcome(key, APPLIED, "already_deleted")
    await repo.soft_delete_storage_objects(conn, [event.id], event.deletedAt)
    return Outcome(key, APPLIED)


async def apply_storage_event(conn: asyncpg.Connection, event: Any, settings: Settings) -> Outcome:
    if isinstance(event, StorageObjectCreated):
        return await _create(conn, event, settings)
    return await _delete(conn, event)


STORAGE = Family("storage", storage_event_adapter, apply_storage_event, claim_key=claim_key,
                 warnings=frozenset({"already_exists", "superseded"}))  # fmt: skip
