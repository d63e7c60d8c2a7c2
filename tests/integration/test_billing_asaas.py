"""Issue 17's acceptance: billing that fits Asaas, from Asaas-shaped webhook payloads turned
into `billing.event`s by the ingress (worker/ingress/webhooks/asaas.py), applied on a real
database. Every scenario ends in the same state in every arrival order."""

from __future__ import annotations

import itertools
import json
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from tests.integration.family_helpers import journal, plan
from tests.integration.helpers import balance, make_user, usage, waiting_rows
from worker.domain.billing import BILLING, regrant
from worker.domain.each import apply_each
from worker.ingress.webhooks.asaas import to_billing_event
from worker.ledger.apply import apply_usage_batch
from worker.ledger.decide import APPLIED, WAITING
from worker.repo.reconcile import find_balance_drift

SP = ZoneInfo("America/Sao_Paulo")
DAY0 = datetime(2026, 11, 2, 9, 0, tzinfo=SP)
_ids = itertools.count()


def ref(clerk: str = "user_a", plan_id: str | None = "plan_pro", **more: Any) -> str:
    return json.dumps({"clerkUserId": clerk, **({"planId": plan_id} if plan_id else {}), **more})


def payment(pid: str, *, value: float = 49.90, created: datetime = DAY0, reference: str | None = None,
            subscription: str | None = None, installment: str | None = None, number: int | None = None,
            link: str | None = None, refunds: list | None = None, chargeback: dict | None = None,
            description: str = "Pedro AI") -> dict[str, Any]:  # fmt: skip
    return {"object": "payment", "id": pid, "dateCreated": created.strftime("%Y-%m-%d"),
            "customer": "cus_a", "subscription": subscription, "installment": installment,
            "installmentNumber": number, "paymentLink": link, "value": value, "netValue": value - 1,
            "description": description, "billingType": "CREDIT_CARD", "status": "RECEIVED",
            "dueDate": created.strftime("%Y-%m-%d"), "externalReference": reference,
            "refunds": refunds, "chargeback": chargeback, "deleted": False}  # fmt: skip


def subscription(sid: str, *, plan_id: str, value: float, cycle: str = "MONTHLY") -> dict[str, Any]:
    return {"object": "subscription", "id": sid, "customer": "cus_a", "value": value,
            "cycle": cycle, "status": "ACTIVE", "nextDueDate": "2026-12-02",
            "externalReference": ref(plan_id=plan_id), "deleted": False}  # fmt: skip


def hook(name: str, at: datetime, **objects: Any) -> dict[str, Any]:
    """An Asaas webhook payload -> our billing.event (the ingress's own conversion)."""
    payload = {"id": f"evt_{next(_ids):06d}&{next(_ids)}", "event": name,
               "dateCreated": at.astimezone(SP).strftime("%Y-%m-%d %H:%M:%S"), **objects}  # fmt: skip
    event = to_billing_event(payload)
    assert event is not None
    return event


async def release_waiting(conn, settings) -> None:
    """Apply what waits again, as a release would (what still cannot apply waits again)."""
    for row in await waiting_rows(conn):
        event = row["event"]
        await apply_each(conn, [json.loads(event) if isinstance(event, str) else event], BILLING, settings)


async def apply_in_order(conn, settings, events) -> list[tuple[str, str | None]]:
    """Apply events one by one, releasing what waits after each."""
    outcomes = []
    for event in events:
        [o] = (await apply_each(conn, [event], BILLING, settings)).outcomes
        outcomes.append((o.status, o.reason))
        await release_waiting(conn, settings)
    return outcomes


async def spend(conn, settings, clerk: str, credits: int) -> None:
    result = await apply_usage_batch(conn, [usage(clerk, credits=credits)], settings)
    assert [o.status for o in result.outcomes] == [APPLIED]


async def state(conn, clerk: str = "user_a") -> dict[str, Any]:
    debt = await conn.fetchval(
        'SELECT coalesce(sum(d.amount), 0) FROM worker.credit_debt d JOIN "User" u ON u.id = d.user_id '
        'WHERE u."clerkId" = $1', clerk)  # fmt: skip
    assert await find_balance_drift(conn) == []
    return {"balance": await balance(conn, clerk), "debt": debt, "journal": sorted(await journal(conn))}


