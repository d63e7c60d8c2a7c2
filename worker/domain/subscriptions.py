"""Asaas subscriptions as the worker keeps them (`worker.billing_subscription`).

SUBSCRIPTION_* events carry the subscription: its Clerk user and plan (externalReference),
cycle, value, status and next due date. The newest event by event time wins for each field, and
every event that states a plan, cycle or value adds an entry to the subscription's plan history,
effective from its event time. A payment of the subscription maps to the entry in force when
Asaas created it (`plan_for_payment`), so a plan change takes effect from the next payment.
Payment events add what they know of their subscription (its user and customer).
"""

from __future__ import annotations

import asyncpg

from ..events import BillingEvent
from ..repo import billing as billing_repo
from ..repo import subscriptions as repo
from .payments import PaymentFacts


def is_subscription_event(event: BillingEvent) -> bool:
    return event.eventType.startswith("SUBSCRIPTION_") and event.subscriptionId is not None


async def apply_subscription_event(conn: asyncpg.Connection, event: BillingEvent) -> str | None:
    """Keep the subscription's state and plan history; returns the "Plan".id its reference
    matches now (the SubscriptionEvent's planKey), if any."""
    assert event.subscriptionId is not None
    await repo.save_state(conn, event)
    if event.planId or event.cycle or event.valueCents is not None:
        await repo.insert_plan(conn, event)
    if event.customerId and event.clerkUserId:
        await billing_repo.remember_customer(conn, event.customerId, event.clerkUserId)
    if not event.planId:
        return None
    plan = await billing_repo.find_plan(conn, event.planId, [])
    return plan.plan_id if plan else None


async def note_payment(conn: asyncpg.Connection, facts: PaymentFacts) -> None:
    """A payment of a subscription tells whose it is, if its SUBSCRIPTION_* events did not."""
    if facts.subscription_id and (facts.clerk_user_id or facts.customer_id):
        await repo.note_payment(conn, facts.subscription_id, facts.clerk_user_id, facts.customer_id)


async def plan_for_payment(
    conn: asyncpg.Connection, facts: PaymentFacts
) -> tuple[str | None, str | None, bool]:
    """(plan reference, cycle, whether the subscription is known) for a subscription payment:
    the plan its own reference names, else its subscription's when the payment was created."""
    assert facts.subscription_id is not None
    at = facts.created_at or facts.paid_at
    assert at is not None
    history_ref, cycle = await repo.plan_at(conn, facts.subscription_id, at)
    known = await repo.view(conn, facts.subscription_id)
    if cycle is None and known is not None:
        cycle = known.cycle
    return facts.plan_ref or history_ref, cycle, known is not None and known.plan_ref is not None


async def clerk_user_of(
    conn: asyncpg.Connection, subscription_id: str | None, customer_id: str | None
) -> str | None:
    """Whose payment this is when its own reference does not say: the user its subscription
    or its customer belongs to."""
    if subscription_id:
        view = await repo.view(conn, subscription_id)
        if view and view.clerk_user_id:
            return view.clerk_user_id
    if customer_id:
        return await billing_repo.customer_clerk_user(conn, customer_id)
    return None
