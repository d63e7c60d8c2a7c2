"""Hold queries (`sql/queries/holds.sql`): worker.credit_hold, and the API's balance and movements."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from .. import db
from . import packed
from ..ledger.grants import decode
from ..ledger.holds import Hold


@dataclass(slots=True)
class HoldRow:
    """A hold with what the API and ops show of it."""

    hold: Hold
    request_hash: str
    captured: int | None
    usage_id: str | None
    resolved_by: str | None
    details: str | None
    created_at: datetime
    expires_at: datetime
    resolved_at: datetime | None


def _hold(r: asyncpg.Record) -> Hold:
    return Hold(r["hold_id"], r["user_id"], r["clerk_user_id"], r["credits"], r["status"], r["expires"],
                decode(r["allocation"]), r["over_capture"], r["operation_type"])  # fmt: skip


def _rows(rows: Sequence[asyncpg.Record]) -> dict[str, HoldRow]:
    return {
        r["hold_id"]: HoldRow(_hold(r), r["request_hash"], r["captured"], r["usage_id"], r["resolved_by"],
                              r["details"], r["created_at"], r["expires_at"], r["resolved_at"])  # fmt: skip
        for r in rows
    }


async def find_holds(conn: asyncpg.Connection, hold_ids: Sequence[str]) -> dict[str, HoldRow]:
    return _rows(await db.fetch(conn, "find_holds", list(hold_ids)))


async def holds_of_user(conn: asyncpg.Connection, user_id: str, hold_id: str) -> dict[str, HoldRow]:
    """The hold `hold_id` (whoever's) and the user's open holds (the caller holds the balance)."""
    return _rows(await db.fetch(conn, "holds_of_user", user_id, hold_id))


async def find_due_holds(conn: asyncpg.Connection, user_ids: Sequence[str], now: datetime) -> list[Hold]:
    """The open holds of these users past their expiry (the caller holds their balances)."""
    return [_hold(r) for r in await db.fetch(conn, "find_due_holds", *packed.arguments([user_ids]), now)]


async def due_holds_by_user(conn: asyncpg.Connection, user_ids: Sequence[str], now: datetime) -> dict[str, list[Hold]]:
    """find_due_holds, by "User".id."""
    due: dict[str, list[Hold]] = {}
    for hold in await find_due_holds(conn, user_ids, now):
        due.setdefault(hold.user_id, []).append(hold)
    return due


async def insert_hold(
    conn: asyncpg.Connection, hold: Hold, *, details: str | None, request_hash: str, expires_at: datetime,
    created_at: datetime, allocation: str,
) -> None:  # fmt: skip
    await db.execute(conn, "insert_hold", hold.hold_id, hold.user_id, hold.clerk_user_id, hold.credits,
                     hold.operation_type, details, hold.over_capture, request_hash, allocation, expires_at,
                     created_at)  # fmt: skip


async def resolve_holds(conn: asyncpg.Connection, rows: Sequence[tuple], resolved_at: datetime) -> set[str]:
    """rows: (hold_id, status, captured, usage_id, taken JSON, resolved_by). Returns the ids
    resolved now (a hold resolved already is left as it was)."""
    if not rows:
        return set()
    columns = [[row[i] for row in rows] for i in range(6)]
    return {r["hold_id"] for r in await db.fetch(conn, "resolve_holds", *columns, resolved_at)}


@dataclass(slots=True)
class UserBalance:
    user_id: str
    remaining: int  # "CreditBalance"."creditsRemaining"
    usable: int  # credits in grants usable now
    held: int  # open holds not past their expiry
    overdue: int  # open holds past their expiry, not yet released by the sweep
    waiting: int  # the user's events waiting in worker.waiting


async def user_balance(conn: asyncpg.Connection, clerk_user_id: str, now: datetime) -> UserBalance | None:
    r = await db.fetchrow(conn, "user_balance", clerk_user_id, now)
    if r is None:
        return None
    return UserBalance(r["user_id"], r["remaining"], int(r["usable"]), int(r["held"]), int(r["overdue"]),
                       r["waiting"])  # fmt: skip


async def user_movements(
    conn: asyncpg.Connection, user_id: str, limit: int, after: tuple[datetime, str] | None
) -> list[asyncpg.Record]:
    at, event_id = after if after is not None else (None, None)
    return await db.fetch(conn, "user_movements", user_id, limit, at, event_id)