@pytest.fixture
async def buyer(conn):
    await make_user(conn, "user_a", credits=0)
    await plan(conn, "plan_pro", 1000, monthly_cents=4990, yearly_cents=49900)


def clamp(settings):
    return settings.model_copy(update={"reversal_policy": "clamp"})


# --- reversals always take credits back -------------------------------------------------------


async def test_chargeback_after_spending_one_credit_goes_to_minus_one_by_default(conn, settings, buyer):
    paid = hook("PAYMENT_RECEIVED", DAY0, payment=payment("pay_1", reference=ref()))
    await apply_in_order(conn, settings, [paid])
    await spend(conn, settings, "user_a", 1)
    chargeback = hook("PAYMENT_CHARGEBACK_REQUESTED", DAY0 + timedelta(days=3),
                      payment=payment("pay_1", reference=ref(), chargeback={"status": "REQUESTED", "reason": "FRAUD"}))  # fmt: skip
    assert await apply_in_order(conn, settings, [chargeback]) == [(APPLIED, "reversed_below_zero")]
    assert (await state(conn))["balance"] == -1


async def test_chargeback_under_clamp_stops_at_zero_with_a_debt_the_next_grant_pays_first(
    conn, settings, buyer
):
    settings = clamp(settings)
    await apply_in_order(conn, settings, [hook("PAYMENT_RECEIVED", DAY0, payment=payment("pay_1", reference=ref()))])
    await spend(conn, settings, "user_a", 1)
    chargeback = hook("PAYMENT_CHARGEBACK_REQUESTED", DAY0 + timedelta(days=3), payment=payment("pay_1", reference=ref()))
    assert await apply_in_order(conn, settings, [chargeback]) == [(APPLIED, "debt_recorded")]
    assert {k: v for k, v in (await state(conn)).items() if k != "journal"} == {"balance": 0, "debt": 1}

    next_pack = hook("PAYMENT_RECEIVED", DAY0 + timedelta(days=4), payment=payment("pay_2", reference=ref()))
    await apply_in_order(conn, settings, [next_pack])
    after = await state(conn)
    assert (after["balance"], after["debt"]) == (999, 0)
    assert ("debt_payment/pay_2", "debt_payment", -1) in after["journal"]


PAID = hook("PAYMENT_RECEIVED", DAY0, payment=payment("pay_1", value=49.90, reference=ref()))
CONFIRMED = hook("PAYMENT_CONFIRMED", DAY0 - timedelta(minutes=1), payment=payment("pay_1", value=49.90, reference=ref()))
HALF_REFUNDED = hook("PAYMENT_PARTIALLY_REFUNDED", DAY0 + timedelta(days=1), payment=payment(
    "pay_1", value=49.90, reference=ref(),
    refunds=[{"status": "DONE", "value": 24.95}, {"status": "CANCELLED", "value": 30.0}]))  # fmt: skip
CHARGEBACK = hook("PAYMENT_CHARGEBACK_REQUESTED", DAY0 + timedelta(days=2), payment=payment("pay_1", value=49.90, reference=ref()))
DISPUTE = hook("PAYMENT_CHARGEBACK_DISPUTE", DAY0 + timedelta(days=3), payment=payment("pay_1", value=49.90, reference=ref()))
WON = hook("PAYMENT_AWAITING_CHARGEBACK_REVERSAL", DAY0 + timedelta(days=9), payment=payment(
    "pay_1", value=49.90, reference=ref(), chargeback={"status": "REVERSED"}))  # fmt: skip


@pytest.mark.parametrize("order", list(itertools.permutations([PAID, HALF_REFUNDED])), ids=["paid-first", "refund-first"])
async def test_a_partial_refund_of_half_the_value_takes_back_half_the_credits(conn, settings, buyer, order):
    await apply_in_order(conn, settings, order)
    assert await state(conn) == {"balance": 500, "debt": 0, "journal": [
        ("grant/pay_1", "grant", 1000), ("grant_reversal/pay_1", "grant_reversal", -500)]}  # fmt: skip


