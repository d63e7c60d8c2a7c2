"""What ops read of `worker.credit_grant` (`sql/queries/grants_ops.sql`): one user's grants
(`pedro-worker user show`) and the credits expiring or expired (dashboard, `/metrics`)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

import asyncpg

from .. import db


@dataclass(frozen=True)
class GrantRow:
    """One grant as ops see it."""

    grant_id: str
    source: str  # starter, plan, pack, adjustment, promo, legacy, overdraft, rollover
    state: str  # pending, live, expired, voided
    amount: int
    remaining: int  # <= 0 for the overdraft grant: the debt
    priority: int
    effective_at: datetime
    expires_at: datetime | None  # None: never
    reference: str | None
    expired: int  # credits that expired with it
    ended_at: datetime | None


@dataclass(frozen=True)
class ExpiredDay:
    day: date  # UTC
    credits: int
    grants: int


def _grant(r: asyncpg.Record) -> GrantRow:
    return GrantRow(
        r["grant_id"], r["source"], r["state"], r["amount"], r["remaining"], r["priority"],
        r["effective_at"], r["expires_at"], r["reference"], r["expired"], r["ended_at"],
    )  # fmt: skip


async def list_user_live_grants(conn: asyncpg.Connection, user_id: str) -> list[GrantRow]:
    """The user's live grants in burn order (the overdraft grant, if any, last)."""
    return [_grant(r) for r in await db.fetch(conn, "list_user_live_grants", user_id)]


async def list_user_pending_grants(conn: asyncpg.Connection, user_id: str) -> list[GrantRow]:
    """The user's grants not live yet, the next to start first."""
    return [_grant(r) for r in await db.fetch(conn, "list_user_pending_grants", user_id)]


async def list_user_ended_grants(
    conn: asyncpg.Connection, user_id: str, limit: int
) -> tuple[list[GrantRow], int]:
    """The user's last `limit` expired or voided grants, latest first, and how many it has."""
    rows = await db.fetch(conn, "list_user_ended_grants", user_id, limit)
    return [_grant(r) for r in rows], rows[0]["ended_total"] if rows else 0


async def summarize_expiring_credits(
    conn: asyncpg.Connection, until: datetime
) -> tuple[int, int]:
    """(credits, users): what live grants expiring before `until` still hold, and whose."""
    row = await db.fetchrow(conn, "summarize_expiring_credits", until)
    assert row is not None
    return row["credits"], row["users"]


async def sum_expired_credits_by_day(
    conn: asyncpg.Connection, since: datetime
) -> list[ExpiredDay]:
    """Credits expired per UTC day since `since`, oldest first (days with none left out)."""
    rows = await db.fetch(conn, "sum_expired_credits_by_day", since)
    return [ExpiredDay(r["day"], r["credits"], r["grants"]) for r in rows]
