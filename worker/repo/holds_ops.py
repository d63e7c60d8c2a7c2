"""What ops read of `worker.credit_hold` (`sql/queries/holds_ops.sql`): holds listed and shown
(`pedro-worker holds …`), one user's (`user show`), and the open, overdue and recently resolved
ones (dashboard, `/metrics`)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import asyncpg

from .. import db


@dataclass(frozen=True)
class OpsHold:
    """One hold as ops see it."""

    hold_id: str
    user_id: str
    clerk_user_id: str
    credits: int  # held
    status: str  # held, captured, released, expired
    captured: int | None  # credits the capture charged
    usage_id: str | None  # the capture's "UsageHistory" row
    operation_type: str | None
    over_capture: str
    resolved_by: str | None  # http, ops, expiry, or the usage event that captured it
    created_at: datetime
    expires_at: datetime
    resolved_at: datetime | None
    details: str | None = None  # JSON text (`get_hold` only)
    allocation: str | None = None  # JSON text: [[grant id, delta], …] the hold took
    taken: str | None = None  # JSON text: what the captured usage took in all


@dataclass(frozen=True)
class HoldMovement:
    event_id: str
    kind: str  # hold, capture, release, grant_expiry
    delta: int
    reference: str | None
    reason: str | None
    grants: str | None  # JSON text
    created_at: datetime


@dataclass(frozen=True)
class HoldUsage:
    usage_id: str
    operation_type: str
    credits_used: int
    used_at: datetime  # naive UTC, as "UsageHistory" keeps it


@dataclass(frozen=True)
class OpenHolds:
    holds: int
    credits: int
    overdue: int  # held past their expiry: the sweep has not released them
    overdue_credits: int
    overdue_since: datetime | None  # the earliest expiry among the overdue


@dataclass(frozen=True)
class ResolvedHolds:
    status: str
    holds: int
    credits: int  # held
    charged: int  # captured: credits charged


def _hold(r: asyncpg.Record) -> OpsHold:
    return OpsHold(
        r["hold_id"], r["user_id"], r["clerk_user_id"], r["credits"], r["status"], r["captured"],
        r["usage_id"], r["operation_type"], r["over_capture"], r["resolved_by"], r["created_at"],
        r["expires_at"], r["resolved_at"], r.get("details"), r.get("allocation"), r.get("taken"),
    )  # fmt: skip


async def list_holds(
    conn: asyncpg.Connection, *, clerk_user_id: str | None, status: str | None, limit: int
) -> tuple[list[OpsHold], int]:
    """Holds newest first (of this user, in this status), and how many match in all."""
    rows = await db.fetch(conn, "list_holds", clerk_user_id, status, limit)
    return [_hold(r) for r in rows], rows[0]["matching"] if rows else 0


async def get_hold(conn: asyncpg.Connection, hold_id: str) -> OpsHold | None:
    row = await db.fetchrow(conn, "get_hold", hold_id)
    return None if row is None else _hold(row)


async def list_hold_movements(conn: asyncpg.Connection, hold_id: str) -> list[HoldMovement]:
    """The hold's journal movements, oldest first."""
    return [
        HoldMovement(r["event_id"], r["kind"], r["delta"], r["reference"], r["reason"], r["grants"],
                     r["created_at"])  # fmt: skip
        for r in await db.fetch(conn, "list_hold_movements", hold_id)
    ]


async def find_hold_usage(conn: asyncpg.Connection, usage_id: str) -> HoldUsage | None:
    r = await db.fetchrow(conn, "find_hold_usage", usage_id)
    return None if r is None else HoldUsage(r["id"], r["operation_type"], r["credits_used"], r["used_at"])


async def list_user_open_holds(conn: asyncpg.Connection, user_id: str) -> list[OpsHold]:
    """The user's open holds, the next to expire first."""
    return [_hold(r) for r in await db.fetch(conn, "list_user_open_holds", user_id)]


async def list_user_resolved_holds(
    conn: asyncpg.Connection, user_id: str, limit: int
) -> tuple[list[OpsHold], int]:
    """The user's last `limit` resolved holds, latest first, and how many it has."""
    rows = await db.fetch(conn, "list_user_resolved_holds", user_id, limit)
    return [_hold(r) for r in rows], rows[0]["resolved_total"] if rows else 0


async def summarize_open_holds(conn: asyncpg.Connection, now: datetime) -> OpenHolds:
    r = await db.fetchrow(conn, "summarize_open_holds", now)
    assert r is not None
    return OpenHolds(r["holds"], r["credits"], r["overdue"], r["overdue_credits"], r["overdue_since"])


async def count_resolved_holds(conn: asyncpg.Connection, since: datetime) -> list[ResolvedHolds]:
    """Holds resolved since `since`, per status (statuses with none left out)."""
    rows = await db.fetch(conn, "count_resolved_holds", since)
    return [ResolvedHolds(r["status"], r["holds"], r["credits"], r["charged"]) for r in rows]
