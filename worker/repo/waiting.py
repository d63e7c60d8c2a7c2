"""Durable waiting queries (`sql/queries/waiting.sql`)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, NamedTuple

import asyncpg

from .. import db


class WaitingRow(NamedTuple):
    """An event that waits: (claim key, queue, type, event JSON text, payload hash, clerk user
    id, reason, waits_for, detail, occurred_at)."""

    event_id: str
    queue: str
    event_type: str
    event: str
    payload_hash: str
    clerk_user_id: str | None
    reason: str
    waits_for: str
    detail: str | None
    occurred_at: datetime | None


async def lock_waiting_hashes(conn: asyncpg.Connection, event_ids: Sequence[str]) -> dict[str, str]:
    rows = await db.fetch(conn, "lock_waiting_hashes", sorted(event_ids))
    return {r["event_id"]: r["payload_hash"] for r in rows}


async def wait_events(conn: asyncpg.Connection, rows: Sequence[WaitingRow], now: datetime) -> None:
    if rows:
        ordered = sorted(rows, key=lambda r: r.event_id)
        await db.execute(conn, "wait_events", *[list(column) for column in zip(*ordered)], now)


async def try_sweep_lock(conn: asyncpg.Connection) -> bool:
    return bool(await db.fetchval(conn, "try_sweep_lock"))


async def resolve_decided(conn: asyncpg.Connection, now: datetime) -> int:
    status = await db.execute(conn, "resolve_decided_waiting", now)
    return int(status.rsplit(" ", 1)[-1])


async def open_keys(conn: asyncpg.Connection, resend_before: datetime) -> list[asyncpg.Record]:
    return await db.fetch(conn, "open_waiting_keys", resend_before)


async def operation_type_labels(conn: asyncpg.Connection) -> list[str]:
    return [r["enumlabel"] for r in await db.fetch(conn, "operation_type_labels")]


async def lock_releasable(
    conn: asyncpg.Connection, *, keys: Sequence[str] | None, event_ids: Sequence[str] | None,
    resend_before: datetime, limit: int,
) -> list[tuple[str, str, Any]]:
    rows = await db.fetch(
        conn, "lock_releasable", None if keys is None else list(keys),
        None if event_ids is None else list(event_ids), resend_before, limit,
    )  # fmt: skip
    return [(r["event_id"], r["queue"], r["event"]) for r in rows]


async def mark_released(conn: asyncpg.Connection, event_ids: Sequence[str], now: datetime) -> None:
    await db.execute(conn, "mark_released", list(event_ids), now)
