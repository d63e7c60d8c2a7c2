"""Reconcile queries (`sql/queries/reconcile.sql`)."""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from .. import db


@dataclass(frozen=True)
class Drift:
    user_id: str
    clerk_user_id: str | None
    expected: int | None
    actual: int | None


async def find_balance_drift(conn: asyncpg.Connection) -> list[Drift]:
    rows = await db.fetch(conn, "find_balance_drift")
    return [Drift(r["user_id"], r["clerk_user_id"], r["expected"], r["actual"]) for r in rows]


async def count_tracked_balances(conn: asyncpg.Connection) -> int:
    return await db.fetchval(conn, "count_tracked_balances")