@pytest.mark.parametrize("policy", ["below_zero", "clamp"])
@pytest.mark.parametrize("order", list(itertools.permutations([PAID, CHARGEBACK, DISPUTE, WON])),
                         ids=lambda o: "-".join(e["eventType"].split("_")[-1] for e in o))  # fmt: skip
async def test_a_chargeback_then_a_won_dispute_is_net_zero_in_any_order(conn, settings, buyer, order, policy):
    await apply_in_order(conn, settings.model_copy(update={"reversal_policy": policy}), order)
    result = await state(conn)
    assert (result["balance"], result["debt"]) == (1000, 0)
    assert sum(delta for key, kind, delta in result["journal"] if kind != "grant") == 0


async def test_a_won_dispute_after_a_partial_refund_restores_only_the_chargeback(conn, settings, buyer):
    await apply_in_order(conn, settings, [PAID, HALF_REFUNDED, CHARGEBACK, WON])
    assert (await state(conn))["balance"] == 500


async def test_cash_undone_takes_the_credits_back(conn, settings, buyer):
    cash = payment("pay_cash", reference=ref())
    events = [hook("PAYMENT_RECEIVED", DAY0, payment=cash),
              hook("PAYMENT_RECEIVED_IN_CASH_UNDONE", DAY0 + timedelta(hours=2), payment=cash)]  # fmt: skip
    assert await apply_in_order(conn, settings, events) == [(APPLIED, None), (APPLIED, "reversed")]
    assert (await state(conn))["balance"] == 0


async def test_a_refund_after_a_chargeback_says_already_reversed_and_takes_nothing_more(conn, settings, buyer):
    refunded = hook("PAYMENT_REFUNDED", DAY0 + timedelta(days=5), payment=payment("pay_1", value=49.90, reference=ref()))
    assert await apply_in_order(conn, settings, [PAID, CHARGEBACK, refunded]) == [
        (APPLIED, None), (APPLIED, "reversed"), (APPLIED, "already_reversed")]  # fmt: skip
    assert (await state(conn))["balance"] == 0


# --- credit packs and installments ------------------------------------------------------------


@pytest.mark.parametrize("order", ["received-first", "confirmed-first"])
async def test_a_one_off_pack_payment_is_granted_once_in_either_order(conn, settings, buyer, order):
    await plan(conn, "pack_500", 500, billing_source="pack", monthly_cents=1990)
    pack = payment("pay_pack", value=19.90, reference=ref(plan_id="pack_500"))
    received = hook("PAYMENT_RECEIVED", DAY0, payment=pack)
    confirmed = hook("PAYMENT_CONFIRMED", DAY0 - timedelta(minutes=2), payment=pack)
    events = [received, confirmed] if order == "received-first" else [confirmed, received]
    assert await apply_in_order(conn, settings, events) == [(APPLIED, None), (APPLIED, None)]
    assert await state(conn) == {"balance": 500, "debt": 0, "journal": [("grant/pay_pack", "grant", 500)]}
    reason = await conn.fetchval("SELECT reason FROM worker.journal")
    assert reason == "pack pack_500"


async def test_a_pack_bought_through_a_payment_link_is_matched_by_the_link_and_the_customer(conn, settings, buyer):
    await plan(conn, "pack_link", 300, asaas_id="lnk_abc", billing_source="pack")
    # the subscription tied customer cus_a to user_a; the link's payment carries no reference
    await apply_in_order(conn, settings, [hook("SUBSCRIPTION_CREATED", DAY0 - timedelta(days=30),
                                               subscription=subscription("sub_x", plan_id="plan_pro", value=49.90))])  # fmt: skip
    linked = hook("PAYMENT_RECEIVED", DAY0, payment=payment("pay_link", value=9.90, link="lnk_abc"))
    assert await apply_in_order(conn, settings, [linked]) == [(APPLIED, None)]
    assert (await state(conn))["balance"] == 300


