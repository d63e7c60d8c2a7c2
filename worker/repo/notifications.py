"""Outbox writes (`sql/queries/notifications.sql`): worker.notification and its deliveries."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import NamedTuple

import asyncpg

from .. import db


async def insert_notifications(
    conn: asyncpg.Connection, rows: Sequence[tuple[str, str, str, str | None, str]],
    deliveries: Sequence[tuple[str, str]],
) -> int:
    """rows: (key, webhook_id, type, clerk_user_id, data JSON) in write order; deliveries:
    (key, endpoint). Returns how many notifications were new."""
    if not rows:
        return 0
    columns = [list(c) for c in zip(*rows, strict=True)]
    keys, endpoints = ([list(c) for c in zip(*deliveries, strict=True)] if deliveries else ([], []))
    row = await db.fetchrow(conn, "insert_notifications", *columns, keys, endpoints)
    return row["notifications"]


class ExpiringGrant(NamedTuple):
    grant_id: str
    user_id: str
    clerk_user_id: str | None
    source: str
    remaining: int
    expires_at: datetime


class LongWaiting(NamedTuple):
    event_id: str
    queue: str
    event_type: str
    clerk_user_id: str | None
    reason: str
    waits_for: str
    detail: str | None
    first_waited_at: datetime


async def notice_expiring_grants(
    conn: asyncpg.Connection, horizon: datetime, limit: int, now: datetime
) -> list[ExpiringGrant]:
    """Live grants expiring by `horizon`, not noticed before: marked noticed now."""
    return [ExpiringGrant(*r) for r in await db.fetch(conn, "notice_expiring_grants", horizon, limit, now)]


async def notice_long_waiting(conn: asyncpg.Connection, cutoff: datetime, limit: int, now: datetime) -> list[LongWaiting]:
    """Events waiting since before `cutoff`, not noticed before: marked noticed now."""
    return [LongWaiting(*r) for r in await db.fetch(conn, "notice_long_waiting", cutoff, limit, now)]
