"""Queue `billing`: one "SubscriptionEvent" row per Asaas event, credits per payment.

A SUBSCRIPTION_* event keeps its subscription's state (subscriptions.py). A payment event, in
its own transaction after its claim:

  whose is it (its reference, else its subscription's or customer's user) -> lock the balance
  -> lock the payment's facts, merge the event into them (payments.py, pure)
  -> lock the grant -> a confirmation grants the plan's credits if nothing was granted yet
  -> move the grant's reversal to what the facts say now -> journal, balance, debt
  -> "SubscriptionEvent" row (planKey: the matched "Plan".id).

A confirmed payment that cannot be granted *yet* waits in `worker.waiting` (never final):
`no_clerk_user` (until an event ties its customer to a Clerk user, `customer:<id>`),
`no_plan` (until its plan exists with credits, `plan:<ref>`, or its subscription names one,
`subscription:<id>`), `unknown_user` (until the user's user.created, `user:<id>`).
`pedro-worker billing regrant` decides a payment's grant again (worker/ops).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, NamedTuple

import asyncpg

from ..errors import MustWait
from ..events import BillingEvent, billing_event_adapter
from .. import clock
from ..ledger.decide import APPLIED, Account, Outcome
from ..ledger.grants import Grant
from ..repo import billing as repo
from ..repo.grants import DueStart
from ..repo import ledger as ledger_repo
from ..repo.users import find_user_id
from ..settings import Settings
from . import subscriptions
from .books import Books
from .each import Family
from .payments import (
    GRANT_EVENTS, PARTIALLY_REFUNDED, REVERSAL_EVENTS, WARNINGS, GrantState,
    PaymentFacts, PlanTerms, Settlement, grant_months, infer_cycle, merge, move_to_target, new_grant,
    reversal_target,
)  # fmt: skip
from .payments import start_allowance as start_payment_allowance
from .plan_credits import allowances, plan_credits


class PaymentResult(NamedTuple):
    clerk_user_id: str | None
    user_id: str | None
    plan_id: str | None
    note: str | None


class RegrantResult(NamedTuple):
    note: str  # granted, already_granted, not_paid, unknown_payment, or why it still waits
    detail: str | None


async def _plan_of(conn: asyncpg.Connection, facts: PaymentFacts) -> tuple[PlanTerms | None, str | None, str | None]:
    """(plan, cycle, what to wait for when there is none). No plan and nothing to wait for: not
    a credit payment (a one-off payment that names no plan)."""
    ref, cycle, subscription_named = facts.plan_ref, None, False
    if facts.kind == "subscription":
        ref, cycle, subscription_named = await subscriptions.plan_for_payment(conn, facts)
    ref = facts.plan_override or ref
    asaas_ids = [i for i in (facts.payment_link_id, facts.subscription_id) if i]
    plan = await repo.find_plan(conn, ref, asaas_ids)
    if plan is not None and plan.credits > 0:
        return plan, infer_cycle(cycle, plan, facts.value_cents) if facts.kind == "subscription" else None, None
    if plan is not None:
        return None, None, f"plan:{plan.plan_id}"
    if ref:
        return None, None, f"plan:{ref}"
    if facts.kind == "subscription" and not subscription_named:
        return None, None, f"subscription:{facts.subscription_id}"
    return None, None, None


async def _grant(
    conn: asyncpg.Connection, facts: PaymentFacts, account: Account | None, books: Books | None
) -> Settlement | None:
    """The payment's first grant, or None if it is not a credit payment. Raises MustWait for
    what it still needs."""
    plan, cycle, plan_wait = await _plan_of(conn, facts)
    if plan is None and plan_wait is None:
        return None
    if facts.clerk_user_id is None:
        key = f"customer:{facts.customer_id}" if facts.customer_id else f"payment:{facts.payment_id}"
        raise MustWait("no_clerk_user", key, f"payment {facts.payment_id} names no Clerk user, "
                       "nor does its subscription or customer")  # fmt: skip
    if plan is None:
        assert plan_wait is not None
        raise MustWait("no_plan", plan_wait, f"payment {facts.payment_id}: no plan with credits "
                       f"for {plan_wait.partition(':')[2]} yet")  # fmt: skip
    if account is None or books is None:
        raise MustWait("unknown_user", f"user:{facts.clerk_user_id}",
                       f"no user {facts.clerk_user_id} yet (its user.created is not in)")  # fmt: skip
    terms, readable = plan_credits(plan.features)
    # Periods start when the credits are given, not at the payment's event time: a payment granted
    # late (it waited for its user or plan) still gets whole periods, never credits born expired.
    grants = allowances(
        user_id=account.user_id, grant_id=facts.grant_id, credits=plan.credits,
        months=grant_months(facts, cycle), pack=plan.is_pack, terms=terms,
        start=books.now, now=books.now,
    )  # fmt: skip
    started = sum(a.amount for a in grants if a.state == "live")
    settlement = new_grant(facts, plan, cycle, balance=books.balance, debt=books.debt, credits=started)
    if settlement.grant.outcome != "granted":
        return settlement
    books.add_allowances(grants)
    if not readable:
        settlement = replace(settlement, note=settlement.note or "bad_plan_credits",
                             grant=replace(settlement.grant, note=settlement.grant.note or "bad_plan_credits"))
    return settlement


async def _lock_books(conn: asyncpg.Connection, clerk_user_id: str | None) -> tuple[Account | None, Books | None]:
    if clerk_user_id is None:
        return None, None
    account = (await ledger_repo.lock_accounts(conn, [clerk_user_id])).get(clerk_user_id)
    if account is None:
        return None, None
    return account, await Books.open(conn, account, clock.now())


async def _settle_reversal(
    conn: asyncpg.Connection, facts: PaymentFacts, grant: GrantState, books: Books,
    settings: Settings, why: str,
) -> tuple[GrantState, str | None, bool]:  # fmt: skip
    """Move the grant's reversal to what its payments' facts say now."""
    parts = await repo.installment_payments(conn, facts.installment_id) if facts.installment_id else [facts]
    target, unknown = reversal_target(grant.credits, parts)
    settlement = move_to_target(grant, target, balance=books.balance, debt=books.debt,
                                policy=settings.reversal_policy, why=why)  # fmt: skip
    books.write(grant.grant_id, settlement)
    return settlement.grant, settlement.note, unknown


async def _apply_payment_event(
    conn: asyncpg.Connection, event: BillingEvent, settings: Settings
) -> PaymentResult:
    assert event.paymentId is not None
    # whose it is, read unlocked: the balance is locked before the payment's facts, as everywhere
    stored = await repo.read_payment(conn, event.paymentId)
    clerk = (event.clerkUserId or (stored and stored.clerk_user_id)
             or await subscriptions.clerk_user_of(conn, event.subscriptionId, event.customerId))  # fmt: skip
    account, books = await _lock_books(conn, clerk)
    facts = await repo.lock_payment(conn, event.paymentId)
    if facts.clerk_user_id and event.clerkUserId and facts.clerk_user_id != event.clerkUserId:
        return PaymentResult(event.clerkUserId, None, None, "payment_user_mismatch")
    facts = merge(facts, event, clerk)
    await repo.save_payment(conn, facts)
    if facts.customer_id and facts.clerk_user_id:
        await repo.remember_customer(conn, facts.customer_id, facts.clerk_user_id)
    await subscriptions.note_payment(conn, facts)

    grant = await repo.lock_grant(conn, facts.grant_id)
    if books is not None:
        await books.load_own(conn, facts.grant_id)
    note: str | None = None
    why = event.eventType
    if event.eventType in GRANT_EVENTS and (grant is None or grant.outcome == "refused"):
        settlement = await _grant(conn, facts, account, books)
        if settlement is None:
            return PaymentResult(clerk, account and account.user_id, None, None)
        assert books is not None
        books.write(facts.grant_id, settlement)
        grant, note = settlement.grant, settlement.note
        why = f"refund or chargeback that arrived before {event.eventType}"
    if grant is not None and grant.outcome == "granted" and books is not None:
        grant, moved, unknown = await _settle_reversal(conn, facts, grant, books, settings, why)
        note = moved or note
        if unknown and event.eventType == PARTIALLY_REFUNDED:
            note = "refund_amount_unknown"
        elif moved is None and event.eventType in REVERSAL_EVENTS and note is None:
            note = "already_reversed" if grant.reversed_credits else "nothing_to_reverse"
    elif event.eventType in REVERSAL_EVENTS:
        note = "reversal_before_grant"  # kept in the payment's facts: applied when it is granted
    if grant is not None and books is not None:
        await books.close(conn, grant, settings)
    return PaymentResult(clerk, account and account.user_id, grant and grant.plan_id, note)


async def record_billing_event(
    conn: asyncpg.Connection, event: BillingEvent, settings: Settings
) -> Outcome:
    clerk, user_id, plan_key, note = event.clerkUserId, None, None, None
    if subscriptions.is_subscription_event(event):
        plan_key = await subscriptions.apply_subscription_event(conn, event)
    elif event.paymentId is not None:
        clerk, user_id, plan_key, note = await _apply_payment_event(conn, event, settings)
    if user_id is None and clerk is not None:
        await repo.lock_user_link_shared(conn, clerk)  # the user's creation links it otherwise
        user_id = await find_user_id(conn, clerk)
    await repo.insert_subscription_event(conn, event, clerk, user_id, plan_key)
    return Outcome(event.id, APPLIED, note)


async def regrant(
    conn: asyncpg.Connection, payment_id: str, settings: Settings, plan_ref: str | None = None
) -> RegrantResult:
    """Decide a payment's grant again from its stored facts. `plan_ref`: the plan ops name for
    it, kept on the payment (its events that still wait use it when they are released). Journal
    keys keep it to one grant per payment."""
    try:
        async with conn.transaction():
            await ledger_repo.limit_lock_wait(conn, settings.lock_wait_ms)
            stored = await repo.read_payment(conn, payment_id)
            if stored is None and plan_ref is None:
                return RegrantResult("no_facts", "no event of this payment has applied yet")
            clerk = stored and (stored.clerk_user_id or await subscriptions.clerk_user_of(
                conn, stored.subscription_id, stored.customer_id))  # fmt: skip
            account, books = await _lock_books(conn, clerk)
            facts = await repo.lock_payment(conn, payment_id)
            facts = replace(facts, clerk_user_id=facts.clerk_user_id or clerk,
                            plan_override=plan_ref or facts.plan_override)  # fmt: skip
            await repo.save_payment(conn, facts)
            grant = await repo.lock_grant(conn, facts.grant_id)
            if books is not None:
                await books.load_own(conn, facts.grant_id)
            if grant is not None and grant.outcome == "granted":
                return RegrantResult("already_granted", f"plan {grant.plan_id}, {grant.credits} credits")
            if facts.paid_at is None:
                return RegrantResult("not_paid", "no PAYMENT_CONFIRMED or PAYMENT_RECEIVED has applied")
            settlement = await _grant(conn, facts, account, books)
            if settlement is None:
                return RegrantResult("no_plan", "the payment names no plan (pass --plan)")
            assert books is not None
            books.write(facts.grant_id, settlement)
            grant, moved, _ = await _settle_reversal(
                conn, facts, settlement.grant, books, settings,
                "refund or chargeback recorded before the regrant",
            )  # fmt: skip
            await books.close(conn, grant, settings)
            return RegrantResult(grant.note if grant.outcome == "refused" else "granted",
                                 f"plan {grant.plan_id}, {grant.credits} credits"
                                 + (f" ({moved})" if moved else ""))  # fmt: skip
    except MustWait as exc:
        return RegrantResult(exc.reason, exc.detail)


async def start_allowance(conn: asyncpg.Connection, books: Books, due: DueStart, settings: Settings) -> bool:
    """A pending allowance of a payment starts (the grant sweep, with the balance locked): its
    credits, then the payment's reversal moved to what its facts say now (an allowance of a
    refunded payment is taken back as it starts). False if the payment's grant is gone."""
    assert due.reference is not None
    grant = await repo.lock_grant(conn, due.reference)
    if grant is None or grant.outcome != "granted":
        return False
    await books.load_own(conn, due.reference)
    books.wallet.start(Grant.at(due.grant_id, due.source, 0, due.priority, due.effective_at, due.expires_at,
                                     due.amount))
    books.starting(due.grant_id, due.amount)
    settlement = start_payment_allowance(grant, due.grant_id, due.amount, debt=books.debt)
    books.write(grant.grant_id, settlement)
    if due.reference.startswith("installment:"):
        facts = (await repo.installment_payments(conn, due.reference.partition(":")[2]))[0]
    else:
        facts = await repo.lock_payment(conn, due.reference)
    grant, _, _ = await _settle_reversal(conn, facts, settlement.grant, books, settings,
                                         "refund or chargeback of the payment")  # fmt: skip
    await repo.save_grant(conn, grant, books.account.clerk_user_id, books.account.user_id)
    return True


def releases(raw: Any) -> list[str]:
    """What an applied billing event releases at once: payments waiting for its subscription's
    plan, and for its customer's Clerk user (worker/waiting.py)."""
    keys = []
    if not isinstance(raw, dict):
        return keys
    if str(raw.get("eventType", "")).startswith("SUBSCRIPTION_") and raw.get("subscriptionId"):
        keys.append(f"subscription:{raw['subscriptionId']}")
    if raw.get("customerId") and raw.get("clerkUserId"):
        keys.append(f"customer:{raw['customerId']}")
    return keys


BILLING = Family("billing", billing_event_adapter, record_billing_event, warnings=WARNINGS,
                 releases=releases)  # fmt: skip
