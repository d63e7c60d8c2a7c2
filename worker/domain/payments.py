"""Pure credit decisions for one subscription payment: no I/O, so every rule is unit-tested.

A payment grants its plan's credits at most once and reverses that grant at most once. What
decides is event time, never arrival order:

- `paid_at` is the earliest PAYMENT_CONFIRMED / PAYMENT_RECEIVED event time seen for the payment,
  `reversed_at` the earliest refund / chargeback event time;
- the grant is written by the first grant-type event (plan credits at that moment);
- the reversal is written once a grant exists and `reversed_at >= paid_at`: a refund that
  arrives first is kept, and the grant that lands later is written together with its reversal
  (net zero), exactly the journal that in-order arrival gives. A refund dated before the
  payment was confirmed does not reverse it.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Literal

from ..events import INT32_MAX

GRANT = "grant"
REVERSAL = "grant_reversal"
Kind = Literal["grant", "grant_reversal"]

GRANT_EVENTS = frozenset({"PAYMENT_CONFIRMED", "PAYMENT_RECEIVED"})
REVERSAL_EVENTS = frozenset(
    {"PAYMENT_REFUNDED", "PAYMENT_CHARGEBACK_REQUESTED", "PAYMENT_CHARGEBACK_DISPUTE"}
)

# Notes ops should hear about (logged as warnings, counted per batch).
WARNINGS = frozenset({"no_plan", "no_clerk_user", "insufficient_credits", "balance_out_of_range",
                      "payment_user_mismatch"})  # fmt: skip


@dataclass(frozen=True)
class PlanCredits:
    plan_id: str
    credits: int


@dataclass(frozen=True)
class PaymentState:
    """worker.billing_payment: the event times and what was decided for one payment."""

    clerk_user_id: str | None = None
    paid_at: datetime | None = None
    reversed_at: datetime | None = None
    grant_outcome: str | None = None  # granted | no_plan | refused
    plan_id: str | None = None
    granted_credits: int | None = None
    reversal_outcome: str | None = None  # reversed | refused


@dataclass(frozen=True)
class PaymentDecision:
    state: PaymentState
    movements: list[tuple[str, int]] = field(default_factory=list)  # (journal kind, delta)
    note: str | None = None


def _earliest(current: datetime | None, at: datetime) -> datetime:
    return at if current is None or at < current else current


def decide_payment(
    state: PaymentState,
    *,
    kind: Kind,
    at: datetime,
    plan: PlanCredits | None,
    balance: int,
    policy: Literal["reject", "allow"],
) -> PaymentDecision:
    """The next state of a payment after one grant-type or reversal-type event at `at`, and the
    balance movements to write. `balance` is the user's locked balance; `plan` matters only for
    the first grant-type event."""
    note: str | None = None
    movements: list[tuple[str, int]] = []
    if kind == GRANT:
        state = replace(state, paid_at=_earliest(state.paid_at, at))
        if state.grant_outcome is not None:
            note = "already_granted"
        elif plan is None or plan.credits <= 0:
            state, note = (
                replace(state, grant_outcome="no_plan", plan_id=plan and plan.plan_id),
                "no_plan",
            )
        elif balance + plan.credits > INT32_MAX:
            state, note = replace(state, grant_outcome="refused"), "balance_out_of_range"
        else:
            state = replace(
                state, grant_outcome="granted", plan_id=plan.plan_id, granted_credits=plan.credits
            )
            movements.append((GRANT, plan.credits))
    else:
        state = replace(state, reversed_at=_earliest(state.reversed_at, at))

    reversible = (
        state.grant_outcome == "granted" and state.reversal_outcome is None
        and state.reversed_at is not None and state.paid_at is not None
        and state.reversed_at >= state.paid_at
    )  # fmt: skip
    if reversible:
        assert state.granted_credits is not None
        after = balance + sum(delta for _, delta in movements) - state.granted_credits
        if policy == "reject" and after < 0:
            state, note = replace(state, reversal_outcome="refused"), "insufficient_credits"
        else:
            state = replace(state, reversal_outcome="reversed")
            movements.append((REVERSAL, -state.granted_credits))
    elif kind == REVERSAL:
        note = _why_not_reversed(state)
    return PaymentDecision(state, movements, note)


def _why_not_reversed(state: PaymentState) -> str:
    if state.reversal_outcome is not None:
        return "already_reversed"
    if state.grant_outcome is None:
        return "reversal_before_grant"  # kept: applied when the grant lands
    if state.grant_outcome != "granted":
        return "nothing_to_reverse"
    return "reversal_before_payment"
