"""Reconcile queries (`sql/queries/reconcile.sql`).

Drift kinds: `balance` (a balance vs its opening + journal), `grants` (a balance vs the sum of
its live grants), `grant` (a grant vs its opening + what the journal moved in or out of it),
`hold` (a hold vs its journal movements and, once captured, its "UsageHistory" row).
Not drift: `balance_without_grants`, a balance the worker has not touched yet; `hold_overdue`,
a hold still held well past its expiry (its journal agrees: the sweep has not released it)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import asyncpg

from .. import db


@dataclass(frozen=True)
class Drift:
    user_id: str
    clerk_user_id: str | None
    expected: int | None
    actual: int | None
    kind: str = "balance"
    grant_id: str | None = None
    hold_id: str | None = None
    detail: str | None = None  # what disagrees, in words (holds)


WITHOUT_GRANTS = "balance_without_grants"
HOLD, HOLD_OVERDUE = "hold", "hold_overdue"


def _drift(row: asyncpg.Record) -> Drift:
    return Drift(row["user_id"], row["clerk_user_id"], row["expected"], row["actual"])


def _grant_drift(row: asyncpg.Record) -> Drift:
    return Drift(row["user_id"], row["clerk_user_id"], row["expected"], row["actual"],
                 row["kind"], row["grant_id"])  # fmt: skip


async def _pages(
    conn: asyncpg.Connection, page_query: str, rest_query: str, page_size: int,
    finding: Callable[[asyncpg.Record], Drift], found: str,
) -> AsyncIterator[tuple[int, list[Drift]]]:  # fmt: skip
    """A reconcile pass: `page_query` page by page in user id order (its first row says where the
    page ended and how many it checked; rows whose `found` column is not NULL are findings),
    then `rest_query` once, for what the pages cannot see."""
    after = ""
    while True:
        rows = await db.fetch(conn, page_query, after, page_size)
        if not rows[0]["page_size"]:
            break
        yield rows[0]["page_size"], [finding(r) for r in rows if r[found] is not None]
        after = rows[0]["page_last"]
    yield 0, [finding(r) for r in await db.fetch(conn, rest_query)]


def iter_balance_drift(conn: asyncpg.Connection, page_size: int = 5_000) -> AsyncIterator[tuple[int, list[Drift]]]:
    """Yields (balances checked in this step, drifting ones), page by page in user id order,
    then once more for journal users that have no opening balance."""
    return _pages(conn, "find_balance_drift", "find_journal_without_opening", page_size, _drift, "user_id")


async def find_balance_drift(conn: asyncpg.Connection) -> list[Drift]:
    """Every user whose balance differs from opening + Σ journal movements."""
    drift = [d async for _, page in iter_balance_drift(conn) for d in page]
    return sorted(drift, key=lambda d: d.user_id)


async def count_tracked_balances(conn: asyncpg.Connection) -> int:
    return await db.fetchval(conn, "count_tracked_balances")


def iter_grant_drift(conn: asyncpg.Connection, page_size: int = 5_000) -> AsyncIterator[tuple[int, list[Drift]]]:
    """Yields (users checked in this step, findings: kinds `grants`, `grant` and
    `balance_without_grants`), page by page in user id order, then once more for the expired
    grants that no movement names."""
    return _pages(conn, "find_grant_drift", "find_expired_grant_drift", page_size, _grant_drift, "kind")


async def find_grant_drift(conn: asyncpg.Connection) -> list[Drift]:
    """Every balance that differs from its live grants, every grant that differs from its
    journal (balances without grants are not drift)."""
    found = [d async for _, page in iter_grant_drift(conn) for d in page]
    drift = [d for d in found if d.kind != WITHOUT_GRANTS]
    return sorted(drift, key=lambda d: (d.user_id, d.kind, d.grant_id or ""))


async def count_grant_checked_users(conn: asyncpg.Connection) -> int:
    return await db.fetchval(conn, "count_grant_checked_users")


def _hold_drift(row: asyncpg.Record) -> Drift:
    return Drift(row["user_id"], row["clerk_user_id"], row["expected"], row["actual"], HOLD,
                 hold_id=row["hold_id"], detail=row["detail"])  # fmt: skip


def iter_hold_drift(conn: asyncpg.Connection, page_size: int = 5_000) -> AsyncIterator[tuple[int, list[Drift]]]:
    """Yields (holds checked in this step, findings of kind `hold`), page by page in hold id
    order, then once more for hold movements whose hold has no row."""
    return _pages(conn, "find_hold_drift", "find_orphan_hold_movements", page_size, _hold_drift, "hold_id")


async def find_hold_drift(conn: asyncpg.Connection) -> list[Drift]:
    """Every hold whose journal (or "UsageHistory" row) disagrees with it, and every hold
    movement without its hold."""
    found = [d async for _, page in iter_hold_drift(conn) for d in page]
    return sorted(found, key=lambda d: (d.hold_id or "", d.user_id))


async def find_overdue_holds(conn: asyncpg.Connection, now: datetime, grace: timedelta) -> list[Drift]:
    """Holds still held more than `grace` past their expiry (kind `hold_overdue`, not drift):
    expected 0 credits held, actual what it still holds."""
    rows = await db.fetch(conn, "find_overdue_holds", now - grace)
    return [
        Drift(r["user_id"], r["clerk_user_id"], 0, r["credits"], HOLD_OVERDUE, hold_id=r["hold_id"],
              detail=f"not drift: held {int((now - r['expires_at']).total_seconds())}s past its expiry "
                     f"({r['expires_at'].isoformat()}), the grant sweep has not released it")  # fmt: skip
        for r in rows
    ]


async def count_holds(conn: asyncpg.Connection) -> int:
    return await db.fetchval(conn, "count_holds")
