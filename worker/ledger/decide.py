"""Pure decisions for a batch of usage-family events: no I/O, so every rule is unit-tested.

Input: the new (not yet decided) events of a batch, the locked balances of their users, the usages
they refund, the feature costs and the overdraft policy. Output: a `Plan` with the rows to write
and one outcome per event. Within a user, events are decided in `occurredAt` order (then
arrival order), so a batch gives the same answers as the same events one at a time.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from operator import attrgetter
from typing import Literal, NamedTuple

from ..codec import compact
from ..events import INT32_MAX, CreditsAdjusted, UsageRecorded, UsageRefunded
from .cost import CostError, feature_cost
from . import holds as hold_rules
from .grants import Allocation, Grant, Wallet, encode
from .holds import Hold

LedgerEvent = UsageRecorded | UsageRefunded | CreditsAdjusted
Policy = Literal["reject", "allow"]

APPLIED = "applied"
DUPLICATE = "duplicate"
REJECTED = "rejected"
RETRY = "retry"  # cannot apply now for a passing reason (a held lock): retried with backoff
WAITING = "waiting"  # cannot apply *yet*: stored in worker.waiting until released (worker/waiting.py)
WAITED = "waited"  # batch_usages marker of a usage that waits


class Account(NamedTuple):  # a NamedTuple, like Outcome: one per user of a batch
    """A locked "CreditBalance" row."""

    balance_id: str
    user_id: str
    clerk_user_id: str
    balance: int


@dataclass
class RefundTarget:
    """A usage as a refund sees it (from the database)."""

    id: str
    clerk_user_id: str | None
    credits_used: int | None  # None: no "UsageHistory" row
    operation_type: str | None
    refunded: int  # credits already given back
    decided: bool  # the worker already decided on this event id
    taken: Allocation = field(default_factory=list)  # what the usage took from which grant


class Outcome(NamedTuple):  # a NamedTuple: made once per event, 3x cheaper than a dataclass
    event_id: str
    status: str  # applied | duplicate | rejected | retry | waiting
    reason: str | None = None
    waits_for: str | None = None  # WAITING: what releases it ('user:…', 'usage:…', …)
    detail: str | None = None  # WAITING: a sentence for ops


@dataclass
class Plan:
    usage_rows: list[tuple] = field(default_factory=list)  # UsageHistory columns
    # (event_id, user_id, kind, delta, refund_of, reference, reason, grants JSON)
    journal_rows: list[tuple] = field(default_factory=list)
    openings: dict[str, int] = field(default_factory=dict)  # user_id -> balance before the batch
    balance_deltas: dict[str, int] = field(default_factory=dict)  # balance_id -> delta
    wallets: dict[str, Wallet] = field(default_factory=dict)  # clerk user id -> its grants
    absorbed: int = 0  # users whose balance the grants did not explain (grants.Wallet.absorb)
    # worker.credit_hold rows: new holds (hold_id, user_id, clerk_user_id, credits, operation_type,
    # details JSON, over_capture, request_hash, allocation JSON, expires_at, created_at), and
    # resolutions (ledger/holds.py resolved)
    hold_inserts: list[tuple] = field(default_factory=list)
    hold_resolutions: list[tuple] = field(default_factory=list)
    rejections: list[tuple] = field(default_factory=list)  # (event_id, type, reason, detail, payload)
    outcomes: dict[str, Outcome] = field(default_factory=dict)

    def grant_updates(self) -> list[tuple[str, int, int, int, int]]:
        return [row for w in self.wallets.values() for row in w.update_rows()]

    def grant_inserts(self) -> list[tuple]:
        return [row for w in self.wallets.values() for row in w.insert_rows()]


def usage_cost(event: UsageRecorded, feature_costs: Mapping[str, object], defaults: Mapping[str, int]) -> int | None:
    """Explicit credits, else the admin's featureCosts, else the code default; None: no cost
    anywhere (the usage waits, `no_cost`). Raises CostError for a featureCosts value that is not
    a cost (the usage waits, `bad_feature_cost`): ledger/cost.py."""
    if event.credits is not None:
        return event.credits
    return feature_cost(event.operationType, feature_costs, defaults)


def _naive_utc(value: datetime | None, now: datetime) -> datetime:
    moment = value or now
    return (moment if moment.tzinfo is UTC else moment.astimezone(UTC)).replace(tzinfo=None)


_occurred_at = attrgetter("occurredAt")


def _in_order(events: Sequence[LedgerEvent]) -> list[LedgerEvent]:
    """By occurredAt, then arrival (the sort is stable); events without a timestamp last."""
    timed = sorted((e for e in events if e.occurredAt is not None), key=_occurred_at)
    return timed + [e for e in events if e.occurredAt is None]


class _Decider:
    def __init__(
        self,
        accounts: Mapping[str, Account],
        targets: Mapping[str, RefundTarget],
        feature_costs: Mapping[str, object],
        default_costs: Mapping[str, int],
        policy: Policy,
        now: datetime,
        operation_types: frozenset[str] | None,
        grants: Mapping[str, Sequence[Grant]],
        holds: Mapping[str, Hold],
        due_holds: Mapping[str, Sequence[Hold]],
    ) -> None:
        self.accounts = accounts
        self.holds = dict(holds)  # hold id -> the holds named by the batch's usages, and the due ones
        self.due_holds = due_holds  # "User".id -> its holds past their expiry
        self.targets = targets
        self.feature_costs = feature_costs
        self.default_costs = default_costs
        self.policy = policy
        self.now = now
        self.operation_types = operation_types
        self.plan = Plan()
        self.balances = {clerk: a.balance for clerk, a in accounts.items()}
        self.grants = grants
        # usages decided in this batch: id -> (clerk user, credits used, op type), None if
        # rejected, WAITED if it waits (its refunds wait for it)
        self.batch_usages: dict[str, tuple[str, int, str] | None | str] = {}
        self.batch_refunded: dict[str, int] = defaultdict(int)
        self.batch_taken: dict[str, Allocation] = {}  # usage id -> what it took from which grant
        self.in_batch_usages: set[str] = set()  # ids of the batch's usages, decided or not
        self.waiting: dict[str, list[UsageRefunded]] = defaultdict(list)  # refunds of those not yet decided

    # A method, not a closure in decide(): a recursive closure is a reference cycle, which kept
    # every batch's plan (~5 objects per event) alive until the cyclic garbage collector ran —
    # most of the worker's garbage collection time (docs/performance.md, change 23).
    def run(self, event: LedgerEvent) -> None:
        # `type(...) is`, not isinstance: pydantic's metaclass is an ABCMeta, whose isinstance
        # check was 4 % of the worker's CPU on batch messages.
        if type(event) is UsageRecorded:
            self.usage(event)
            for refund in self.waiting.pop(event.id, []):
                self.run(refund)
        elif type(event) is UsageRefunded:
            if event.refundOf in self.in_batch_usages and event.refundOf not in self.batch_usages:
                self.waiting[event.refundOf].append(event)
            else:
                self.refund(event)
        else:
            self.adjustment(event)

    # --- outcomes ------------------------------------------------------------------------------

    def reject(self, event: LedgerEvent, reason: str, detail: str) -> None:
        payload = json.dumps(event.model_dump(mode="json"), separators=(",", ":"))
        self.plan.rejections.append((event.id, event.type, reason, detail, payload))
        self.plan.outcomes[event.id] = Outcome(event.id, REJECTED, reason)

    def wallet(self, clerk_user_id: str) -> Wallet:
        """The user's grants; opened with the user's holds past their expiry released (as the
        sweep would), so no decision counts credits a hold no longer has a right to."""
        wallet = self.plan.wallets.get(clerk_user_id)
        if wallet is None:
            account = self.accounts[clerk_user_id]
            wallet = Wallet.read(account.user_id, self.grants.get(account.user_id, ()))
            if wallet.absorb(account.balance, self.now):
                self.plan.absorbed += 1
            self.plan.wallets[clerk_user_id] = wallet
            for hold in self.due_holds.get(account.user_id, ()):
                self.expire_hold(clerk_user_id, self.holds.setdefault(hold.hold_id, hold))
        return wallet

    def expire_hold(self, clerk_user_id: str, hold: Hold) -> None:
        if hold.status != hold_rules.HELD:
            return
        res = hold_rules.release(self.wallet(clerk_user_id), hold, self.now)
        self.resolve_hold(clerk_user_id, hold, "release", res, hold.hold_id, "hold expired")
        self.plan.hold_resolutions.append(hold_rules.resolved(hold, hold_rules.EXPIRED, "expiry", res))

    def allowed(self, event: LedgerEvent, delta: int, usable: int | None = None) -> bool:
        """Whether a change by delta keeps to the overdraft policy and INTEGER; rejects if not.
        `usable`: the credits live grants hold now (a debit under `reject` must fit in them)."""
        balance = self.balances[event.clerkUserId]
        after = balance + delta
        if delta < 0 and self.policy == "reject" and (after < 0 or (usable is not None and usable + delta < 0)):
            self.reject(event, "insufficient_credits", f"balance {balance}, change {delta}")
            return False
        if not -INT32_MAX <= after <= INT32_MAX:
            self.reject(event, "balance_out_of_range", f"balance {balance}, change {delta}")
            return False
        return True

    def move(
        self, event: LedgerEvent, kind: str, delta: int, reference: str | None, reason: str | None,
        allocation: Allocation, refund_of: str | None = None,
    ) -> None:
        """Change the user's balance by delta (checked by `allowed`), taken from or given to the
        grants of `allocation`. The movement says what it refers to and why (`user show`)."""
        account = self.accounts[event.clerkUserId]
        self.plan.openings.setdefault(account.user_id, account.balance)
        self.balances[event.clerkUserId] += delta
        self.plan.balance_deltas[account.balance_id] = self.plan.balance_deltas.get(account.balance_id, 0) + delta
        self.plan.journal_rows.append(
            (event.id, account.user_id, kind, delta, refund_of, reference, reason, encode(allocation))
        )
        self.plan.outcomes[event.id] = Outcome(event.id, APPLIED)

    def resolve_hold(self, clerk_user_id: str, hold: Hold, kind: str, res: hold_rules.Resolution, reference: str,
                     reason: str) -> None:  # fmt: skip
        """A hold's capture or release movement (and the expiry of what went back to an ended
        grant), in this transaction."""
        account = self.accounts[clerk_user_id]
        self.plan.openings.setdefault(account.user_id, account.balance)
        for row in hold_rules.movements(kind, hold, res, reference, reason):
            self.plan.journal_rows.append(row)
            self.balances[clerk_user_id] += row[3]
            self.plan.balance_deltas[account.balance_id] = self.plan.balance_deltas.get(account.balance_id, 0) + row[3]

    def held(self, event: UsageRecorded) -> Hold | None:
        """The open hold this usage captures, if any. A hold past its expiry is released first
        (opening the wallet releases the user's due holds; this one, too, if it was not among
        them): the usage is then a plain usage, as is one whose hold was released, or is
        unknown, or is another user's."""
        hold = self.holds.get(event.holdId) if event.holdId is not None else None
        if hold is None or hold.clerk_user_id != event.clerkUserId:
            return None
        self.wallet(event.clerkUserId)
        at = self.now.timestamp()
        if hold.is_due(at):
            self.expire_hold(event.clerkUserId, hold)
        return hold if hold.is_open(at) or hold.status == hold_rules.CAPTURED else None

    def capture(self, event: UsageRecorded, hold: Hold, cost: int) -> tuple[Allocation, int] | None:
        """Charge the usage against its hold (ledger/holds.py): (what it took, credits charged),
        None if refused."""
        if hold.status == hold_rules.CAPTURED:
            self.reject(event, "hold_already_captured", f"hold {hold.hold_id} was captured already")
            return None
        charged = hold_rules.charge(hold.credits, cost, hold.over_capture)
        if charged is None:
            self.reject(event, "over_capture", f"usage {cost} > hold {hold.hold_id} of {hold.credits} (overCapture reject)")
            return None
        balance = self.balances[event.clerkUserId] + hold.credits - charged
        if not -INT32_MAX <= balance <= INT32_MAX:
            self.reject(event, "balance_out_of_range", f"balance {self.balances[event.clerkUserId]}, capture {charged}")
            return None
        res = hold_rules.capture(self.wallet(event.clerkUserId), hold, charged, self.now)
        self.resolve_hold(event.clerkUserId, hold, "capture", res, event.id, event.operationType)
        self.plan.hold_resolutions.append(hold_rules.resolved(hold, hold_rules.CAPTURED, event.id, res, charged, event.id))
        self.plan.outcomes[event.id] = Outcome(event.id, APPLIED)
        return res.taken, charged

    def debit(
        self, event: LedgerEvent, kind: str, credits: int, reference: str | None, reason: str | None
    ) -> Allocation | None:
        """Take credits from the user's grants in burn order (grants.py). None if rejected."""
        wallet = self.wallet(event.clerkUserId)
        if not self.allowed(event, -credits, wallet.usable(self.now) if self.policy == "reject" else None):
            return None
        taken = wallet.take(credits, self.now)
        self.move(event, kind, -credits, reference, reason, taken)
        return taken

    # --- event kinds ---------------------------------------------------------------------------

    def wait(self, event: LedgerEvent, reason: str, waits_for: str, detail: str) -> None:
        """The event cannot apply yet: stored in worker.waiting, released by `waits_for`."""
        self.plan.outcomes[event.id] = Outcome(event.id, WAITING, reason, waits_for, detail)

    def usage(self, event: UsageRecorded) -> None:
        op = event.operationType
        if self.operation_types is not None and op not in self.operation_types:
            self.batch_usages[event.id] = WAITED
            return self.wait(event, "unknown_operation_type", f"operation_type:{op}",
                             f'"OperationType" has no label {op}')  # fmt: skip
        try:
            cost = usage_cost(event, self.feature_costs, self.default_costs)
        except CostError as exc:
            self.batch_usages[event.id] = WAITED
            return self.wait(event, "bad_feature_cost", f"cost:{op}", str(exc))
        if cost is None:
            self.batch_usages[event.id] = WAITED
            return self.wait(event, "no_cost", f"cost:{op}",
                             f"no credits in the event and no cost configured for {op}")  # fmt: skip
        hold = self.held(event) if event.holdId is not None else None
        if hold is not None:
            captured = self.capture(event, hold, cost)
            taken, cost = captured if captured is not None else (None, cost)
        else:  # reference: its "UsageHistory" row
            taken = self.debit(event, "usage", cost, event.id, op)
        if taken is None:
            self.batch_usages[event.id] = None
            return
        self.batch_taken[event.id] = taken
        account = self.accounts[event.clerkUserId]
        details = compact(event.details).decode() if event.details is not None else None
        self.plan.usage_rows.append(
            (event.id, account.user_id, account.balance_id, op, cost, details,
             _naive_utc(event.occurredAt, self.now))
        )  # fmt: skip
        self.batch_usages[event.id] = (event.clerkUserId, cost, op)
        return None

    def refund(self, event: UsageRefunded) -> None:
        target_id = event.refundOf
        if target_id in self.batch_usages:
            found = self.batch_usages[target_id]
            if found is WAITED:
                return self.wait(event, "refund_before_usage", f"usage:{target_id}",
                                 f"usage {target_id} waits")  # fmt: skip
            if found is None:
                return self.reject(event, "refund_of_rejected_usage", f"usage {target_id} was rejected")
            owner, used, op = found
            refunded = self.batch_refunded[target_id]
            taken = self.batch_taken.get(target_id, [])
        else:
            target = self.targets[target_id]
            if target.credits_used is None:
                return self.reject(event, "refund_of_rejected_usage", f"usage {target_id} was not applied")
            owner, used, op = target.clerk_user_id, target.credits_used, target.operation_type
            refunded = target.refunded + self.batch_refunded[target_id]
            taken = target.taken
        if owner != event.clerkUserId:
            return self.reject(event, "refund_user_mismatch", f"usage {target_id} belongs to another user")
        if used < 0:
            return self.reject(event, "refund_of_refund", f"{target_id} is itself a refund")
        refundable = used - refunded
        amount = event.credits if event.credits is not None else refundable
        if amount > refundable or amount <= 0:
            return self.reject(
                event, "refund_exceeds_usage",
                f"refund {amount} of usage {target_id}: used {used}, already refunded {refunded}",
            )  # fmt: skip
        if not self.allowed(event, amount):
            return None
        wallet = self.wallet(event.clerkUserId)
        back, expire = wallet.give_back(taken, refunded, amount, self.now)
        self.move(event, "refund", amount, target_id, f"refund of {op}", back, target_id)
        account = self.accounts[event.clerkUserId]
        if expire:  # credits back to grants that have ended: they expire at once
            expired = sum(d for _, d in expire)
            self.plan.journal_rows.append((f"expire/{event.id}", account.user_id, "grant_expiry", expired,
                                           None, event.id, "refunded credits of an expired grant",
                                           encode(expire)))  # fmt: skip
            self.balances[event.clerkUserId] += expired
            self.plan.balance_deltas[account.balance_id] += expired
        details = json.dumps({"refundOf": target_id}, separators=(",", ":"))
        self.plan.usage_rows.append(
            (event.id, account.user_id, account.balance_id, op, -amount, details,
             _naive_utc(event.occurredAt, self.now))
        )  # fmt: skip
        self.batch_refunded[target_id] += amount
        return None

    def adjustment(self, event: CreditsAdjusted) -> None:
        if event.delta < 0:
            self.debit(event, "adjustment", -event.delta, None, event.reason)
            return
        if not self.allowed(event, event.delta):
            return
        wallet = self.wallet(event.clerkUserId)
        grant_id = wallet.adjustment_grant(event.id, event.delta, event.priority, event.expiresAt, self.now)
        self.move(event, "adjustment", event.delta, grant_id, event.reason, wallet.credit(grant_id, event.delta))


def decide(
    events: Sequence[LedgerEvent],
    *,
    accounts: Mapping[str, Account],
    targets: Mapping[str, RefundTarget],
    feature_costs: Mapping[str, object],
    default_costs: Mapping[str, int],
    policy: Policy,
    now: datetime | None = None,
    operation_types: frozenset[str] | None = None,
    grants: Mapping[str, Sequence[Grant]] | None = None,
    holds: Mapping[str, Hold] | None = None,
    due_holds: Mapping[str, Sequence[Hold]] | None = None,
) -> Plan:
    """Decide every event (none decided before, all with a known account). Refunds whose usage is in the
    same batch are decided right after that usage, whatever their own timestamps say."""
    decider = _Decider(
        accounts, targets, feature_costs, default_costs, policy, now or datetime.now(UTC), operation_types,
        grants or {}, holds or {}, due_holds or {},
    )
    decider.in_batch_usages = {e.id for e in events if type(e) is UsageRecorded}
    for event in _in_order(events):
        decider.run(event)
    return decider.plan
