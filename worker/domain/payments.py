"""Pure credit rules of Asaas payments: no I/O, so every rule is unit-tested.

**Facts.** Each event of a payment merges what it says into the payment's facts
(`worker.billing_payment`), by event time, so the order events arrive in never matters:

- `paid_at` / `paid_last_at`: the earliest / latest PAYMENT_CONFIRMED or PAYMENT_RECEIVED;
- `refunded_full_at`: the earliest PAYMENT_REFUNDED; `refunded_cents`: the largest cumulative
  refund seen (PAYMENT_PARTIALLY_REFUNDED carries the payment's refunds);
- the chargeback: the latest signal by event time opens it (REQUESTED, DISPUTE, lost) or closes
  it in the merchant's favour (AWAITING_CHARGEBACK_REVERSAL, chargeback status REVERSED);
- `cash_undone_at`: the latest PAYMENT_RECEIVED_IN_CASH_UNDONE; it counts unless a receipt
  came after it.

**Grant.** A payment grants once (an installment plan once, on its first confirmed installment):
the plan's credits, times the months of a subscription's cycle. Under the clamp policy the
credits pay the user's debt first.

**Reversal.** What a grant should have taken back now is a function of its payments' facts:
`floor(credits × reversed share)`, where a refund, an open chargeback or undone cash reverse a
payment whole and a partial refund reverses `refunded / value` of it (an installment weighs 1/N
of its plan). Each event moves the grant from what it had taken back to that target: forward
takes credits back, backward (a won dispute, a receipt after cash undone) restores them. So
every reversal happens at most once per payment, in any arrival order. A reversal dated before
the payment was confirmed does not reverse it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from fractions import Fraction
from typing import Literal

from ..events import INT32_MAX, BillingEvent

GRANT_EVENTS = frozenset({"PAYMENT_CONFIRMED", "PAYMENT_RECEIVED"})
REFUNDED = "PAYMENT_REFUNDED"
PARTIALLY_REFUNDED = "PAYMENT_PARTIALLY_REFUNDED"
CASH_UNDONE = "PAYMENT_RECEIVED_IN_CASH_UNDONE"
CHARGEBACK_OPENS = frozenset({"PAYMENT_CHARGEBACK_REQUESTED", "PAYMENT_CHARGEBACK_DISPUTE"})
CHARGEBACK_CLOSES = frozenset({"PAYMENT_AWAITING_CHARGEBACK_REVERSAL"})
REVERSAL_EVENTS = (
    frozenset({REFUNDED, PARTIALLY_REFUNDED, CASH_UNDONE}) | CHARGEBACK_OPENS | CHARGEBACK_CLOSES
)
# payment.chargeback.status: which keep the chargeback open, which close it for the merchant
_OPEN_CHARGEBACK = frozenset({"REQUESTED", "IN_DISPUTE", "DISPUTE_LOST", "DONE"})
_CLOSED_CHARGEBACK = frozenset({"REVERSED"})

CYCLE_MONTHS = {"MONTHLY": 1, "BIMONTHLY": 2, "QUARTERLY": 3, "SEMIANNUALLY": 6, "YEARLY": 12}
PACK_SOURCE = "pack"  # "Plan".billingSource of a credit pack

# Notes ops should hear about (logged as warnings, counted per batch).
WARNINGS = frozenset({
    "balance_out_of_range", "payment_user_mismatch", "reversed_below_zero", "debt_recorded",
    "amount_differs_from_price", "refund_amount_unknown", "bad_plan_credits",
})  # fmt: skip

GrantKind = Literal["subscription", "one_off", "installment"]
ReversalPolicy = Literal["below_zero", "clamp"]


@dataclass(frozen=True)
class PlanTerms:
    """A "Plan" row as a payment sees it."""

    plan_id: str
    credits: int
    billing_source: str = "manual"
    price_monthly_cents: int | None = None
    price_yearly_cents: int | None = None
    features: object = None  # "Plan".features: how its credits behave (plan_credits.py)

    @property
    def is_pack(self) -> bool:
        return self.billing_source == PACK_SOURCE


@dataclass(frozen=True)
class PaymentFacts:
    """worker.billing_payment: what the events of one Asaas payment said, merged by event time."""

    payment_id: str
    clerk_user_id: str | None = None
    customer_id: str | None = None
    subscription_id: str | None = None
    installment_id: str | None = None
    installment_number: int | None = None
    installment_count: int | None = None
    payment_link_id: str | None = None
    plan_ref: str | None = None
    value_cents: int | None = None
    value_at: datetime | None = None
    created_at: datetime | None = None
    paid_at: datetime | None = None
    paid_last_at: datetime | None = None
    refunded_cents: int | None = None
    refunded_full_at: datetime | None = None
    chargeback_at: datetime | None = None
    chargeback_open: bool | None = None
    cash_undone_at: datetime | None = None
    plan_override: str | None = None  # the plan ops named (`pedro-worker billing regrant --plan`)

    @property
    def grant_id(self) -> str:
        """What the payment's credits are granted under: an installment plan grants once."""
        return f"installment:{self.installment_id}" if self.installment_id else self.payment_id

    @property
    def kind(self) -> GrantKind:
        if self.installment_id:
            return "installment"
        return "subscription" if self.subscription_id else "one_off"


