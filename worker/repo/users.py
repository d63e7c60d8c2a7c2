"""User queries (`sql/queries/users.sql`)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

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


@dataclass(frozen=True)
class UserState:
    """The ordering state of one Clerk user's events (worker.user_state)."""

    profile_updated_at: datetime | None
    deleted_at: datetime | None


async def lock_user_state(conn: asyncpg.Connection, clerk_id: str) -> UserState:
    row = await db.fetchrow(conn, "lock_user_state", clerk_id)
    assert row is not None
    return UserState(row["profile_updated_at"], row["deleted_at"])


async def save_user_state(
    conn: asyncpg.Connection, clerk_id: str, *, profile_updated_at: datetime | None = None,
    deleted_at: datetime | None = None,
) -> None:  # fmt: skip
    await db.execute(conn, "save_user_state", clerk_id, profile_updated_at, deleted_at)


async def upsert_user_profile(
    conn: asyncpg.Connection, clerk_id: str, *, email: str | None, name: str | None,
    apply_profile: bool, active: bool, starter_credits: int,
) -> tuple[str, bool]:  # fmt: skip
    """Returns (user id, whether its balance was created now). Raises asyncpg's
    UniqueViolationError when the email belongs to another user."""
    row = await db.fetchrow(
        conn, "upsert_user_profile", new_id(), clerk_id, email, name, apply_profile, active,
        new_id(), starter_credits,
    )  # fmt: skip
    assert row is not None
    return row["user_id"], row["balance_created"]


async def deactivate_user(conn: asyncpg.Connection, clerk_id: str) -> bool:
    """True if the user existed and was active."""
    return await db.fetchval(conn, "deactivate_user", clerk_id) is not None


async def find_user_id(conn: asyncpg.Connection, clerk_id: str) -> str | None:
    return await db.fetchval(conn, "find_user_id", clerk_id)
