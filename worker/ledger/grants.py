"""Credit grants, pure: which grant a debit takes from, where a refund goes back to, and what a
movement writes to `worker.credit_grant`. No I/O, so every rule is unit-tested.

Every credit a user holds belongs to a grant (`worker.credit_grant`). A debit takes from the
live grants in **burn order**: lower priority first, then the earliest expiry (none last), then
the earliest effective, then the oldest. What no grant covers goes to the user's debt, the
`overdraft/<user id>` grant, whose remaining is never above zero. Credits a user receives pay
that debt first. So `"CreditBalance"."creditsRemaining"` is always the sum of the user's live
grants' remaining.

A movement records what it moved in or out of which grant as `[[grant id, delta], …]` in
`worker.journal.grants`, in the order it took them: a refund gives back to the grants its usage
took from, last taken first; credits going back to a grant that has ended (expired) expire at
once, in a `grant_expiry` movement.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

import msgspec

OVERDRAFT = "overdraft"
LEGACY = "legacy"
INT32_MAX = 2_147_483_647

# Default priorities (lower is used first): credits that expire soonest and were paid for per
# period go first; what never expires last.
PRIORITIES = {"plan": 5, "rollover": 5, "promo": 5, "starter": 10, "legacy": 10, "adjustment": 15,
              "pack": 20, OVERDRAFT: INT32_MAX}  # fmt: skip

Allocation = list[tuple[str, int]]  # (grant id, delta), in the order taken or given


@dataclass(slots=True)
class Grant:
    """A grant as the ledger sees it while deciding (a live row of worker.credit_grant). Times
    are epoch seconds: the batch path reads thousands of grants, and a float is far cheaper to
    decode and compare than a timestamp."""

    grant_id: str
    source: str
    remaining: int
    priority: int
    effective: float
    expires: float | None = None
    amount: int = 0  # what it gave (a percentage threshold of credits.low is of a plan grant's)

    @classmethod
    def at(cls, grant_id: str, source: str, remaining: int, priority: int, effective_at: datetime,
           expires_at: datetime | None = None, amount: int = 0) -> Grant:  # fmt: skip
        return cls(grant_id, source, remaining, priority, effective_at.timestamp(),
                   None if expires_at is None else expires_at.timestamp(), amount)  # fmt: skip

    def usable(self, now: float) -> bool:
        return (self.remaining > 0 and self.source != OVERDRAFT and self.effective <= now
                and (self.expires is None or self.expires > now))  # fmt: skip


def _key(g: Grant) -> tuple:
    return (g.priority, float("inf") if g.expires is None else g.expires, g.effective)


def burn_order(grants: Iterable[Grant]) -> list[Grant]:
    """Priority, earliest expiry (none last), earliest start; a stable sort, so grants equal in
    those keep the order they come in (oldest first: worker/repo/ledger.py reads them so)."""
    return sorted(grants, key=_key)


@dataclass(slots=True)
class NewGrant:
    """A grant row to insert (worker.credit_grant)."""

    grant_id: str
    user_id: str
    source: str
    amount: int
    remaining: int
    priority: int
    effective_at: datetime
    expires_at: datetime | None = None
    reference: str | None = None
    state: str = "live"
    opening: int = 0
    rollover: int = 0
    period_months: int | None = None

    def row(self) -> tuple:
        return (self.grant_id, self.user_id, self.source, self.amount, self.remaining, self.opening,
                self.priority, self.effective_at, self.expires_at, self.reference, self.state,
                self.rollover, self.period_months)  # fmt: skip


@dataclass
class Wallet:
    """One user's live grants while a transaction decides on them.

    `changes` collects what to write: per existing grant, the change of remaining, expired,
    opening and amount; `created` the grants this transaction inserts (with their final values).
    """

    user_id: str
    grants: dict[str, Grant]  # in burn order when read (worker/repo/ledger.py find_live_grants)
    changes: dict[str, list[int]] = field(default_factory=dict)  # id -> [remaining, expired, opening, amount]
    created: dict[str, NewGrant] = field(default_factory=dict)
    ended: dict[str, Grant] = field(default_factory=dict)  # grants this transaction took out of the live set
    _order: list[Grant] | None = None

    @classmethod
    def read(cls, user_id: str, grants: Iterable[Grant]) -> Wallet:
        """A user's live grants, as read: already in burn order."""
        wallet = cls(user_id, {g.grant_id: g for g in grants})
        wallet._order = list(wallet.grants.values())
        return wallet

    @property
    def overdraft_id(self) -> str:
        return f"{OVERDRAFT}/{self.user_id}"

    @property
    def standing_id(self) -> str:
        """The user's standing adjustment grant: plain adjustments, and credits with no other
        grant to go to."""
        return f"adjustment/{self.user_id}"

    @property
    def total(self) -> int:
        return sum(g.remaining for g in self.grants.values())

    @property
    def debt(self) -> int:
        grant = self.grants.get(self.overdraft_id)
        return -grant.remaining if grant is not None else 0

    # --- writing ---------------------------------------------------------------------------------

    def _change(self, grant_id: str, remaining: int = 0, expired: int = 0, opening: int = 0,
                amount: int = 0) -> None:  # fmt: skip
        new = self.created.get(grant_id)
        if new is not None:
            new.remaining += remaining
            new.opening += opening
            new.amount += amount
            return
        change = self.changes.get(grant_id)
        if change is None:
            self.changes[grant_id] = [remaining, expired, opening, amount]
        else:
            change[0] += remaining
            change[1] += expired
            change[2] += opening
            change[3] += amount

    def _move(self, grant_id: str, delta: int) -> None:
        grant = self.grants.get(grant_id)
        if grant is not None:
            grant.remaining += delta
        self._change(grant_id, remaining=delta)

    def add(self, new: NewGrant) -> None:
        """A grant created in this transaction (live: it takes part in the burn-down at once)."""
        self.created[new.grant_id] = new
        if new.state == "live":
            self.grants[new.grant_id] = Grant.at(new.grant_id, new.source, new.remaining, new.priority,
                                                 new.effective_at, new.expires_at, new.amount)  # fmt: skip
            self._order = None

    def end(self, grant_id: str) -> Grant:
        """The grant leaves the live set (it expired)."""
        self._order = None
        grant = self.ended[grant_id] = self.grants.pop(grant_id)
        return grant

    def expire(self, grant_id: str, carry: NewGrant | None = None) -> tuple[int, Allocation]:
        """The grant ends at its expiry: its remaining credits expire, but for what `carry` (a
        rollover grant, made with nothing in it) takes into the next period. Returns the
        balance change and the movement's allocation."""
        grant = self.end(grant_id)
        left = grant.remaining
        carried = min(carry.amount, left) if carry is not None else 0
        allocation: Allocation = [(grant_id, -left)] if left else []
        self._change(grant_id, remaining=-left, expired=left - carried)
        if carry is not None and carried:
            carry.amount = carried
            self.add(carry)
            allocation += self.give(carry.grant_id, carried)
        return carried - left, allocation

    def start(self, grant: Grant) -> None:
        """A pending grant joins the live set (its credits come with its `grant_start`)."""
        self.grants[grant.grant_id] = grant
        self._order = None

    def _ensure(self, grant_id: str, source: str, now: datetime, reference: str) -> None:
        if grant_id not in self.grants:
            self.add(NewGrant(grant_id, self.user_id, source, 0, 0, PRIORITIES[source], now,
                              reference=reference))  # fmt: skip

    # --- absorbing a balance the grants do not explain -------------------------------------------

    def absorb(self, balance: int, now: datetime) -> int:
        """Make the grants explain `balance` (a balance from before grants, or one the app wrote
        itself): the difference goes into the legacy grant (more) or the debt (less), as opening
        credits no movement gave. Returns the difference (0 almost always)."""
        difference = balance - self.total
        if difference > 0:
            grant_id = f"{LEGACY}/{self.user_id}"
            self._ensure(grant_id, LEGACY, now, "balance before grants")
            self.grants[grant_id].remaining += difference
            self._change(grant_id, remaining=difference, opening=difference, amount=difference)
        elif difference < 0:
            self._ensure(self.overdraft_id, OVERDRAFT, now, "balance before grants")
            self.grants[self.overdraft_id].remaining += difference
            self._change(self.overdraft_id, remaining=difference, opening=difference)
        return difference

    # --- debits and credits ----------------------------------------------------------------------

    def take(self, amount: int, now: datetime, prefer: Iterable[str] = ()) -> Allocation:
        """Take `amount` (> 0): from the `prefer` grants first (a reversal takes from its own
        grants), then the live grants in burn order, the rest from the debt."""
        taken: Allocation = []
        left = amount
        at = now.timestamp()
        preferred = [self.grants[g] for g in prefer if g in self.grants]
        if self._order is None:
            self._order = burn_order(self.grants.values())
        for grant in preferred + self._order if preferred else self._order:
            if left == 0:
                break
            if not grant.usable(at):
                continue
            part = min(grant.remaining, left)
            self._move(grant.grant_id, -part)
            taken.append((grant.grant_id, -part))
            left -= part
        if left:
            self._ensure(self.overdraft_id, OVERDRAFT, now, "credits used beyond every grant")
            self._move(self.overdraft_id, -left)
            taken.append((self.overdraft_id, -left))
        return taken

    def usable(self, now: datetime) -> int:
        """Credits a debit can take now without going into debt."""
        at = now.timestamp()
        return sum(g.remaining for g in self.grants.values() if g.usable(at))

    def pay_debt(self, amount: int) -> Allocation:
        """Credits the user receives pay the debt first: what part of `amount` did."""
        part = min(self.debt, amount)
        if part <= 0:
            return []
        self._move(self.overdraft_id, part)
        return [(self.overdraft_id, part)]

    def give(self, grant_id: str, amount: int) -> Allocation:
        """Credit `amount` to a live grant (created in this transaction or loaded)."""
        self._move(grant_id, amount)
        return [(grant_id, amount)]

    def top_up(self, grant: NewGrant) -> str:
        """More credits for a standing grant (the user's plain adjustments go into one, so grants
        do not pile up): added to it if it is live, else made. Returns its id; the credits come
        with `credit`."""
        if grant.grant_id in self.grants:
            self._change(grant.grant_id, amount=grant.amount)
        else:
            self.add(grant)
        return grant.grant_id

    def credit(self, grant_id: str, amount: int) -> Allocation:
        """Credits into a grant, paying the debt first."""
        paid = self.pay_debt(amount)
        rest = amount - sum(d for _, d in paid)
        return paid + (self.give(grant_id, rest) if rest else [])

    def give_back(self, taken: Allocation, refunded: int, amount: int, now: datetime) -> tuple[Allocation, Allocation]:
        """A refund of `amount` credits of a usage that took `taken`, of which `refunded` were
        already given back: back to those grants, last taken first (so what earlier refunds gave
        back is the last `refunded` credits taken). Returns (the refund's allocation, what must
        expire at once: credits back to a grant that has ended).

        The debt's share pays the debt, up to what is owed now; beyond that (a later grant paid
        it) the credits go to the standing adjustment grant."""
        back: Allocation = []
        expire: Allocation = []
        left, skip = amount, refunded
        for grant_id, took in reversed(taken):
            if left == 0:
                break
            share = -took
            already = min(share, skip)
            skip -= already
            part = min(share - already, left)
            if part <= 0:
                continue
            left -= part
            if grant_id == self.overdraft_id:
                paid = self.pay_debt(part)
                back += paid
                part -= sum(d for _, d in paid)
                if part:
                    self._ensure(self.standing_id, "adjustment", now, "refund of credits whose debt was paid")
                    back += self.give(self.standing_id, part)
            elif grant_id in self.grants:
                back += self.give(grant_id, part)
            else:
                gave, expired = self.give_ended(grant_id, part)
                back += gave
                expire += expired
        if left:  # more than the allocation recorded: a usage from before grants
            back += self.credit(self.home(now), left)
        return back, expire

    def give_ended(self, grant_id: str, amount: int) -> tuple[Allocation, Allocation]:
        """Credits back to a grant that has ended: they come back to it and expire at once.
        Returns (the allocation giving them, the allocation expiring them)."""
        self._change(grant_id, expired=amount)
        return [(grant_id, amount)], [(grant_id, -amount)]

    def home(self, now: datetime) -> str:
        """Where credits with no grant of their own go: the legacy grant if the user has one (a
        movement from before grants), else the standing adjustment grant."""
        legacy = f"{LEGACY}/{self.user_id}"
        if legacy in self.grants:
            return legacy
        self._ensure(self.standing_id, "adjustment", now, "credits with no grant to go back to")
        return self.standing_id

    def adjustment_grant(self, event_id: str, credits: int, priority: int | None, expires_at: datetime | None,
                         now: datetime) -> str:  # fmt: skip
        """Where a positive adjustment's credits go: its own grant if they expire; else the
        user's standing adjustment grant for its priority (`adjustment/<user id>`, or
        `…/<priority>` for another than the default)."""
        if expires_at is not None:
            grant_id = f"adjustment/{event_id}"
        elif priority is None or priority == PRIORITIES["adjustment"]:
            grant_id = self.standing_id
        else:
            grant_id = f"{self.standing_id}/{priority}"
        return self.top_up(NewGrant(grant_id, self.user_id, "adjustment", credits, 0,
                                    PRIORITIES["adjustment"] if priority is None else priority, now,
                                    expires_at, event_id))  # fmt: skip

    # --- what to write ---------------------------------------------------------------------------

    def update_rows(self) -> list[tuple[str, int, int, int, int]]:
        """(grant id, remaining, expired, opening and amount deltas) of existing grants."""
        return [(g, *c) for g, c in self.changes.items() if any(c)]

    def insert_rows(self) -> list[tuple]:
        return [new.row() for new in self.created.values()]


_encoder = msgspec.json.Encoder()


def encode(allocation: Allocation) -> str:
    """`worker.journal.grants`: a JSON array of [grant id, delta] pairs."""
    return _encoder.encode(allocation).decode()


def decode(value: object) -> Allocation:
    if value is None:
        return []
    pairs = json.loads(value) if isinstance(value, str) else value
    return [(str(g), int(d)) for g, d in pairs]  # type: ignore[union-attr]
