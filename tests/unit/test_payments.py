"""Payment credit rules (worker/domain/payments.py): event time decides, never arrival order."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest

from worker.domain.payments import (
    GrantState, PaymentFacts, PlanTerms, infer_cycle, merge, move_to_target, new_grant,
    reversal_target,
)  # fmt: skip
from worker.events import BillingEvent

T = datetime(2026, 1, 1, tzinfo=UTC)
PRO = PlanTerms("plan_pro", 1000, price_monthly_cents=4990, price_yearly_cents=49900)


def event(kind: str, minutes: int = 0, **fields) -> BillingEvent:
    return BillingEvent(type="billing.event", id=f"evt_{kind}_{minutes}", eventType=kind,
                        status="X", occurredAt=T + timedelta(minutes=minutes), paymentId="pay_1",
                        **fields)  # fmt: skip


def facts_after(*events: BillingEvent) -> PaymentFacts:
    facts = PaymentFacts("pay_1")
    for e in events:
        facts = merge(facts, e, "user_1")
    return facts


def target(*events: BillingEvent, credits: int = 1000) -> int:
    return reversal_target(credits, [facts_after(*events)])[0]


PAID = event("PAYMENT_RECEIVED", 0, valueCents=10000)
CONFIRMED = event("PAYMENT_CONFIRMED", -5, valueCents=10000)


def test_every_arrival_order_merges_into_the_same_facts():
    events = [PAID, CONFIRMED, event("PAYMENT_PARTIALLY_REFUNDED", 10, refundedCents=2500),
              event("PAYMENT_PARTIALLY_REFUNDED", 20, refundedCents=5000),
              event("PAYMENT_CHARGEBACK_REQUESTED", 30), event("PAYMENT_AWAITING_CHARGEBACK_REVERSAL", 40)]  # fmt: skip
    outcomes = {facts_after(*order) for order in itertools.permutations(events)}
    assert len(outcomes) == 1
    (facts,) = outcomes
    assert facts.paid_at == T - timedelta(minutes=5) and facts.refunded_cents == 5000
    assert facts.chargeback_open is False


def test_a_full_refund_takes_back_everything_a_partial_one_its_share():
    assert target(PAID, event("PAYMENT_REFUNDED", 10)) == 1000
    assert target(PAID, event("PAYMENT_PARTIALLY_REFUNDED", 10, refundedCents=5000)) == 500
    assert target(PAID, event("PAYMENT_PARTIALLY_REFUNDED", 10, refundedCents=3333)) == 333  # floor


def test_a_won_dispute_closes_the_chargeback_and_a_new_one_reopens_it():
    opened = event("PAYMENT_CHARGEBACK_REQUESTED", 10)
    won = event("PAYMENT_AWAITING_CHARGEBACK_REVERSAL", 20)
    assert target(PAID, opened) == 1000
    assert target(PAID, opened, won) == 0
    assert target(PAID, won, opened) == 0  # arrival order does not matter: event time does
    assert target(PAID, opened, won, event("PAYMENT_UPDATED", 30, chargebackStatus="DISPUTE_LOST")) == 1000


def test_cash_undone_reverses_until_a_later_receipt():
    undone = event("PAYMENT_RECEIVED_IN_CASH_UNDONE", 10)
    assert target(PAID, undone) == 1000
    assert target(PAID, undone, event("PAYMENT_RECEIVED", 20)) == 0


def test_a_reversal_dated_before_the_payment_does_not_reverse_it():
    assert target(event("PAYMENT_REFUNDED", -60), PAID) == 0
    assert target(event("PAYMENT_CHARGEBACK_REQUESTED", -60), PAID) == 0


def test_a_partial_refund_of_a_payment_of_unknown_value_is_flagged_not_guessed():
    facts = facts_after(event("PAYMENT_RECEIVED"), event("PAYMENT_PARTIALLY_REFUNDED", 5, refundedCents=10))
    assert reversal_target(1000, [facts]) == (0, True)


def test_installments_weigh_one_nth_of_their_plan_each():
    def installment(n: int, *more: BillingEvent) -> PaymentFacts:
        facts = PaymentFacts(f"pay_{n}")
        for e in (event("PAYMENT_CONFIRMED", n, installmentId="ins_1", installmentNumber=n,
                        installmentCount=3, valueCents=3000), *more):  # fmt: skip
            facts = merge(facts, e, "user_1")
        return facts

    parts = [installment(1), installment(2, event("PAYMENT_REFUNDED", 10)), installment(3)]
    assert reversal_target(900, parts) == (300, False)
    half = installment(1, event("PAYMENT_PARTIALLY_REFUNDED", 10, refundedCents=1500))
    assert reversal_target(900, [half]) == (150, False)  # 1/3 of the plan, half refunded


def test_moving_forward_takes_back_below_zero_by_default():
    grant = GrantState("pay_1", "subscription", "granted", "plan_pro", credits=1000)
    s = move_to_target(grant, 1000, balance=999, debt=0, policy="below_zero", why="PAYMENT_CHARGEBACK_REQUESTED")
    assert [(m.key, m.delta) for m in s.movements] == [("grant_reversal/pay_1", -1000)]
    assert s.note == "reversed_below_zero" and s.debt == 0 and s.grant.reversed_credits == 1000


def test_clamp_stops_at_zero_and_records_the_rest_as_debt_that_a_restore_pays_first():
    grant = GrantState("pay_1", "subscription", "granted", "plan_pro", credits=1000)
    taken = move_to_target(grant, 1000, balance=999, debt=0, policy="clamp", why="chargeback")
    assert [(m.kind, m.delta) for m in taken.movements] == [("grant_reversal", -999)]
    assert (taken.note, taken.debt, taken.grant.debt_recorded) == ("debt_recorded", 1, 1)
    restored = move_to_target(taken.grant, 0, balance=0, debt=1, policy="clamp", why="won")
    assert [(m.key, m.kind, m.delta) for m in restored.movements] == [
        ("grant_restore/pay_1/1", "grant_restore", 1000), ("debt_payment/pay_1/1", "debt_payment", -1)]
    assert restored.debt == 0 and restored.note == "restored"  # net: back to 999, as before


def test_nothing_to_move_writes_nothing():
    grant = GrantState("pay_1", "subscription", "granted", credits=1000, reversed_credits=500, moves=1)
    assert move_to_target(grant, 500, balance=0, debt=0, policy="clamp", why="x").movements == []


def test_a_grant_pays_the_debt_first_and_multiplies_by_the_cycle():
    facts = facts_after(event("PAYMENT_RECEIVED", subscriptionId="sub_1", valueCents=49900))
    s = new_grant(facts, PRO, "YEARLY", balance=0, debt=3)
    assert [(m.kind, m.delta) for m in s.movements] == [("grant", 12000), ("debt_payment", -3)]
    assert s.movements[0].reason == "plan plan_pro x12 (YEARLY)" and s.debt == 0 and s.note is None


def test_an_amount_that_differs_from_the_price_is_a_warning_not_a_block():
    facts = facts_after(event("PAYMENT_RECEIVED", subscriptionId="sub_1", valueCents=100))
    s = new_grant(facts, PRO, "MONTHLY", balance=0, debt=0)
    assert s.grant.credits == 1000 and s.note == "amount_differs_from_price"
    assert "paid 1.00, the plan's price is 49.90" in s.movements[0].reason


def test_a_grant_past_the_int32_balance_is_refused():
    s = new_grant(facts_after(PAID), PRO, None, balance=2**31 - 500, debt=0)
    assert s.grant.outcome == "refused" and s.movements == [] and s.note == "balance_out_of_range"


@pytest.mark.parametrize(("cycle", "value", "expected"), [
    (None, 49900, "YEARLY"), (None, 4990, None), ("MONTHLY", 49900, "MONTHLY"), (None, None, None)])  # fmt: skip
def test_an_unknown_cycle_is_yearly_only_for_exactly_the_yearly_price(cycle, value, expected):
    assert infer_cycle(cycle, PRO, value) == expected
