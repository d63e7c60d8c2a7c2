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


class Outcome(NamedTuple):  # a NamedTuple: made once per event, 3x cheaper than a dataclass
    event_id: str
    status: str  # applied | duplicate | rejected | retry | waiting
    reason: str | None = None
    waits_for: str | None = None  # WAITING: what releases it ('user:…', 'usage:…', …)
    detail: str | None = None  # WAITING: a sentence for ops


@dataclass
class Plan:
    usage_rows: list[tuple] = field(default_factory=list)  # UsageHistory columns
    # (event_id, user_id, kind, delta, refund_of, reference, reason)
    journal_rows: list[tuple] = field(default_factory=list)
    openings: dict[str, int] = field(default_factory=dict)  # user_id -> balance before the batch
    balance_deltas: dict[str, int] = field(default_factory=dict)  # balance_id -> delta
    rejections: list[tuple] = field(default_factory=list)  # (event_id, type, reason, detail, payload)
    outcomes: dict[str, Outcome] = field(default_factory=dict)


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
    ) -> None:
        self.accounts = accounts
        self.targets = targets
        self.feature_costs = feature_costs
        self.default_costs = default_costs
        self.policy = policy
        self.now = now
        self.operation_types = operation_types
        self.plan = Plan()
        self.balances = {clerk: a.balance for clerk, a in accounts.items()}
        # usages decided in this batch: id -> (clerk user, credits used, op type), None if
        # rejected, WAITED if it waits (its refunds wait for it)
        self.batch_usages: dict[str, tuple[str, int, str] | None | str] = {}
        self.batch_refunded: dict[str, int] = defaultdict(int)
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

    def move(
        self, event: LedgerEvent, kind: str, delta: int, reference: str | None, reason: str | None,
        refund_of: str | None = None,
    ) -> bool:
        """Change the user's balance by delta, under the overdraft policy. False if rejected.
        The movement says what it refers to and why (`user show` prints them)."""
        account = self.accounts[event.clerkUserId]
        balance = self.balances[event.clerkUserId]
        after = balance + delta
        if delta < 0 and after < 0 and self.policy == "reject":
            self.reject(event, "insufficient_credits", f"balance {balance}, change {delta}")
            return False
        if not -INT32_MAX <= after <= INT32_MAX:
            self.reject(event, "balance_out_of_range", f"balance {balance}, change {delta}")
            return False
        self.plan.openings.setdefault(account.user_id, account.balance)
        self.balances[event.clerkUserId] = after
        self.plan.balance_deltas[account.balance_id] = self.plan.balance_deltas.get(account.balance_id, 0) + delta
        self.plan.journal_rows.append((event.id, account.user_id, kind, delta, refund_of, reference, reason))
        self.plan.outcomes[event.id] = Outcome(event.id, APPLIED)
        return True

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
        if not self.move(event, "usage", -cost, event.id, op):  # its "UsageHistory" row
            self.batch_usages[event.id] = None
            return
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
        else:
            target = self.targets[target_id]
            if target.credits_used is None:
                return self.reject(event, "refund_of_rejected_usage", f"usage {target_id} was not applied")
            owner, used, op = target.clerk_user_id, target.credits_used, target.operation_type
            refunded = target.refunded + self.batch_refunded[target_id]
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
        if not self.move(event, "refund", amount, target_id, f"refund of {op}", target_id):
            return None
        account = self.accounts[event.clerkUserId]
        details = json.dumps({"refundOf": target_id}, separators=(",", ":"))
        self.plan.usage_rows.append(
            (event.id, account.user_id, account.balance_id, op, -amount, details,
             _naive_utc(event.occurredAt, self.now))
        )  # fmt: skip
        self.batch_refunded[target_id] += amount
        return None

    def adjustment(self, event: CreditsAdjusted) -> None:
        self.move(event, "adjustment", event.delta, None, event.reason)


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
) -> Plan:
    """Decide every event (none decided before, all with a known account). Refunds whose usage is in the
    same batch are decided right after that usage, whatever their own timestamps say."""
    decider = _Decider(
        accounts, targets, feature_costs, default_costs, policy, now or datetime.now(UTC), operation_types
    )
    decider.in_batch_usages = {e.id for e in events if type(e) is UsageRecorded}
    for event in _in_order(events):
        decider.run(event)
    return decider.plan
