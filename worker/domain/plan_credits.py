"""How a plan's credits behave, from `"Plan".features` (the app's "plan-specific overrides" JSON).
Pure: no I/O, so every rule is unit-tested.

    {"credits": {"period": "month", "rollover": 0, "priority": 5, "validMonths": null}}

Every key is optional; a plan without `features.credits` gets the defaults:

- **A subscription plan** gives `"Plan".credits` per month of what was paid: a yearly payment
  is 12 monthly allowances, each effective at the start of its month and expiring at its end
  (`period: "month"`); `period: "cycle"` makes it one allowance for the whole paid cycle.
  `rollover`: at an allowance's end, up to that many of its unused credits carry over into one
  more period (default 0: they expire).
- **A pack** (`"Plan".billingSource = 'pack'`) gives its credits once, never expiring unless
  `validMonths` says how many months they last.
- `priority`: lower is used first (defaults: plan 5, pack 20; grants.PRIORITIES).

Periods start when the payment's credits are given (as soon as its PAYMENT_CONFIRMED or
PAYMENT_RECEIVED applies; later if it waited for its user or plan: credits paid for are never
born expired) and are calendar months from then (31 January + 1 month = 28 February, at the
same time of day).
A `features.credits` that is not this shape is not guessed at: the defaults apply and the grant
carries the note `bad_plan_credits` (a warning).
"""

from __future__ import annotations

import calendar
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..ledger.grants import PRIORITIES, NewGrant


class PlanCredits(BaseModel):
    """`"Plan".features.credits`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    period: Literal["month", "cycle"] = "month"
    rollover: int = Field(0, ge=0, le=2_147_483_647)
    priority: int | None = Field(None, ge=0, le=1000)
    validMonths: int | None = Field(None, ge=1, le=1200)


DEFAULT = PlanCredits()


def plan_credits(features: Any) -> tuple[PlanCredits, bool]:
    """(the terms, whether `features.credits` was readable). Anything but an object under
    `credits` that fits PlanCredits falls back to the defaults."""
    if not isinstance(features, dict) or "credits" not in features:
        return DEFAULT, True
    try:
        return PlanCredits.model_validate(features["credits"]), True
    except ValidationError:
        return DEFAULT, False


def add_months(moment: datetime, months: int) -> datetime:
    """The same day and time `months` later (the month's last day when it is shorter)."""
    index = moment.month - 1 + months
    year, month = moment.year + index // 12, index % 12 + 1
    return moment.replace(year=year, month=month, day=min(moment.day, calendar.monthrange(year, month)[1]))


def allowances(
    *, user_id: str, grant_id: str, credits: int, months: int, pack: bool, terms: PlanCredits,
    start: datetime, now: datetime,
) -> list[NewGrant]:  # fmt: skip
    """The grants a payment of `months` months of a plan of `credits` per month gives: pending
    until their start, live from then (`now` decides which). Each holds nothing until its
    credits are moved into it (`grant` or `grant_start` movement: worker/domain/books.py)."""
    if pack:
        expires = add_months(start, terms.validMonths) if terms.validMonths else None
        priority = PRIORITIES["pack"] if terms.priority is None else terms.priority
        return [NewGrant(f"pack/{grant_id}/0", user_id, "pack", credits, 0, priority, start, expires,
                         grant_id)]  # fmt: skip
    priority = PRIORITIES["plan"] if terms.priority is None else terms.priority
    if terms.period == "cycle":
        periods = [(0, months, credits * months)]
    else:
        periods = [(k, 1, credits) for k in range(months)]
    grants = []
    for k, length, amount in periods:
        effective = add_months(start, k)
        grants.append(NewGrant(
            f"plan/{grant_id}/{k}", user_id, "plan", amount, 0, priority, effective,
            add_months(start, k + length), grant_id, "live" if effective <= now else "pending",
            rollover=terms.rollover, period_months=length,
        ))  # fmt: skip
    return grants
