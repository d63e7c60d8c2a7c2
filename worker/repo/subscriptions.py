"""Subscription state queries (`sql/queries/subscriptions.sql`)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import NamedTuple

import asyncpg

from .. import db
from ..events import BillingEvent


class SubscriptionView(NamedTuple):
    clerk_user_id: str | None
    customer_id: str | None
    plan_ref: str | None
    cycle: str | None


async def save_state(conn: asyncpg.Connection, event: BillingEvent) -> None:
    assert event.subscriptionId is not None
    await db.execute(
        conn, "save_subscription_state", event.subscriptionId, event.clerkUserId, event.customerId,
        event.planId, event.cycle, event.valueCents, event.status, event.nextDueDate,
        event.occurredAt,
    )  # fmt: skip


async def note_payment(
    conn: asyncpg.Connection, subscription_id: str, clerk_user_id: str | None, customer_id: str | None
) -> None:
    await db.execute(conn, "note_subscription_payment", subscription_id, clerk_user_id, customer_id)


async def insert_plan(conn: asyncpg.Connection, event: BillingEvent) -> None:
    await db.execute(
        conn, "insert_subscription_plan", event.subscriptionId, event.occurredAt, event.id,
        event.planId, event.cycle, event.valueCents,
    )  # fmt: skip


async def plan_at(
    conn: asyncpg.Connection, subscription_id: str, at: datetime
) -> tuple[str | None, str | None]:
    row = await db.fetchrow(conn, "subscription_plan_at", subscription_id, at)
    return (row["plan_ref"], row["cycle"]) if row else (None, None)


async def view(conn: asyncpg.Connection, subscription_id: str) -> SubscriptionView | None:
    row = await db.fetchrow(conn, "subscription_clerk_user", subscription_id)
    return SubscriptionView(*row) if row else None


async def with_plans(conn: asyncpg.Connection, subscription_ids: Sequence[str]) -> list[str]:
    return [r["id"] for r in await db.fetch(conn, "subscriptions_with_plans", list(subscription_ids))]
