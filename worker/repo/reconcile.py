"""Reconcile queries (`sql/queries/reconcile.sql`)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import asyncpg

from .. import db


@dataclass(frozen=True)
class Drift:
    user_id: str
    clerk_user_id: str | None
    expected: int | None
    actual: int | None


def _drift(row: asyncpg.Record) -> Drift:
    return Drift(row["user_id"], row["clerk_user_id"], row["expected"], row["actual"])


async def iter_balance_drift(
    conn: asyncpg.Connection, page_size: int = 5_000
) -> AsyncIterator[tuple[int, list[Drift]]]:
    """Yields (balances checked in this step, drifting ones), page by page in user id order,
    then once more for journal users that have no opening balance."""
    after = ""
    while True:
        rows = await db.fetch(conn, "find_balance_drift", after, page_size)
        if not rows[0]["page_size"]:
            break
        yield rows[0]["page_size"], [_drift(r) for r in rows if r["user_id"] is not None]
        after = rows[0]["page_last"]
    orphans = await db.fetch(conn, "find_journal_without_opening")
    yield 0, [_drift(r) for r in orphans]


async def find_balance_drift(conn: asyncpg.Connection) -> list[Drift]:
    """Every user whose balance differs from opening + Σ journal movements."""
    drift = [d async for _, page in iter_balance_drift(conn) for d in page]
    return sorted(drift, key=lambda d: d.user_id)


async def count_tracked_balances(conn: asyncpg.Connection) -> int:
    return await db.fetchval(conn, "count_tracked_balances")