@dataclass(frozen=True)
class GrantState:
    """worker.billing_grant: what a payment (or installment plan) granted and took back."""

    grant_id: str
    kind: GrantKind
    outcome: Literal["granted", "refused"]
    plan_id: str | None = None
    cycle: str | None = None
    credits: int = 0
    reversed_credits: int = 0
    debt_recorded: int = 0
    moves: int = 0
    note: str | None = None


@dataclass(frozen=True)
class Movement:
    """One journal row: its key (worker.journal.event_id), kind, delta and why."""

    key: str
    kind: str
    delta: int
    reason: str


@dataclass(frozen=True)
class Settlement:
    grant: GrantState
    movements: list[Movement] = field(default_factory=list)
    debt: int = 0  # the user's debt afterwards
    note: str | None = None


def _earliest(current: datetime | None, at: datetime | None) -> datetime | None:
    return at if current is None or (at is not None and at < current) else current


def _latest(current: datetime | None, at: datetime | None) -> datetime | None:
    return at if current is None or (at is not None and at > current) else current


def _chargeback_signal(event: BillingEvent) -> bool | None:
    """True: the event says a chargeback is open; False: closed in the merchant's favour."""
    if event.eventType in CHARGEBACK_OPENS:
        return True
    if event.eventType in CHARGEBACK_CLOSES:
        return False
    if event.chargebackStatus in _OPEN_CHARGEBACK:
        return True
    if event.chargebackStatus in _CLOSED_CHARGEBACK:
        return False
    return None


def merge(facts: PaymentFacts, event: BillingEvent, clerk_user_id: str | None) -> PaymentFacts:
    """The payment's facts after one of its events (`clerk_user_id`: whom it belongs to, as
    resolved for this event). Ids, once known, stay; times keep their earliest or latest."""
    at = event.occurredAt
    changes: dict[str, object] = {
        "clerk_user_id": facts.clerk_user_id or clerk_user_id,
        "customer_id": facts.customer_id or event.customerId,
        "subscription_id": facts.subscription_id or event.subscriptionId,
        "installment_id": facts.installment_id or event.installmentId,
        "installment_number": facts.installment_number or event.installmentNumber,
        "installment_count": max(facts.installment_count or 0, event.installmentCount or 0) or None,
        "payment_link_id": facts.payment_link_id or event.paymentLinkId,
    }
    created = event.paymentCreatedAt or (at if event.eventType == "PAYMENT_CREATED" else None)
    changes["created_at"] = _earliest(facts.created_at, created)
    if (event.valueCents is not None or event.planId) and (facts.value_at is None or at >= facts.value_at):
        # value and plan reference: the newest event that states them (a pending payment's value
        # changes when its subscription is updated with updatePendingPayments)
        changes["value_cents"] = event.valueCents if event.valueCents is not None else facts.value_cents
        changes["plan_ref"] = event.planId or facts.plan_ref
        changes["value_at"] = at
    elif facts.plan_ref is None and event.planId:
        changes["plan_ref"] = event.planId
    if event.eventType in GRANT_EVENTS:
        changes["paid_at"] = _earliest(facts.paid_at, at)
        changes["paid_last_at"] = _latest(facts.paid_last_at, at)
    if event.eventType == REFUNDED:
        changes["refunded_full_at"] = _earliest(facts.refunded_full_at, at)
    if event.refundedCents is not None:
        changes["refunded_cents"] = max(facts.refunded_cents or 0, event.refundedCents)
    if event.eventType == CASH_UNDONE:
        changes["cash_undone_at"] = _latest(facts.cash_undone_at, at)
    signal = _chargeback_signal(event)
    if signal is not None and (
        facts.chargeback_at is None or (at, signal) > (facts.chargeback_at, bool(facts.chargeback_open))
    ):
        changes["chargeback_at"], changes["chargeback_open"] = at, signal
    return replace(facts, **changes)  # type: ignore[arg-type]


