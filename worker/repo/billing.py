"""Billing queries (`sql/queries/billing.sql`): payments' facts, grants, debts, customers."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import astuple, fields

import asyncpg

from .. import db
from ..domain.payments import GrantState, PaymentFacts, PlanTerms
from ..events import BillingEvent
from ..ids import prisma_timestamp

_FACTS = [f.name for f in fields(PaymentFacts)]


def _facts(row: asyncpg.Record) -> PaymentFacts:
    return PaymentFacts(**{name: row[name] for name in _FACTS})


async def find_plan(
    conn: asyncpg.Connection, plan_ref: str | None, asaas_ids: Sequence[str]
) -> PlanTerms | None:
    row = await db.fetchrow(conn, "find_plan", plan_ref, list(asaas_ids))
    if row is None:
        return None
    features = json.loads(row["features"]) if row["features"] is not None else None
    return PlanTerms(row["id"], row["credits"], row["billingSource"], row["priceMonthlyCents"],
                     row["priceYearlyCents"], features)  # fmt: skip


async def plans_with_credits(conn: asyncpg.Connection, refs: Sequence[str]) -> list[str]:
    return [r["ref"] for r in await db.fetch(conn, "plans_with_credits", list(refs))]


async def read_payment(conn: asyncpg.Connection, payment_id: str) -> PaymentFacts | None:
    row = await db.fetchrow(conn, "read_payment", payment_id)
    return _facts(row) if row else None


async def lock_payment(conn: asyncpg.Connection, payment_id: str) -> PaymentFacts:
    row = await db.fetchrow(conn, "lock_payment", payment_id)
    assert row is not None
    return _facts(row)


async def save_payment(conn: asyncpg.Connection, facts: PaymentFacts) -> None:
    await db.execute(conn, "save_payment", *astuple(facts))


async def installment_payments(conn: asyncpg.Connection, installment_id: str) -> list[PaymentFacts]:
    return [_facts(r) for r in await db.fetch(conn, "installment_payments", installment_id)]


async def lock_grant(conn: asyncpg.Connection, grant_id: str) -> GrantState | None:
    row = await db.fetchrow(conn, "lock_grant", grant_id)
    if row is None:
        return None
    return GrantState(
        row["grant_id"], row["kind"], row["outcome"], row["plan_id"], row["cycle"], row["credits"],
        row["reversed_credits"], row["debt_recorded"], row["moves"], row["note"],
    )  # fmt: skip


async def save_grant(
    conn: asyncpg.Connection, grant: GrantState, clerk_user_id: str, user_id: str
) -> None:
    await db.execute(
        conn, "save_grant", grant.grant_id, clerk_user_id, user_id, grant.kind, grant.outcome,
        grant.plan_id, grant.cycle, grant.credits, grant.reversed_credits, grant.debt_recorded,
        grant.moves, grant.note,
    )  # fmt: skip


async def read_debt(conn: asyncpg.Connection, user_id: str) -> int:
    return await db.fetchval(conn, "read_debt", user_id)


async def save_debt(conn: asyncpg.Connection, user_id: str, amount: int) -> None:
    await db.execute(conn, "save_debt", user_id, amount)


async def remember_customer(conn: asyncpg.Connection, customer_id: str, clerk_user_id: str) -> None:
    await db.execute(conn, "remember_customer", customer_id, clerk_user_id)


async def customer_clerk_user(conn: asyncpg.Connection, customer_id: str) -> str | None:
    return await db.fetchval(conn, "customer_clerk_user", customer_id)


async def known_customers(conn: asyncpg.Connection, customer_ids: Sequence[str]) -> list[str]:
    return [r["customer_id"] for r in await db.fetch(conn, "known_customers", list(customer_ids))]


async def lock_user_link_shared(conn: asyncpg.Connection, clerk_user_id: str) -> None:
    await db.execute(conn, "lock_user_link_shared", clerk_user_id)


async def insert_subscription_event(
    conn: asyncpg.Connection, event: BillingEvent, clerk_user_id: str | None, user_id: str | None,
    plan_key: str | None,
) -> bool:
    """True if the row was inserted. No Clerk user is stored as '' (the column is NOT NULL)."""
    inserted = await db.fetchval(
        conn, "insert_subscription_event", event.id, user_id, clerk_user_id or "", plan_key,
        event.status, event.eventType, prisma_timestamp(event.occurredAt), event.metadata,
    )  # fmt: skip
    return inserted is not None
