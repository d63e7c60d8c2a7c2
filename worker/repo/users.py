"""User queries (`sql/queries/users.sql`)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import asyncpg

from .. import db
from ..ids import new_id, prisma_timestamp


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


@dataclass(frozen=True)
class Profile:
    """What one user event writes to "User". A new user gets `email` and `name` (none when
    inactive); an existing one only those flagged `write_*`."""

    email: str | None
    name: str | None
    write_email: bool
    write_name: bool
    active: bool
    created_at: datetime | None = None  # Clerk's created_at; None: the insert time


async def upsert_user_profile(
    conn: asyncpg.Connection, clerk_id: str, profile: Profile
) -> tuple[str, str | None]:
    """Returns (user id, id of the balance created now or None). The balance opens at 0.
    Raises asyncpg's UniqueViolationError when another user holds the email."""
    row = await db.fetchrow(
        conn, "upsert_user_profile", new_id(), clerk_id, profile.email, profile.name,
        profile.write_email, profile.write_name, profile.active,
        prisma_timestamp(profile.created_at), new_id(),
    )  # fmt: skip
    assert row is not None
    return row["user_id"], row["balance_id"]


async def grant_starter_credits(
    conn: asyncpg.Connection, clerk_id: str, user_id: str, balance_id: str, credits: int
) -> bool:
    """The starter movement (`starter/<clerk id>`) and its credits; False if that Clerk id
    already had them."""
    return await db.fetchval(
        conn, "grant_starter_credits", clerk_id, user_id, balance_id, credits
    ) is not None  # fmt: skip


async def deactivate_user(conn: asyncpg.Connection, clerk_id: str) -> bool:
    """Deactivate and clear email and name. True if the user existed and was active."""
    return bool(await db.fetchval(conn, "deactivate_user", clerk_id))


async def find_user_id(conn: asyncpg.Connection, clerk_id: str) -> str | None:
    return await db.fetchval(conn, "find_user_id", clerk_id)


async def link_subscription_events(conn: asyncpg.Connection, clerk_id: str, user_id: str) -> int:
    """Fill in "SubscriptionEvent"."userId" where this Clerk user's rows have none; how many.
    Holds the user's link lock until commit (billing takes it shared: no row slips between)."""
    await db.execute(conn, "lock_user_link", clerk_id)
    status = await db.execute(conn, "link_subscription_events", clerk_id, user_id)
    return int(status.rsplit(" ", 1)[-1])