def reversed_share(facts: PaymentFacts) -> Fraction | None:
    """How much of one payment is taken back now (0..1); None: partly refunded, value unknown."""
    paid = facts.paid_at
    if paid is None:
        return Fraction(0)
    undone = facts.cash_undone_at is not None and facts.cash_undone_at >= paid and (
        facts.paid_last_at is None or facts.cash_undone_at >= facts.paid_last_at
    )
    refunded = facts.refunded_full_at is not None and facts.refunded_full_at >= paid
    charged_back = bool(facts.chargeback_open) and facts.chargeback_at is not None and facts.chargeback_at >= paid
    if refunded or charged_back or undone:
        return Fraction(1)
    if not facts.refunded_cents:
        return Fraction(0)
    if not facts.value_cents:
        return None
    return Fraction(min(facts.refunded_cents, facts.value_cents), facts.value_cents)


def reversal_target(credits: int, parts: Sequence[PaymentFacts]) -> tuple[int, bool]:
    """(credits the grant should have taken back now, whether a partial refund's value was
    unknown and counted as nothing). `parts`: the grant's payments, one, or an installment
    plan's installments seen so far, each weighing 1/N of it (N: installmentCount, else the
    highest installment number or count seen)."""
    shares = [reversed_share(p) for p in parts]
    total = sum((share or Fraction(0) for share in shares), Fraction(0))
    if any(p.installment_id for p in parts):
        count = max([len(parts)] + [max(p.installment_count or 0, p.installment_number or 0) for p in parts])
        total /= count
    return min(credits, int(credits * total)), any(share is None for share in shares)


def cycle_months(cycle: str | None) -> int:
    """A plan's credits are per month: a cycle of several months grants them that many times;
    WEEKLY and BIWEEKLY payments grant them once each."""
    return CYCLE_MONTHS.get(cycle or "", 1)


def infer_cycle(cycle: str | None, plan: PlanTerms, value_cents: int | None) -> str | None:
    """The subscription's cycle; unknown, a payment of exactly the plan's yearly price is YEARLY."""
    if cycle or value_cents is None:
        return cycle
    if plan.price_yearly_cents == value_cents and plan.price_monthly_cents != value_cents:
        return "YEARLY"
    return None


def expected_price_cents(plan: PlanTerms, kind: GrantKind, cycle: str | None) -> int | None:
    """What the plan says the payment (an installment plan: all its installments) should cost."""
    if kind == "subscription" and cycle == "YEARLY" and plan.price_yearly_cents is not None:
        return plan.price_yearly_cents
    if plan.price_monthly_cents is None:
        return None
    return plan.price_monthly_cents * (cycle_months(cycle) if kind == "subscription" else 1)


def paid_cents(facts: PaymentFacts) -> int | None:
    if facts.value_cents is None:
        return None
    if facts.installment_id:
        return facts.value_cents * facts.installment_count if facts.installment_count else None
    return facts.value_cents


def grant_reason(plan: PlanTerms, facts: PaymentFacts, cycle: str | None, months: int) -> str:
    what = f"pack {plan.plan_id}" if plan.is_pack else f"plan {plan.plan_id}"
    if facts.kind == "installment":
        return f"{what} (installment plan {facts.installment_id})"
    if facts.kind == "one_off" and not plan.is_pack:
        return f"{what} (one-off payment)"
    return f"{what} x{months} ({cycle})" if months > 1 else what


