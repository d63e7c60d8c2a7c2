"""Grant queries (`sql/queries/grants.sql`): a payment's allowances, and what the grant sweep
(worker/grant_sweep.py) finds due. The burn-down's own reads and writes are in ledger.sql."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import NamedTuple

import asyncpg

from .. import db


class GrantRef(NamedTuple):
    grant_id: str
    state: str


class DueStart(NamedTuple):
    grant_id: str
    user_id: str
    source: str
    amount: int
    reference: str | None
    priority: int
    effective_at: datetime
    expires_at: datetime | None


class GrantTerms(NamedTuple):
    grant_id: str
    rollover: int
    period_months: int | None
    effective_at: datetime
    expires_at: datetime | None
    priority: int


async def grants_of(conn: asyncpg.Connection, reference: str) -> list[GrantRef]:
    return [GrantRef(*r) for r in await db.fetch(conn, "grants_of", reference)]


async def set_grant_states(conn: asyncpg.Connection, rows: Sequence[tuple[str, str, datetime | None]]) -> None:
    """rows: (grant id, state, ended at)."""
    if rows:
        await db.execute(conn, "set_grant_states", *[list(c) for c in zip(*rows, strict=True)])


async def due_grant_users(conn: asyncpg.Connection, now: datetime, limit: int) -> dict[str, str]:
    """"User".id -> Clerk user id of users with a grant due."""
    return {r["user_id"]: r["clerk_user_id"] for r in await db.fetch(conn, "due_grant_users", now, limit)}


async def due_pending_grants(conn: asyncpg.Connection, user_ids: Sequence[str], now: datetime) -> list[DueStart]:
    return [DueStart(*r) for r in await db.fetch(conn, "due_pending_grants", list(user_ids), now)]


async def grant_terms(conn: asyncpg.Connection, grant_ids: Sequence[str]) -> dict[str, GrantTerms]:
    if not grant_ids:
        return {}
    return {r[0]: GrantTerms(*r) for r in await db.fetch(conn, "grant_terms", list(grant_ids))}


async def try_grant_sweep_lock(conn: asyncpg.Connection) -> bool:
    return bool(await db.fetchval(conn, "try_grant_sweep_lock"))


async def next_grant_due(conn: asyncpg.Connection) -> datetime | None:
    return await db.fetchval(conn, "next_grant_due")