async def test_an_installment_plan_grants_once_and_refunds_reverse_its_share(conn, settings, buyer):
    await plan(conn, "pack_big", 1000, billing_source="pack", monthly_cents=9990)

    def installment(n: int) -> dict[str, Any]:
        return payment(f"pay_i{n}", value=33.30, installment="ins_1", number=n,
                       reference=ref(plan_id="pack_big"), description=f"Parcela {n} de 3. Pedro AI")  # fmt: skip

    events = [hook("PAYMENT_CONFIRMED", DAY0 + timedelta(days=30 * (n - 1)), payment=installment(n)) for n in (1, 2, 3)]
    refund = hook("PAYMENT_REFUNDED", DAY0 + timedelta(days=70), payment=installment(2))
    assert await apply_in_order(conn, settings, events + [refund]) == [
        (APPLIED, None), (APPLIED, None), (APPLIED, None), (APPLIED, "reversed")]  # fmt: skip
    assert await state(conn) == {"balance": 667, "debt": 0, "journal": [
        ("grant/installment:ins_1", "grant", 1000),
        ("grant_reversal/installment:ins_1", "grant_reversal", -333)]}  # fmt: skip


# --- nothing final that ops could fix ---------------------------------------------------------


async def test_a_payment_before_its_plan_row_is_granted_once_the_row_exists(conn, settings, buyer, broker, worker):
    from tests.integration.helpers import settle
    from worker.publisher import Publisher

    early = hook("PAYMENT_RECEIVED", DAY0, payment=payment("pay_new", value=29.90, reference=ref(plan_id="plan_new")))
    again = hook("PAYMENT_CONFIRMED", DAY0, payment=payment("pay_new", value=29.90, reference=ref(plan_id="plan_new")))
    Publisher(broker).publish_many([early, again])
    await settle(worker, conn)
    assert [r["waits_for"] for r in await waiting_rows(conn)] == ["plan:plan_new", "plan:plan_new"]
    assert (await state(conn))["balance"] == 0

    await plan(conn, "plan_new", 250)  # ops fix the Plan row: the sweep releases the payment
    await settle(worker, conn)
    assert await waiting_rows(conn) == []
    assert await state(conn) == {"balance": 250, "debt": 0, "journal": [("grant/pay_new", "grant", 250)]}
    assert await conn.fetchval('SELECT count(*) FROM "SubscriptionEvent" WHERE "planKey" = $1', "plan_new") == 2


async def test_regrant_with_the_plan_ops_name_grants_a_waiting_payment_once_released(conn, settings, buyer):
    early = hook("PAYMENT_RECEIVED", DAY0, payment=payment("pay_r", reference=ref(plan_id="plan_gone")))
    assert await apply_in_order(conn, settings, [early]) == [(WAITING, "no_plan")]
    assert (await regrant(conn, "pay_r", settings)).note == "no_facts"
    assert (await regrant(conn, "pay_r", settings, plan_ref="plan_pro")).note == "not_paid"
    await release_waiting(conn, settings)  # the release `billing regrant` sends
    assert await conn.fetchval("SELECT count(*) FROM worker.event_log WHERE event_id = $1", early["id"]) == 1
    assert (await state(conn))["journal"] == [("grant/pay_r", "grant", 1000)]
    assert (await regrant(conn, "pay_r", settings)).note == "already_granted"


async def test_regrant_decides_a_paid_payment_left_without_a_grant(conn, settings, buyer):
    """Before migration 0009 a payment without a plan was final (no_plan): its facts say paid."""
    await conn.execute("INSERT INTO worker.billing_payment (payment_id, clerk_user_id, paid_at, plan_ref) "
                       "VALUES ('pay_old', 'user_a', now(), 'plan_pro')")  # fmt: skip
    result = await regrant(conn, "pay_old", settings)
    assert result == ("granted", "plan plan_pro, 1000 credits")
    assert (await state(conn))["balance"] == 1000


async def test_a_paid_amount_that_differs_from_the_price_is_a_warning_never_a_block(conn, settings, buyer):
    cheap = hook("PAYMENT_RECEIVED", DAY0, payment=payment("pay_cheap", value=9.90, reference=ref(), subscription="sub_1"))
    assert await apply_in_order(conn, settings, [cheap]) == [(APPLIED, "amount_differs_from_price")]
    assert (await state(conn))["balance"] == 1000


