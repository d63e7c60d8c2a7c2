"""Hold queries (`sql/queries/holds.sql`): worker.credit_hold, and the API's balance and movements."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg
import msgspec

from .. import db
from . import packed
from ..ledger.decide import Account
from ..ledger.grants import Grant, decode
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


_decode = msgspec.json.Decoder()


def _time(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


async def hold_books(conn: asyncpg.Connection, user_id: str, hold_id: str) -> tuple[list[Grant], dict[str, HoldRow]]:
    """The user's live grants in burn order, and the hold `hold_id` (whoever's) with the user's
    open holds, in one round trip (the caller holds the balance)."""
    row = await db.fetchrow(conn, "hold_books", user_id, hold_id)
    grants = [Grant(*g) for g in _decode.decode(row["grants"])]
    holds = {}
    for h in _decode.decode(row["holds"]):
        hold = Hold(h["hold_id"], h["user_id"], h["clerk_user_id"], h["credits"], h["status"], h["expires"],
                    decode(h["allocation"]), h["over_capture"], h["operation_type"])  # fmt: skip
        holds[hold.hold_id] = HoldRow(hold, h["request_hash"], h["captured"], h["usage_id"], h["resolved_by"],
                                      h["details"], _time(h["created_at"]), _time(h["expires_at"]),  # type: ignore[arg-type]
                                      _time(h["resolved_at"]))  # fmt: skip
    return grants, holds


async def lock_account_of_hold(conn: asyncpg.Connection, hold_id: str) -> Account | None:
    """The hold's user's balance, locked (None: no such hold)."""
    r = await db.fetchrow(conn, "lock_account_of_hold", hold_id)
    return None if r is None else Account(*r)


async def find_due_holds(conn: asyncpg.Connection, user_ids: Sequence[str], now: datetime) -> list[Hold]:
    """The open holds of these users past their expiry (the caller holds their balances)."""
    return [_hold(r) for r in await db.fetch(conn, "find_due_holds", *packed.arguments([user_ids]), now)]


async def due_holds_by_user(conn: asyncpg.Connection, user_ids: Sequence[str], now: datetime) -> dict[str, list[Hold]]:
    """find_due_holds, by "User".id."""
    due: dict[str, list[Hold]] = {}
    for hold in await find_due_holds(conn, user_ids, now):
        due.setdefault(hold.user_id, []).append(hold)
    return due


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