def _pay_debt(grant_id: str, suffix: str, credits: int, debt: int) -> tuple[list[Movement], int]:
    """Credits given to a user with a debt pay it first: one debt_payment movement."""
    paid = min(debt, credits)
    if not paid:
        return [], debt
    return [Movement(f"debt_payment/{grant_id}{suffix}", "debt_payment", -paid, "debt paid first")], debt - paid


def grant_months(facts: PaymentFacts, cycle: str | None) -> int:
    """How many months of the plan a payment pays for."""
    return cycle_months(cycle) if facts.kind == "subscription" else 1


def new_grant(
    facts: PaymentFacts, plan: PlanTerms, cycle: str | None, *, balance: int, debt: int,
    credits: int | None = None,
) -> Settlement:
    """The first grant of a payment (or installment plan) with its plan known. `credits`: what
    it gives now (its allowances that have started, plan_credits.py); by default all its months."""
    grant_id, kind = facts.grant_id, facts.kind
    months = grant_months(facts, cycle)
    credits = plan.credits * months if credits is None else credits
    if balance + credits - min(debt, credits) > INT32_MAX:
        refused = GrantState(grant_id, kind, "refused", plan.plan_id, cycle, note="balance_out_of_range")
        return Settlement(refused, debt=debt, note="balance_out_of_range")
    expected, paid = expected_price_cents(plan, kind, cycle), paid_cents(facts)
    note = None
    if expected is not None and paid is not None and expected != paid:
        note = "amount_differs_from_price"
    reason = grant_reason(plan, facts, cycle, months)
    if note:
        reason += f"; paid {paid / 100:.2f}, the plan's price is {expected / 100:.2f}"  # type: ignore[operator]
    movements = [Movement(f"grant/{grant_id}", "grant", credits, reason)]
    paying, debt = _pay_debt(grant_id, "", credits, debt)
    grant = GrantState(grant_id, kind, "granted", plan.plan_id, cycle, credits, note=note)
    return Settlement(grant, movements + paying, debt, note)


def start_allowance(grant: GrantState, allowance_id: str, credits: int, *, debt: int) -> Settlement:
    """One more allowance of a granted payment starts (a yearly plan's next month): the grant
    has given that much more, paying the debt first. Its reversal follows (`move_to_target`)."""
    movements = [Movement(f"start/{allowance_id}", "grant_start", credits, f"allowance {allowance_id} starts")]
    paying, debt = _pay_debt(grant.grant_id, f"/start/{allowance_id}", credits, debt)
    return Settlement(replace(grant, credits=grant.credits + credits), movements + paying, debt)


def move_to_target(
    grant: GrantState, target: int, *, balance: int, debt: int, policy: ReversalPolicy, why: str
) -> Settlement:
    """Move a grant's reversal from what it has taken back to `target`. Forward takes credits
    back: below zero if need be, or (clamp) down to zero with the rest recorded as debt.
    Backward restores them, paying the debt first."""
    delta = target - grant.reversed_credits
    if delta == 0:
        return Settlement(grant, debt=debt)
    n = grant.moves
    suffix = f"/{n}" if n else ""
    grant = replace(grant, reversed_credits=target, moves=n + 1)
    if delta < 0:
        restore = Movement(f"grant_restore/{grant.grant_id}/{n}", "grant_restore", -delta, why)
        paying, debt = _pay_debt(grant.grant_id, f"/{n}", -delta, debt)
        return Settlement(grant, [restore] + paying, debt, "restored")
    take = min(delta, max(balance, 0)) if policy == "clamp" else delta
    owed = delta - take
    reason = why + (f"; {owed} recorded as debt" if owed else "")
    movements = [Movement(f"grant_reversal/{grant.grant_id}{suffix}", "grant_reversal", -take, reason)] if take else []
    if owed:
        note = "debt_recorded"
    else:
        note = "reversed_below_zero" if balance - take < 0 else "reversed"
    grant = replace(grant, debt_recorded=grant.debt_recorded + owed)
    return Settlement(grant, movements, debt + owed, note)