# --- subscriptions ----------------------------------------------------------------------------


def monthly(n: int, *, with_reference: bool) -> dict[str, Any]:
    """Payment n (1-based) of sub_m, created 40 days before its due date; Asaas copies the
    subscription's reference onto the payments it creates, or (with_reference=False) not."""
    created = DAY0 + timedelta(days=30 * (n - 1))
    plan_id = "plan_max" if n == 3 else "plan_pro"
    reference = ref(plan_id=plan_id) if with_reference else None
    value = 99.90 if n == 3 else 49.90
    return hook("PAYMENT_CONFIRMED", created + timedelta(days=40), payment=payment(
        f"pay_m{n}", value=value, created=created, reference=reference, subscription="sub_m"))  # fmt: skip


CREATED = hook("SUBSCRIPTION_CREATED", DAY0 - timedelta(minutes=5),
               subscription=subscription("sub_m", plan_id="plan_pro", value=49.90))  # fmt: skip
UPGRADED = hook("SUBSCRIPTION_UPDATED", DAY0 + timedelta(days=45),  # between payments 2 and 3's creation
                subscription=subscription("sub_m", plan_id="plan_max", value=99.90))  # fmt: skip


@pytest.mark.parametrize("order", list(itertools.permutations(range(5)))[::7])
async def test_three_monthly_payments_grant_the_plan_of_when_each_was_created(conn, settings, buyer, order):
    await plan(conn, "plan_max", 3000, monthly_cents=9990)
    events = [CREATED, UPGRADED] + [monthly(n, with_reference=True) for n in (1, 2, 3)]
    await apply_in_order(conn, settings, [events[i] for i in order])
    assert await state(conn) == {"balance": 5000, "debt": 0, "journal": [
        ("grant/pay_m1", "grant", 1000), ("grant/pay_m2", "grant", 1000), ("grant/pay_m3", "grant", 3000)]}  # fmt: skip


async def test_without_a_reference_on_the_payments_the_subscription_history_decides(conn, settings, buyer):
    await plan(conn, "plan_max", 3000, monthly_cents=9990)
    events = [CREATED, monthly(1, with_reference=False), monthly(2, with_reference=False),
              UPGRADED, monthly(3, with_reference=False)]  # fmt: skip
    assert [s for s, _ in await apply_in_order(conn, settings, events)] == [APPLIED] * 5
    assert (await state(conn))["balance"] == 5000
    row = await conn.fetchrow("SELECT plan_ref, cycle, value_cents, status FROM worker.billing_subscription")
    assert dict(row) == {"plan_ref": "plan_max", "cycle": "MONTHLY", "value_cents": 9990, "status": "ACTIVE"}
    keys = await conn.fetch('SELECT "planKey" FROM "SubscriptionEvent" ORDER BY "occurredAt"')
    assert [k["planKey"] for k in keys] == ["plan_pro", "plan_pro", "plan_max", "plan_pro", "plan_max"]


async def test_a_yearly_subscription_payment_grants_twelve_months_of_credits(conn, settings, buyer):
    """As twelve monthly allowances: this month's now, each next one at its month's start
    (tests/integration/test_grants.py follows them through the year)."""
    created = hook("SUBSCRIPTION_CREATED", DAY0 - timedelta(minutes=5),
                   subscription=subscription("sub_y", plan_id="plan_pro", value=499.00, cycle="YEARLY"))  # fmt: skip
    paid = hook("PAYMENT_CONFIRMED", DAY0, payment=payment("pay_y", value=499.00, subscription="sub_y"))
    for order in ([created, paid],):
        assert await apply_in_order(conn, settings, order) == [(APPLIED, None), (APPLIED, None)]
    assert (await state(conn))["balance"] == 1000
    rows = await conn.fetch("SELECT amount, state FROM worker.credit_grant WHERE reference = 'pay_y'")
    assert sorted((r["amount"], r["state"]) for r in rows) == [(1000, "live")] + [(1000, "pending")] * 11
    assert await conn.fetchval("SELECT credits FROM worker.billing_grant WHERE grant_id = 'pay_y'") == 1000
