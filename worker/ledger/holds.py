"""Credit holds, pure: how much a hold may take, what a capture charges and gives back, what a
release returns. No I/O, so every rule is unit-tested; worker/domain/holds.py runs them in
transactions, and decide.py for a `usage.recorded` that names a hold.

A hold takes its credits from the user's grants in burn order when it is placed (`hold/<id>`),
so `"CreditBalance"."creditsRemaining"` already shows them gone. It then resolves exactly once:

    capture  `capture/<id>`: the usage is charged `charged` credits; what was held beyond that
             goes back to the grants it came from (last taken first), what was used beyond the
             hold is taken in burn order, into debt if need be (overCapture `overflow`)
    release  `release/<id>`: everything held goes back (the app's release, or the expiry)

Credits going back to a grant that has ended meanwhile expire at once (`expire/<movement>`),
as a refund's do (grants.Wallet.give_back).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from .grants import Allocation, Wallet, encode

OverCapture = Literal["reject", "cap", "overflow"]

HELD, CAPTURED, RELEASED, EXPIRED = "held", "captured", "released", "expired"
MAX_TTL_S = 86_400
DEFAULT_TTL_S = 900


@dataclass(slots=True)
class Hold:
    """A hold as the ledger sees it (a row of worker.credit_hold)."""

    hold_id: str
    user_id: str
    clerk_user_id: str
    credits: int
    status: str
    expires: float  # epoch seconds
    allocation: Allocation
    over_capture: str = "overflow"
    operation_type: str | None = None

    def is_open(self, now: float) -> bool:
        """Held and not past its expiry: it can still be captured or released."""
        return self.status == HELD and self.expires > now

    def is_due(self, now: float) -> bool:
        """Held past its expiry: the next transaction over its user releases it (expired)."""
        return self.status == HELD and self.expires <= now


def available(balance: int, wallet: Wallet, now: datetime) -> int:
    """What a new hold may take now: credits in grants usable now, never more than the balance
    (a debt is paid before anything is spendable)."""
    return max(0, min(balance, wallet.usable(now)))


def charge(held: int, used: int, over_capture: str) -> int | None:
    """What a capture of `used` credits charges, for a hold of `held`: `used` when it fits, else
    per overCapture — `overflow`: all of it, `cap`: the held amount, `reject`: None (refused)."""
    if used <= held or over_capture == "overflow":
        return used
    if over_capture == "cap":
        return held
    return None


def first_taken(allocation: Allocation, credits: int) -> Allocation:
    """The first `credits` of what an allocation took (a capture keeps what was taken first and
    gives back the last taken, so a later refund finds the usage's own grants)."""
    kept: Allocation = []
    left = credits
    for grant_id, delta in allocation:
        if left == 0:
            break
        part = min(-delta, left)
        if part > 0:
            kept.append((grant_id, -part))
            left -= part
    return kept


@dataclass(slots=True)
class Resolution:
    """A capture's or release's effect on the balance and the grants."""

    delta: int  # the movement's balance change: + what came back, - what was taken beyond the hold
    allocation: Allocation  # the movement's allocation
    expire: Allocation  # credits back to grants that have ended: they expire at once
    taken: Allocation  # a capture: what the usage took in all (a refund gives back to it)


def capture(wallet: Wallet, hold: Hold, charged: int, now: datetime) -> Resolution:
    """Charge `charged` credits (see `charge`) against the hold."""
    if charged <= hold.credits:
        back, expire = wallet.give_back(hold.allocation, 0, hold.credits - charged, now) if charged < hold.credits else ([], [])
        return Resolution(hold.credits - charged, back, expire, first_taken(hold.allocation, charged))
    extra = wallet.take(charged - hold.credits, now)
    return Resolution(hold.credits - charged, extra, [], list(hold.allocation) + extra)


def release(wallet: Wallet, hold: Hold, now: datetime) -> Resolution:
    """Everything the hold took goes back."""
    back, expire = wallet.give_back(hold.allocation, 0, hold.credits, now)
    return Resolution(hold.credits, back, expire, [])


def movements(kind: str, hold: Hold, res: Resolution, reference: str, reason: str) -> list[tuple]:
    """The journal rows of a capture or release (`<kind>/<hold id>`: a hold resolves once, and
    the key is the last word), and the expiry of credits that went back to an ended grant.
    Rows as decide.Plan.journal_rows: (key, user_id, kind, delta, refund_of, reference, reason,
    grants JSON)."""
    key = f"{kind}/{hold.hold_id}"
    rows = [(key, hold.user_id, kind, res.delta, None, reference, reason, encode(res.allocation))]
    if res.expire:
        rows.append((f"expire/{key}", hold.user_id, "grant_expiry", sum(d for _, d in res.expire), None,
                     hold.hold_id, "held credits of a grant that has ended", encode(res.expire)))  # fmt: skip
    return rows


def resolved(hold: Hold, status: str, by: str, res: Resolution, charged: int | None = None,
             usage_id: str | None = None) -> tuple:  # fmt: skip
    """The hold's row update (decide.Plan.hold_resolutions); the hold is marked resolved in memory."""
    hold.status = status
    return (hold.hold_id, status, charged, usage_id, encode(res.taken) if usage_id else None, by)
