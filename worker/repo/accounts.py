"""One user's account as ops see it (`sql/queries/accounts.sql`): `pedro-worker user show`."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import asyncpg

from .. import db


@dataclass(frozen=True)
class UserAccount:
    user_id: str
    clerk_user_id: str
    email: str | None
    is_active: bool
    balance: int | None  # None: the user has no "CreditBalance"
    debt: int = 0  # what a reversal could not take back (worker.credit_debt)


@dataclass(frozen=True)
class Movement:
    event_id: str
    kind: str  # usage, refund, adjustment, starter, grant, grant_reversal, grant_restore, …
    delta: int
    reference: str | None  # what it refers to: the usage refunded, the payment granted, …
    reason: str | None  # why: the operation, an adjustment's reason, the plan, …
    created_at: datetime


async def find_user_account(conn: asyncpg.Connection, clerk_user_id: str) -> UserAccount | None:
    row = await db.fetchrow(conn, "find_user_account", clerk_user_id)
    if row is None:
        return None
    return UserAccount(
        row["user_id"], row["clerk_user_id"], row["email"], row["is_active"], row["balance"],
        row["debt"],
    )  # fmt: skip


async def list_user_movements(
    conn: asyncpg.Connection, user_id: str, after: tuple[datetime, str] | None, limit: int
) -> list[Movement]:
    """A page of movements, newest first, after `after` = (created_at, event_id) of the last
    movement of the previous page (None: the first page)."""
    at, event_id = after if after is not None else (None, None)
    rows = await db.fetch(conn, "list_user_movements", user_id, at, event_id, limit)
    return [
        Movement(r["event_id"], r["kind"], r["delta"], r["reference"], r["reason"], r["created_at"])
        for r in rows
    ]
