"""Billing events: one SubscriptionEvent row each; payment credits granted once, reversed once."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from tests.integration.family_helpers import billing, journal, plan
from tests.integration.helpers import balance, count, held_balance, make_user, rejections
from worker import db
from worker.domain.billing import BILLING
from worker.domain.each import apply_each
from worker.ledger.decide import APPLIED, DUPLICATE, RETRY, WAITING
from worker.publisher import Publisher
from worker.repo.reconcile import find_balance_drift

RECEIVED = billing("PAYMENT_RECEIVED", id="evt_a&1", t=0)
CONFIRMED = billing("PAYMENT_CONFIRMED", id="evt_b&2", t=-5, status="CONFIRMED")
REFUNDED = billing("PAYMENT_REFUNDED", id="evt_c&3", t=100, status="REFUNDED")


async def apply(conn, settings, *events):
    result = await apply_each(conn, list(events), BILLING, settings)
    return [(o.status, o.reason) for o in result.outcomes]


@pytest.fixture
async def payer(conn):
    await make_user(conn, "user_pay", credits=10)
    await plan(conn, "plan_pro", 500)


async def test_payment_received_twice_grants_the_credits_once(conn, broker, worker, payer):
    publisher = Publisher(broker)
    publisher.publish(RECEIVED)
    publisher.publish(RECEIVED)
    publisher.publish(CONFIRMED)  # another event of the same payment
    worker.drain()

    assert await balance(conn, "user_pay") == 510
    assert await journal(conn) == [("grant/pay_1", "grant", 500)]
    assert await count(conn, '"SubscriptionEvent"') == 2
    assert await find_balance_drift(conn) == []


async def test_refund_after_payment_reverses_the_grant_once(conn, broker, worker, payer):
    publisher = Publisher(broker)
    publisher.publish(RECEIVED)
    worker.drain()
    publisher.publish_many([REFUNDED, REFUNDED, billing("PAYMENT_CHARGEBACK_REQUESTED", t=200)])
    worker.drain()

    assert await balance(conn, "user_pay") == 10
    assert await journal(conn) == [
        ("grant/pay_1", "grant", 500),
        ("grant_reversal/pay_1", "grant_reversal", -500),
    ]
    assert await find_balance_drift(conn) == []


async def test_a_grant_and_its_reversal_name_the_payment_the_plan_and_the_asaas_event(
    conn, broker, worker, payer
):
    publisher = Publisher(broker)
    publisher.publish(RECEIVED)
    worker.drain()
    publisher.publish(REFUNDED)
    worker.drain()

    rows = await conn.fetch(
        "SELECT event_id, kind, delta, reference, reason FROM worker.journal ORDER BY created_at"
    )
    assert [tuple(r) for r in rows] == [
        ("grant/pay_1", "grant", 500, "pay_1", "plan plan_pro"),
        ("grant_reversal/pay_1", "grant_reversal", -500, "pay_1", "PAYMENT_REFUNDED"),
    ]


async def test_a_reversal_applied_by_its_late_payment_says_so(conn, settings, payer):
    await apply(conn, settings, REFUNDED)  # t=100: kept until the payment lands
    await apply(conn, settings, RECEIVED)  # t=0: grants, then reverses at once
    reasons = await conn.fetch("SELECT kind, reference, reason FROM worker.journal ORDER BY kind")
    assert [tuple(r) for r in reasons] == [
        ("grant", "pay_1", "plan plan_pro"),
        ("grant_reversal", "pay_1", "refund or chargeback that arrived before PAYMENT_RECEIVED"),
    ]


@pytest.mark.parametrize("order", list(itertools.permutations([RECEIVED, CONFIRMED, REFUNDED])),
                         ids=lambda o: "-".join(e["eventType"].split("_")[1] for e in o))  # fmt: skip
async def test_arrival_order_does_not_change_the_outcome(conn, settings, payer, order):
    for event in order:
        assert (await apply(conn, settings, event))[0][0] == APPLIED

    assert await balance(conn, "user_pay") == 10
    assert sorted(await journal(conn)) == [("grant/pay_1", "grant", 500),
                                           ("grant_reversal/pay_1", "grant_reversal", -500)]  # fmt: skip
    assert await find_balance_drift(conn) == []


async def test_a_refund_dated_before_the_payment_does_not_reverse_it(conn, settings, payer):
    early_refund = billing("PAYMENT_REFUNDED", t=-60, status="REFUNDED")
    assert await apply(conn, settings, early_refund) == [(APPLIED, "reversal_before_grant")]
    assert await apply(conn, settings, RECEIVED) == [(APPLIED, None)]
    assert await balance(conn, "user_pay") == 510


async def test_a_reversal_after_spending_goes_below_zero_whatever_the_overdraft_policy(
    conn, settings, payer
):
    await apply(conn, settings, RECEIVED)
    await conn.execute('UPDATE "CreditBalance" SET "creditsRemaining" = 100')  # spent meanwhile
    await conn.execute("UPDATE worker.balance_opening SET opening = opening - 410")
    settings = settings.model_copy(update={"overdraft_policy": "reject"})
    assert await apply(conn, settings, REFUNDED) == [(APPLIED, "reversed_below_zero")]

    assert await balance(conn, "user_pay") == -400
    assert await apply(conn, settings, billing("PAYMENT_CHARGEBACK_REQUESTED", t=300)) == [
        (APPLIED, "already_reversed")
    ]
    assert await find_balance_drift(conn) == []


async def test_a_paid_payment_without_a_plan_waits_and_is_granted_when_its_plan_appears(
    conn, settings, payer
):
    event = billing("PAYMENT_RECEIVED", plan="plan_later")
    assert await apply(conn, settings, event) == [(WAITING, "no_plan")]
    assert await conn.fetchval("SELECT waits_for FROM worker.waiting") == "plan:plan_later"
    assert await count(conn, '"SubscriptionEvent"') == 0
    await plan(conn, "plan_later", 70)
    assert await apply(conn, settings, event) == [(APPLIED, None)]
    assert await balance(conn, "user_pay") == 80
    assert await conn.fetchval('SELECT "planKey" FROM "SubscriptionEvent"') == "plan_later"


async def test_a_subscription_payment_naming_no_plan_waits_for_its_subscription(conn, settings, payer):
    event = billing("PAYMENT_RECEIVED", plan=None, subscription="sub_unknown")
    assert await apply(conn, settings, event) == [(WAITING, "no_plan")]
    assert await conn.fetchval("SELECT waits_for FROM worker.waiting") == "subscription:sub_unknown"


async def test_plan_found_by_its_asaas_id_when_the_reference_has_no_plan_id(conn, settings, payer):
    await plan(conn, "plan_basic", 40, asaas_id="sub_basic")
    event = billing("PAYMENT_RECEIVED", plan=None, subscription="sub_basic")
    assert await apply(conn, settings, event) == [(APPLIED, None)]
    assert await balance(conn, "user_pay") == 50
    assert await conn.fetchval('SELECT "planKey" FROM "SubscriptionEvent"') == "plan_basic"


async def test_a_one_off_payment_naming_no_plan_and_subscription_events_grant_nothing(
    conn, settings, payer
):
    one_off = billing("PAYMENT_RECEIVED", subscription=None, plan=None, payment="pay_single")
    created = billing("SUBSCRIPTION_CREATED", payment=None, status="ACTIVE")
    assert await apply(conn, settings, one_off, created) == [(APPLIED, None), (APPLIED, None)]
    assert await balance(conn, "user_pay") == 10
    rows = await conn.fetch(
        'SELECT "userId", "clerkUserId", status, "planKey" FROM "SubscriptionEvent" ORDER BY status'
    )
    assert [(r["clerkUserId"], r["status"], r["planKey"]) for r in rows] == [
        ("user_pay", "ACTIVE", "plan_pro"),
        ("user_pay", "RECEIVED", None),
    ]
    assert all(r["userId"] is not None for r in rows)


async def test_grant_for_a_user_not_created_yet_waits_and_writes_nothing(conn, settings):
    await plan(conn, "plan_pro", 500)
    assert await apply(conn, settings, RECEIVED) == [(WAITING, "unknown_user")]
    assert await count(conn, '"SubscriptionEvent"') == 0
    assert await count(conn, "worker.event_log") == 0
    [waiting] = await conn.fetch("SELECT * FROM worker.waiting")
    assert (waiting["event_id"], waiting["queue"], waiting["waits_for"]) == (RECEIVED["id"], "billing", "user:user_pay")
    await make_user(conn, "user_pay", credits=0)
    assert await apply(conn, settings, RECEIVED) == [(APPLIED, None)]
    assert await apply(conn, settings, RECEIVED) == [(DUPLICATE, None)]
    assert await balance(conn, "user_pay") == 500


async def test_a_payment_naming_no_clerk_user_waits_until_ops_regrant_or_its_customer_is_known(
    conn, settings, payer
):
    anonymous = billing("PAYMENT_RECEIVED", clerk=None, payment="pay_anon")
    assert await apply(conn, settings, anonymous) == [(WAITING, "no_clerk_user")]
    assert await conn.fetchval("SELECT waits_for FROM worker.waiting") == "payment:pay_anon"
    assert await journal(conn) == []
    with_customer = billing("PAYMENT_RECEIVED", clerk=None, payment="pay_cus") | {"customerId": "cus_1"}
    assert await apply(conn, settings, with_customer) == [(WAITING, "no_clerk_user")]
    # a subscription event names the customer's user: the payment is granted when it is released
    named = billing("SUBSCRIPTION_UPDATED", payment=None, subscription="sub_2", status="ACTIVE") | {"customerId": "cus_1"}
    assert await apply(conn, settings, named, with_customer) == [(APPLIED, None), (APPLIED, None)]
    assert await journal(conn) == [("grant/pay_cus", "grant", 500)]
    row = await conn.fetchrow('SELECT "clerkUserId", "userId" FROM "SubscriptionEvent" WHERE id = $1', with_customer["id"])
    assert row["clerkUserId"] == "user_pay" and row["userId"] is not None


async def test_a_payment_for_a_balance_held_elsewhere_waits_and_is_granted_once(
    conn, database_url, settings, payer
):
    """Without the lock wait limit the event would hold its worker thread until statement_timeout."""
    settings = settings.model_copy(update={"lock_wait_ms": 100})
    worker_conn = await db.connect(database_url)  # no statement_timeout: only the limit ends the wait
    try:
        async with held_balance(database_url, "user_pay"):
            assert await asyncio.wait_for(apply(worker_conn, settings, RECEIVED), 20) == [(RETRY, "row_busy")]
            assert await count(conn, '"SubscriptionEvent"') == 0  # rolled back, its claim included
        [(status, _)] = await apply(worker_conn, settings, RECEIVED)  # the row is free again
    finally:
        await worker_conn.close()
    assert status == APPLIED
    assert await balance(conn, "user_pay") == 510
    assert await journal(conn) == [("grant/pay_1", "grant", 500)]
