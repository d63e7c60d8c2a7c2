"""Billing queries (`sql/queries/billing.sql`)."""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg

from .. import db
from ..domain.payments import PaymentState, PlanCredits
from ..events import BillingEvent
from ..ids import prisma_timestamp


async def find_plan(
    conn: asyncpg.Connection, plan_id: str | None, asaas_ids: Sequence[str]
) -> PlanCredits | None:
    row = await db.fetchrow(conn, "find_plan", plan_id, list(asaas_ids))
    return PlanCredits(row["id"], row["credits"]) if row else None


async def lock_payment(
    conn: asyncpg.Connection, payment_id: str, clerk_user_id: str | None
) -> PaymentState:
    row = await db.fetchrow(conn, "lock_payment", payment_id, clerk_user_id)
    assert row is not None
    return PaymentState(
        clerk_user_id=row["clerk_user_id"], paid_at=row["paid_at"], reversed_at=row["reversed_at"],
        grant_outcome=row["grant_outcome"], plan_id=row["plan_id"],
        granted_credits=row["granted_credits"], reversal_outcome=row["reversal_outcome"],
    )  # fmt: skip


async def save_payment(conn: asyncpg.Connection, payment_id: str, state: PaymentState) -> None:
    await db.execute(
        conn, "save_payment", payment_id, state.paid_at, state.reversed_at, state.grant_outcome,
        state.plan_id, state.granted_credits, state.reversal_outcome,
    )  # fmt: skip


async def insert_subscription_event(
    conn: asyncpg.Connection, event: BillingEvent, user_id: str | None, plan_key: str | None
) -> bool:
    """True if the row was inserted. A missing Clerk user is stored as '' (the column is NOT NULL)."""
    inserted = await db.fetchval(
        conn, "insert_subscription_event", event.id, user_id, event.clerkUserId or "", plan_key,
        event.status, event.eventType, prisma_timestamp(event.occurredAt), event.metadata,
    )  # fmt: skip
    return inserted is not None
