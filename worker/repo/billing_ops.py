"""What ops read of one Asaas payment (`sql/queries/billing_ops.sql`): `billing show`."""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg

from .. import db


def grant_ids(payment_id: str, installment_id: str | None) -> list[str]:
    """The grants a payment can belong to: its own, and its installment plan's."""
    return [payment_id] + ([f"installment:{installment_id}"] if installment_id else [])


async def find_payment_facts(conn: asyncpg.Connection, payment_id: str) -> asyncpg.Record | None:
    """The payment's row as stored, every column (billing.sql's read_payment)."""
    return await db.fetchrow(conn, "read_payment", payment_id)


async def list_payment_grants(
    conn: asyncpg.Connection, ids: Sequence[str]
) -> list[asyncpg.Record]:
    return await db.fetch(conn, "show_payment_grants", list(ids))


async def list_payment_allowances(conn: asyncpg.Connection, ids: Sequence[str]) -> list[asyncpg.Record]:
    """The credit grants (allowances) these billing grants made, in start order."""
    return await db.fetch(conn, "show_payment_allowances", list(ids))


async def list_grant_movements(
    conn: asyncpg.Connection, ids: Sequence[str], user_ids: Sequence[str]
) -> list[asyncpg.Record]:
    """Journal movements whose reference is one of these grants, of these users, oldest first."""
    return await db.fetch(conn, "show_grant_movements", list(ids), list(user_ids))


async def list_payment_subscription_events(
    conn: asyncpg.Connection, payment_id: str, event_ids: Sequence[str]
) -> list[asyncpg.Record]:
    return await db.fetch(conn, "show_payment_subscription_events", payment_id, list(event_ids))


async def list_payment_waiting(conn: asyncpg.Connection, payment_id: str) -> list[asyncpg.Record]:
    """The payment's billing events in worker.waiting, any state, oldest first."""
    return await db.fetch(conn, "show_payment_waiting", payment_id)


async def list_event_rejections(
    conn: asyncpg.Connection, event_ids: Sequence[str]
) -> list[asyncpg.Record]:
    return await db.fetch(conn, "show_event_rejections", list(event_ids))


async def find_customer(conn: asyncpg.Connection, customer_id: str) -> asyncpg.Record | None:
    return await db.fetchrow(conn, "show_billing_customer", customer_id)


async def find_subscription(
    conn: asyncpg.Connection, subscription_id: str
) -> asyncpg.Record | None:
    return await db.fetchrow(conn, "show_subscription_state", subscription_id)


async def list_subscription_plans(
    conn: asyncpg.Connection, subscription_id: str
) -> list[asyncpg.Record]:
    return await db.fetch(conn, "show_subscription_plans", subscription_id)
