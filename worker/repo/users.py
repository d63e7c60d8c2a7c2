"""User queries (`sql/queries/users.sql`)."""

from __future__ import annotations

import asyncpg

from .. import db
from ..ids import new_id


async def insert_user_with_balance(
    conn: asyncpg.Connection, clerk_id: str, *, email: str | None = None, name: str | None = None,
    credits: int = 100,
) -> str | None:  # fmt: skip
    """Returns the new user's id, or None if that Clerk id already had a user."""
    return await db.fetchval(
        conn, "insert_user_with_balance", new_id(), clerk_id, email, name, new_id(), credits
    )


async def get_balances(conn: asyncpg.Connection, clerk_ids: list[str]) -> dict[str, int]:
    rows = await db.fetch(conn, "get_balances", clerk_ids)
    return {r["clerk_user_id"]: r["credits"] for r in rows}
