"""Queue `billing`: one "SubscriptionEvent" row per provider event, credits per payment.

Per event (in its own transaction, after its claim):
  lock the user's balance -> lock the payment's state -> decide (payments.py, pure)
  -> journal movements + balance -> payment state -> "SubscriptionEvent" row.

A grant-type event for a Clerk user the worker does not know yet waits in `worker.waiting`
(`unknown_user`), as usage does, until the user's `user.created` releases it.
"""

from __future__ import annotations

import asyncpg

from ..errors import MustWait
from ..events import BillingEvent, billing_event_adapter
from ..ledger.decide import APPLIED, Account, Outcome
from ..ledger.decide import Plan as LedgerPlan
from ..repo import billing as repo
from ..repo import ledger as ledger_repo
from ..repo.users import find_user_id
from ..settings import Settings
from .each import Family, reject
from .payments import GRANT, GRANT_EVENTS, REVERSAL, REVERSAL_EVENTS, WARNINGS, Kind, decide_payment


def payment_kind(event: BillingEvent) -> Kind | None:
    """Which credit rule an event triggers: grants need a subscription payment."""
    if event.paymentId is None:
        return None
    if event.eventType in GRANT_EVENTS and event.subscriptionId is not None:
        return GRANT
    if event.eventType in REVERSAL_EVENTS:
        return REVERSAL
    return None


def journal_id(kind: str, payment_id: str) -> str:
    """The journal key of a payment's grant or reversal: at most one of each, ever. The '/'
    cannot occur in a usage event id, so the two key spaces never collide."""
    return f"{kind}/{payment_id}"


def movement_reason(kind: str, event: BillingEvent, plan_id: str | None) -> str:
    """Why a payment moved credits: the plan a grant gave, the Asaas event that reversed it
    (e.g. PAYMENT_REFUNDED). A refund or chargeback that arrived before its payment is applied
    by the payment's event, which cannot name it: the reason says so."""
    if kind == GRANT:
        return f"plan {plan_id}"
    if event.eventType in REVERSAL_EVENTS:
        return event.eventType
    return f"refund or chargeback that arrived before {event.eventType}"


async def _write_movements(
    conn: asyncpg.Connection,
    event: BillingEvent,
    plan_id: str | None,
    account: Account,
    movements: list[tuple[str, int]],
) -> None:
    """The payment's journal movements; each refers to the Asaas payment id."""
    payment_id = event.paymentId
    assert payment_id is not None
    plan = LedgerPlan()
    plan.openings[account.user_id] = account.balance
    for kind, delta in movements:
        refund_of = journal_id(GRANT, payment_id) if kind == REVERSAL else None
        reason = movement_reason(kind, event, plan_id)
        plan.journal_rows.append(
            (journal_id(kind, payment_id), account.user_id, kind, delta, refund_of,
             payment_id, reason)
        )  # fmt: skip
        plan.balance_deltas[account.balance_id] = (
            plan.balance_deltas.get(account.balance_id, 0) + delta
        )
    await ledger_repo.write_ledger(conn, plan)


async def _apply_payment_rule(
    conn: asyncpg.Connection,
    event: BillingEvent,
    kind: Kind,
    account: Account | None,
    settings: Settings,
) -> tuple[str | None, str | None]:
    """Grant or reverse the payment's credits. Returns (note, plan id)."""
    assert event.paymentId is not None and event.clerkUserId is not None
    state = await repo.lock_payment(conn, event.paymentId, event.clerkUserId)
    if state.clerk_user_id not in (None, event.clerkUserId):
        return "payment_user_mismatch", state.plan_id
    plan = None
    if kind == GRANT and state.grant_outcome is None:
        asaas_ids = [i for i in (event.paymentLinkId, event.subscriptionId) if i]
        plan = await repo.find_plan(conn, event.planId, asaas_ids)
    decision = decide_payment(
        state, kind=kind, at=event.occurredAt, plan=plan,
        balance=account.balance if account else 0, policy=settings.overdraft_policy,
    )  # fmt: skip
    if decision.movements:
        assert account is not None  # a grant needs the account; a reversal follows a grant
        await _write_movements(conn, event, decision.state.plan_id, account, decision.movements)
    await repo.save_payment(conn, event.paymentId, decision.state)
    if decision.note in ("insufficient_credits", "balance_out_of_range"):
        detail = f"payment {event.paymentId}: balance {account.balance if account else None}"
        await reject(conn, event, event.id, decision.note, detail)
    return decision.note, decision.state.plan_id


async def record_billing_event(
    conn: asyncpg.Connection, event: BillingEvent, settings: Settings
) -> Outcome:
    kind = payment_kind(event)
    account: Account | None = None
    user_id: str | None = None
    note: str | None = None
    plan_key = event.planId
    if event.clerkUserId is not None:
        if kind is not None:
            accounts = await ledger_repo.lock_accounts(conn, [event.clerkUserId])
            account = accounts.get(event.clerkUserId)
        user_id = account.user_id if account else await find_user_id(conn, event.clerkUserId)
        if kind == GRANT and account is None:
            raise MustWait("unknown_user", f"user:{event.clerkUserId}",
                           f"no user {event.clerkUserId} yet (its user.created is not in)")
    if kind is not None and event.clerkUserId is None:
        note = "no_clerk_user"
    elif kind is not None:
        note, plan_id = await _apply_payment_rule(conn, event, kind, account, settings)
        plan_key = plan_id or plan_key
    await repo.insert_subscription_event(conn, event, user_id, plan_key)
    return Outcome(event.id, APPLIED, note)


BILLING = Family("billing", billing_event_adapter, record_billing_event, warnings=WARNINGS)
