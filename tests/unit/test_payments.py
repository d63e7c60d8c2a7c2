"""Payment credit rules (worker/domain/payments.py): once per payment, event time decides."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest

from worker.domain.payments import GRANT, REVERSAL, PaymentState, PlanCredits, decide_payment

T = datetime(2026, 1, 1, tzinfo=UTC)
PRO = PlanCredits("plan_pro", 500)


def run(events, *, balance=0, plan=PRO, policy="reject"):
    """Apply (kind, minutes) events in the order given; returns the state and all movements."""
    state, movements = PaymentState(clerk_user_id="u"), []
    for kind, minutes in events:
        decision = decide_payment(state, kind=kind, at=T + timedelta(minutes=minutes), plan=plan,
                                  balance=balance, policy=policy)  # fmt: skip
        state = decision.state
        movements += decision.movements
        balance += sum(delta for _, delta in decision.movements)
    return state, movements


def test_two_grant_events_of_one_payment_grant_once():
    state, movements = run([(GRANT, 0), (GRANT, 5)])
    assert movements == [(GRANT, 500)]
    assert state.paid_at == T and state.granted_credits == 500


@pytest.mark.parametrize(
    "order", list(itertools.permutations([(GRANT, 0), (GRANT, 5), (REVERSAL, 10)]))
)
def test_a_refund_after_the_payment_reverses_once_in_any_arrival_order(order):
    state, movements = run(order)
    assert sorted(movements) == [(GRANT, 500), (REVERSAL, -500)]
    assert state.reversal_outcome == "reversed"


@pytest.mark.parametrize("order", [[(REVERSAL, -10), (GRANT, 0)], [(GRANT, 0), (REVERSAL, -10)]])
def test_a_refund_dated_before_the_payment_does_not_reverse_it(order):
    _, movements = run(order)
    assert movements == [(GRANT, 500)]


def test_an_earlier_grant_event_arriving_late_makes_a_kept_refund_apply():
    _, movements = run([(GRANT, 20), (REVERSAL, 10), (GRANT, 0)])
    assert movements == [(GRANT, 500), (REVERSAL, -500)]


def test_reversal_that_would_overdraw_is_refused_under_reject_and_applied_under_allow():
    state = PaymentState(
        paid_at=T, grant_outcome="granted", plan_id="plan_pro", granted_credits=500
    )
    refused = decide_payment(state, kind=REVERSAL, at=T, plan=None, balance=100, policy="reject")
    assert (refused.movements, refused.note, refused.state.reversal_outcome) == (
        [],
        "insufficient_credits",
        "refused",
    )
    allowed = decide_payment(state, kind=REVERSAL, at=T, plan=None, balance=100, policy="allow")
    assert allowed.movements == [(REVERSAL, -500)]


def test_refund_first_then_payment_is_net_zero_even_with_no_balance():
    _, movements = run([(REVERSAL, 10), (GRANT, 0)], balance=0)
    assert movements == [(GRANT, 500), (REVERSAL, -500)]


def test_no_plan_or_a_zero_credit_plan_grants_nothing_and_says_so():
    for plan in (None, PlanCredits("free", 0)):
        decision = decide_payment(
            PaymentState(), kind=GRANT, at=T, plan=plan, balance=0, policy="reject"
        )
        assert (decision.movements, decision.note, decision.state.grant_outcome) == (
            [],
            "no_plan",
            "no_plan",
        )


def test_a_grant_past_the_int32_balance_is_refused():
    decision = decide_payment(
        PaymentState(), kind=GRANT, at=T, plan=PRO, balance=2**31 - 100, policy="allow"
    )
    assert (decision.movements, decision.note) == ([], "balance_out_of_range")
