"""What ops read and change in `worker.waiting` (`sql/queries/waiting_ops.sql`)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import asyncpg

from .. import db

OPEN_STATES = ("waiting", "released")


async def list_waiting(
    conn: asyncpg.Connection, *, reason: str | None = None, queue: str | None = None,
    clerk_user_id: str | None = None, states: Sequence[str] = OPEN_STATES, limit: int | None = 100,
) -> tuple[list[asyncpg.Record], int]:
    """Open waiting events, oldest first, and how many match in all (limit None: all)."""
    rows = await db.fetch(conn, "list_waiting", reason, queue, clerk_user_id, list(states), limit)
    return rows, rows[0]["matching"] if rows else 0


async def get_waiting(conn: asyncpg.Connection, event_id: str) -> asyncpg.Record | None:
    return await db.fetchrow(conn, "get_waiting", event_id)


async def find_waiting_states(conn: asyncpg.Connection, event_ids: Sequence[str]) -> dict[str, str]:
    """event id -> state of the waiting rows that exist."""
    rows = await db.fetch(conn, "find_waiting_states", list(event_ids))
    return {r["event_id"]: r["state"] for r in rows}


async def lock_waiting_for_drop(
    conn: asyncpg.Connection, event_ids: Sequence[str]
) -> list[asyncpg.Record]:
    return await db.fetch(conn, "lock_waiting_for_drop", sorted(set(event_ids)))


async def mark_dropped(
    conn: asyncpg.Connection, event_ids: Sequence[str], *, by: str, why: str, now: datetime
) -> int:
    status = await db.execute(conn, "mark_dropped", list(event_ids), by, why, now)
    return int(status.rsplit(" ", 1)[-1])


async def summarize_waiting(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    """(reason, queue, events, oldest first_waited_at) of the open waiting events."""
    return await db.fetch(conn, "summarize_waiting")
