"""Storage queries (`sql/queries/storage.sql`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from .. import db
from ..events import StorageObjectCreated
from ..ids import prisma_timestamp


@dataclass(frozen=True)
class StoredObject:
    clerk_user_id: str
    deleted_at: datetime | None


@dataclass(frozen=True)
class Tombstone:
    clerk_user_id: str
    deleted_at: datetime
    event_id: str


@dataclass(frozen=True)
class LiveObject:
    id: str
    created_at: datetime


@dataclass(frozen=True)
class StorageUsage:
    clerk_user_id: str
    live_objects: int
    live_bytes: int


async def lock_storage_object(conn: asyncpg.Connection, object_id: str) -> None:
    await db.execute(conn, "lock_storage_object", object_id)


async def lock_storage_pathname(
    conn: asyncpg.Connection, clerk_user_id: str, pathname: str
) -> None:
    await db.execute(conn, "lock_storage_pathname", clerk_user_id, pathname)


async def find_storage_object(conn: asyncpg.Connection, object_id: str) -> StoredObject | None:
    row = await db.fetchrow(conn, "find_storage_object", object_id)
    return StoredObject(row["clerk_user_id"], row["deleted_at"]) if row else None


async def insert_storage_object(
    conn: asyncpg.Connection, event: StorageObjectCreated, user_id: str, size: int,
    deleted_at: datetime | None,
) -> datetime | None:  # fmt: skip
    """The row's createdAt if inserted, None if an object with this id already existed."""
    return await db.fetchval(
        conn, "insert_storage_object", event.id, user_id, event.clerkUserId, event.provider, event.url,
        event.pathname, event.name, event.contentType, size, prisma_timestamp(deleted_at),
        prisma_timestamp(event.createdAt),
    )  # fmt: skip


async def find_live_objects_at_pathname(
    conn: asyncpg.Connection, clerk_user_id: str, pathname: str, except_id: str
) -> list[LiveObject]:
    rows = await db.fetch(
        conn, "find_live_objects_at_pathname", clerk_user_id, pathname, except_id
    )
    return [LiveObject(r["id"], r["created_at"]) for r in rows]


async def soft_delete_storage_objects(
    conn: asyncpg.Connection, object_ids: Sequence[str], deleted_at: datetime
) -> None:
    """`deleted_at`: an aware datetime, or a naive UTC one read from a TIMESTAMP(3) column."""
    if object_ids:
        when = prisma_timestamp(deleted_at) if deleted_at.tzinfo else deleted_at
        await db.execute(conn, "soft_delete_storage_objects", list(object_ids), when)


async def find_open_tombstones(conn: asyncpg.Connection, object_id: str) -> list[Tombstone]:
    rows = await db.fetch(conn, "find_open_tombstones", object_id)
    return [Tombstone(r["clerk_user_id"], r["deleted_at"], r["event_id"]) for r in rows]


async def insert_tombstone(
    conn: asyncpg.Connection,
    object_id: str,
    clerk_user_id: str,
    deleted_at: datetime,
    event_id: str,
) -> None:
    await db.execute(conn, "insert_tombstone", object_id, clerk_user_id, deleted_at, event_id)


async def resolve_tombstone(
    conn: asyncpg.Connection, object_id: str, clerk_user_id: str, resolution: str
) -> None:
    await db.execute(conn, "resolve_tombstone", object_id, clerk_user_id, resolution)


async def storage_usage_by_user(
    conn: asyncpg.Connection, clerk_user_ids: Sequence[str] | None = None
) -> list[StorageUsage]:
    """Live bytes and object count per user (all users when `clerk_user_ids` is None)."""
    ids = list(clerk_user_ids) if clerk_user_ids is not None else None
    rows = await db.fetch(conn, "storage_usage_by_user", ids)
    return [StorageUsage(r["clerk_user_id"], r["live_objects"], r["live_bytes"]) for r in rows]
