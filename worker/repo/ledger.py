"""Ledger queries (`sql/queries/ledger.sql`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime

import asyncpg

from .. import db
from ..ledger.cost import configured_costs
from ..ledger.decide import Account, Plan, RefundTarget
from ..ledger.grants import Grant, decode
from . import packed


def _accounts(rows: Sequence[asyncpg.Record]) -> dict[str, Account]:
    # the queries select (balance_id, user_id, clerk_user_id, balance): Account's field order
    return {r[2]: Account(*r) for r in rows}


async def lock_accounts(conn: asyncpg.Connection, clerk_user_ids: Sequence[str]) -> dict[str, Account]:
    """Lock these users' balances, waiting for other transactions (sorted: no deadlocks)."""
    return _accounts(await db.fetch(conn, "lock_accounts", *packed.arguments([sorted(clerk_user_ids)])))


async def lock_free_accounts(conn: asyncpg.Connection, clerk_user_ids: Sequence[str]) -> dict[str, Account]:
    """Lock the balances of these users that no other transaction holds; never waits."""
    return _accounts(await db.fetch(conn, "lock_free_accounts", *packed.arguments([sorted(clerk_user_ids)])))


async def limit_lock_wait(conn: asyncpg.Connection, milliseconds: int) -> None:
    """Within the current transaction, a lock wait longer than this raises LockNotAvailableError."""
    await db.fetchval(conn, "limit_lock_wait", str(milliseconds))


async def find_existing_accounts(conn: asyncpg.Connection, clerk_user_ids: Sequence[str]) -> set[str]:
    rows = await db.fetch(conn, "find_existing_accounts", list(clerk_user_ids))
    return {r["clerk_user_id"] for r in rows}


async def get_feature_costs(conn: asyncpg.Connection) -> Mapping[str, object]:
    """The admin's featureCosts, as ledger/cost.py reads them (an unreadable value is kept as
    such: the usages that need it wait instead of silently taking the defaults)."""
    return configured_costs(await db.fetchval(conn, "get_feature_costs"))


async def find_refund_targets(conn: asyncpg.Connection, usage_ids: Sequence[str]) -> dict[str, RefundTarget]:
    rows = await db.fetch(conn, "find_refund_targets", list(usage_ids))
    return {
        r["id"]: RefundTarget(
            r["id"], r["clerk_user_id"], r["credits_used"], r["operation_type"], r["refunded"], r["decided"],
            decode(r["taken"]),
        )
        for r in rows
    }


async def find_live_grants(conn: asyncpg.Connection, user_ids: Sequence[str]) -> dict[str, list[Grant]]:
    """"User".id -> its live grants (the caller holds the users' balances)."""
    grants: dict[str, list[Grant]] = {}
    for r in await db.fetch(conn, "find_live_grants", *packed.arguments([user_ids])):
        grants.setdefault(r[0], []).append(Grant(*r[1:]))
    return grants


async def insert_grants(conn: asyncpg.Connection, rows: Sequence[tuple]) -> None:
    """rows: grants.NewGrant.row() tuples."""
    if rows:
        await db.execute(conn, "insert_grants", *_columns(rows, 13))


async def claim_events(
    conn: asyncpg.Connection, claims: Sequence[tuple[str, str, str, str, str | None]]
) -> set[str]:
    """claims: (event_id, type, payload_hash, clerk_user_id, raw_hash). Returns the ids taken."""
    ordered = sorted(claims, key=lambda c: c[0])
    rows = await db.fetch(conn, "claim_events", *_columns(ordered, 5))
    return {r["event_id"] for r in rows}


async def find_decided_events(
    conn: asyncpg.Connection, event_ids: Sequence[str]
) -> dict[str, tuple[str, str | None]]:
    """event_id -> (payload_hash, raw_hash) of the events already decided."""
    rows = await db.fetch(conn, "find_decided_events", *packed.arguments([event_ids]))
    return {r["event_id"]: (r["payload_hash"], r["raw_hash"]) for r in rows}


async def find_event_hashes(conn: asyncpg.Connection, event_ids: Sequence[str]) -> dict[str, str]:
    """event_id -> payload_hash of the events already decided."""
    return {key: hashes[0] for key, hashes in (await find_decided_events(conn, event_ids)).items()}


def _columns(rows: Sequence[tuple], width: int) -> list[list]:
    return [[row[i] for row in rows] for i in range(width)] if rows else [[] for _ in range(width)]


async def write_ledger(
    conn: asyncpg.Connection, plan: Plan, decided: Sequence[tuple[str, str, str, str, str | None]] = (),
    now: datetime | None = None,
) -> int:
    """The plan's rows and the decided events' idempotency keys, in one statement. Returns how
    many of the plan's hold resolutions resolved a hold (one still `held`).

    decided: (event_id, type, payload_hash, clerk_user_id, raw_hash) of every event the plan
    decided, applied or rejected (none when the caller claimed its key already, as billing
    does). A key already in `worker.event_log` (or a hold id in worker.credit_hold) raises
    UniqueViolationError. `now`: when the plan's holds resolved.
    """
    if not decided and not plan.journal_rows:
        return 0
    await insert_grants(conn, plan.grant_inserts())
    usage = _columns(plan.usage_rows, 7)
    holds = _columns(plan.hold_inserts, 11)
    journal = _columns(plan.journal_rows, 8)
    columns = packed.arguments([
        *_columns(sorted(decided, key=lambda d: d[0]), 5),
        *usage[:6],
        *journal[:7],
        *_columns(sorted(plan.openings.items()), 2),
        *_columns(sorted(plan.balance_deltas.items()), 2),
        journal[7],
        *_columns(sorted(plan.grant_updates()), 5),
        *holds[:9],
        *_columns(plan.hold_resolutions, 6),
    ])  # fmt: skip
    row = await db.fetchrow(conn, "write_ledger", *columns, usage[6], holds[9], holds[10],
                            now if plan.hold_resolutions else None)  # fmt: skip
    return row["resolved_holds"]


def _storable(value: object) -> object:
    """PostgreSQL text cannot hold NUL: a refused event's raw id or type may contain one."""
    return value.replace("\x00", "\ufffd") if isinstance(value, str) else value


async def insert_rejections(conn: asyncpg.Connection, rejections: Sequence[tuple]) -> set[tuple[str | None, str]]:
    """rejections: (event_id, event_type, reason, detail, payload JSON text). Returns the
    (event_id, reason) stored now: one already there (a redelivery) is skipped."""
    if not rejections:
        return set()
    rows = [tuple(_storable(v) for v in row) for row in rejections]
    return {(r[0], r[1]) for r in await db.fetch(conn, "insert_rejections", *_columns(rows, 5))}
