"""The chaos run's workload: every event family, with what the database must hold afterwards.

Events are generated with their expected effects, so the end state can be checked without
trusting the worker: balances (starting credits or starter credits, usage, refunds,
adjustments, plan grants and reversals), row counts per table, and which users end inactive.
Some events are invalid, some are sent twice, and windows of events are shuffled so that
refunds precede their usage, usage precedes its user's `user.created`, and deletes precede
their object's create.

Holds (`make_holds`) are planned here too, with what each must end as; the chaos driver places
them over the credit API while the events flow and captures, releases or leaves them
(bench/chaos.py), and bench/verify.py checks the end state against this plan.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

STARTING_CREDITS = 1_000_000  # seeded users
STARTER_CREDITS = 100  # users created by user.created (the worker's default)
PLAN_ID, PLAN_CREDITS = "plan_chaos", 250
T0 = datetime(2026, 11, 1, tzinfo=UTC)


@dataclass
class Expected:
    balances: dict[str, int] = field(default_factory=dict)  # clerk id -> final balance
    usage_rows: int = 0  # "UsageHistory": usages + refunds
    movements: int = 0  # worker.journal rows
    users: int = 0  # "User" rows
    inactive_users: int = 0
    subscription_events: int = 0  # "SubscriptionEvent" rows
    storage_objects: int = 0
    deleted_objects: int = 0


@dataclass
class Workload:
    chunks: list[list[dict[str, Any]]]  # what is published, in order (some events twice)
    expected: Expected
    decided_keys: set[str]  # worker.event_log keys every valid event must end with
    invalid_ids: set[str]  # must end in worker.rejection
    events: int
    duplicates_sent: int
    seeded_users: list[str]
    stable_users: list[str]  # seeded users no event deletes: the holds' users


class _Generator:
    def __init__(self, seed: int, users: int) -> None:
        self.rng = random.Random(seed)
        self.seed = seed
        self.seeded = [f"user_chaos_{n}" for n in range(users)]
        self.active = list(self.seeded)  # users that exist (or will) and are not deleted
        self.exp = Expected(balances=dict.fromkeys(self.seeded, STARTING_CREDITS), users=users)
        self.usages: list[dict[str, Any]] = []
        self.objects: dict[str, str] = {}  # live object id -> owner
        self.keys: set[str] = set()
        self.invalid: set[str] = set()
        self.n = 0

    def _id(self, prefix: str) -> str:
        self.n += 1
        return f"{prefix}-{self.seed}-{self.n}"

    def _at(self) -> str:
        return (T0 + timedelta(milliseconds=self.n)).isoformat()

    def user(self) -> str:
        return self.rng.choice(self.active)

    # --- one generator per kind ---------------------------------------------------------------

    def usage(self) -> dict[str, Any]:
        clerk, credits = self.user(), self.rng.randint(0, 20)
        event = {"type": "usage.recorded", "id": self._id("use"), "clerkUserId": clerk,
                 "operationType": self.rng.choice(["AI_TEXT_CHAT", "AI_IMAGE_GENERATION"]),
                 "credits": credits, "details": {"n": self.n}, "occurredAt": self._at()}  # fmt: skip
        self.usages.append(event)
        self.exp.balances[clerk] -= credits
        self.exp.usage_rows += 1
        self.exp.movements += 1
        return event

    def refund(self) -> dict[str, Any] | None:
        target = self.usages.pop(self.rng.randrange(len(self.usages)))  # refunded at most once
        if target["credits"] == 0:
            return None
        amount = self.rng.randint(1, target["credits"])
        self.exp.balances[target["clerkUserId"]] += amount
        self.exp.usage_rows += 1
        self.exp.movements += 1
        return {"type": "usage.refunded", "id": self._id("ref"), "clerkUserId": target["clerkUserId"],
                "refundOf": target["id"], "credits": amount}  # fmt: skip

    def adjustment(self) -> dict[str, Any]:
        clerk, delta = self.user(), self.rng.choice([-1, 1]) * self.rng.randint(1, 50)
        self.exp.balances[clerk] += delta
        self.exp.movements += 1
        return {"type": "credits.adjusted", "id": self._id("adj"), "clerkUserId": clerk, "delta": delta,
                "reason": "chaos"}  # fmt: skip

    def new_user(self) -> dict[str, Any]:
        clerk = f"user_chaos_new_{self.seed}_{self.n}"
        self.active.append(clerk)
        self.exp.balances[clerk] = STARTER_CREDITS
        self.exp.movements += 1  # the starter movement (starter/<clerk id>)
        self.exp.users += 1
        return {"type": "user.created", "id": self._id("clerk"), "clerkUserId": clerk,
                "email": f"new{self.n}@chaos.test", "name": "New", "updatedAt": self._at()}  # fmt: skip

    def delete_user(self) -> dict[str, Any]:
        clerk = self.active.pop(self.rng.randrange(len(self.active)))
        self.exp.inactive_users += 1
        return {"type": "user.deleted", "id": self._id("clerkdel"), "clerkUserId": clerk, "deletedAt": self._at()}

    def payment(self) -> list[dict[str, Any]]:
        """PAYMENT_CONFIRMED and PAYMENT_RECEIVED of one subscription payment (credits once),
        sometimes refunded later."""
        clerk, pay = self.user(), self._id("pay")
        events = []
        for kind in ("PAYMENT_CONFIRMED", "PAYMENT_RECEIVED"):
            events.append(self._billing(kind, clerk, pay, "CONFIRMED" if kind == "PAYMENT_CONFIRMED" else "RECEIVED"))
        self.exp.balances[clerk] += PLAN_CREDITS
        self.exp.movements += 1
        if self.rng.random() < 0.3:
            events.append(self._billing("PAYMENT_REFUNDED", clerk, pay, "REFUNDED", later=True))
            self.exp.balances[clerk] -= PLAN_CREDITS
            self.exp.movements += 1
        return events

    def _billing(self, kind: str, clerk: str, pay: str, status: str, later: bool = False) -> dict[str, Any]:
        self.exp.subscription_events += 1
        at = T0 + timedelta(milliseconds=self.n, seconds=60 if later else 0)
        return {"type": "billing.event", "id": f"evt_{self._id('asaas')}&{pay}", "clerkUserId": clerk,
                "eventType": kind, "status": status, "occurredAt": at.isoformat(), "paymentId": pay,
                "subscriptionId": f"sub_{clerk}", "planId": PLAN_ID, "metadata": {"event": kind}}  # fmt: skip

    def object_created(self) -> dict[str, Any]:
        object_id, clerk = self._id("obj"), self.rng.choice(self.seeded)
        self.objects[object_id] = clerk
        self.exp.storage_objects += 1
        return {"type": "storage.object_created", "id": object_id, "clerkUserId": clerk,
                "url": f"https://blob.chaos.test/{object_id}", "pathname": f"u/{object_id}.png",
                "name": f"{object_id}.png", "contentType": "image/png", "size": self.rng.randint(0, 10**6),
                "createdAt": self._at()}  # fmt: skip

    def object_deleted(self) -> dict[str, Any]:
        object_id = self.rng.choice(list(self.objects))
        clerk = self.objects.pop(object_id)
        self.exp.deleted_objects += 1
        return {"type": "storage.object_deleted", "id": object_id, "clerkUserId": clerk, "deletedAt": self._at()}

    def invalid_event(self) -> dict[str, Any]:
        event_id = self._id("bad")
        self.invalid.add(event_id)
        return {"type": "usage.recorded", "id": event_id, "clerkUserId": self.user(),
                "operationType": "AI_TEXT_CHAT", "credits": "not-a-number", "occurredAt": self._at()}  # fmt: skip


def _key(event: dict[str, Any]) -> str:
    """The worker.event_log key of a valid event (a storage delete: per object and user)."""
    if event["type"] == "storage.object_deleted":
        return f"{event['type']}/{event['id']}/{event['clerkUserId']}"
    return event["id"]


def make_workload(*, events: int, users: int, chunk: int, seed: int) -> Workload:
    g = _Generator(seed, users)
    stream: list[dict[str, Any]] = []
    while len(stream) < events:
        roll = g.rng.random()
        if roll < 0.55 or not g.usages:
            made: list[dict[str, Any]] = [g.usage()]
        elif roll < 0.65:
            refund = g.refund()
            made = [refund] if refund else []
        elif roll < 0.75:
            made = [g.adjustment()]
        elif roll < 0.79:
            made = [g.new_user()]
        elif roll < 0.80 and len(g.active) > users // 2:
            made = [g.delete_user()]
        elif roll < 0.86:
            made = g.payment()
        elif roll < 0.93:
            made = [g.object_created()]
        elif roll < 0.97 and g.objects:
            made = [g.object_deleted()]
        elif roll >= 0.98:
            made = [g.invalid_event()]
        else:
            made = []
        stream.extend(made)

    valid = [e for e in stream if e["id"] not in g.invalid]
    for start in range(0, len(stream), 64):  # out of order inside windows
        window = stream[start : start + 64]
        g.rng.shuffle(window)
        stream[start : start + 64] = window
    duplicates = [e for e in stream if g.rng.random() < 0.08]  # sent twice, later
    unique = len(stream)
    stream = stream + duplicates
    for i in range(unique, len(stream)):
        j = g.rng.randrange(unique // 2, i + 1)
        stream[i], stream[j] = stream[j], stream[i]
    chunks = [stream[s : s + chunk] for s in range(0, len(stream), chunk)]
    live = set(g.active)
    stable = [u for u in g.seeded if u in live]
    return Workload(chunks, g.exp, {_key(e) for e in valid}, g.invalid, unique, len(duplicates), g.seeded, stable)


# --- holds ----------------------------------------------------------------------------------------

# What the driver does with a hold, and what it must end as:
#   queue      captured by a `usage.recorded` naming it (published after the 201), charged `used`
#   twin       two usages (distinct ids, same credits) name it: one captures, the other is
#              rejected `hold_already_captured`
#   contested  a usage naming it and the HTTP capture, at once, same credits: one captures (the
#              other is rejected, or answers the first capture as a replay)
#   http       captured over HTTP; then a usage naming it is rejected `hold_already_captured`
#   release    released over HTTP; then a usage naming it is a plain usage
#   open       left alone, a long ttl: still held at the end (its credits out of the balance)
#   race       ttl 1 s, captured by a usage: captured, or expired first and the usage is plain
#   expire     placed while no worker runs, expiring before they are back: released by the sweep
#              (some then named by a usage, a plain one, or captured over HTTP: 409)
HOLD_KINDS = {"queue": 0.33, "twin": 0.08, "contested": 0.10, "http": 0.17, "release": 0.12, "open": 0.06, "race": 0.14}
HOLD_TTL_S = {"queue": 900, "twin": 900, "contested": 900, "http": 900, "release": 900, "open": 3600,
              "race": 1, "expire": 2}  # fmt: skip
HOLD_OPERATION = "AI_TEXT_CHAT"


@dataclass
class HoldCase:
    hold_id: str
    clerk: str
    kind: str
    credits: int  # held
    used: int  # what the capture charges (capturing kinds)
    ttl: int
    captures: list[dict[str, Any]] = field(default_factory=list)  # usages naming it, to capture it
    after: list[dict[str, Any]] = field(default_factory=list)  # usages naming it once it resolved
    late_http: str | None = None  # an expire hold: "capture" (answers 409 hold_expired) or "release"
    http_credits: bool = True  # an HTTP capture sends {"credits": used} (else none: the whole hold)
    twice: bool = False  # its capture usage is published twice (the same event)
    in_blackout: bool = False  # placed while no worker runs
    # filled in by the driver
    placed: bool = False
    expires_at: float | None = None  # epoch seconds, as the API answered
    notes: list[str] = field(default_factory=list)  # unexpected answers to its requests

    def request(self) -> dict[str, Any]:
        return {"id": self.hold_id, "clerkUserId": self.clerk, "credits": self.credits,
                "operationType": HOLD_OPERATION, "ttlSeconds": self.ttl, "details": {"chaos": self.kind}}  # fmt: skip


@dataclass
class HoldPlan:
    cases: list[HoldCase]  # placed over the publish window, in order
    blackout: list[HoldCase]  # placed while no worker runs (expire holds, and queue holds)
    quiet_users: list[str]  # only the expire holds use them (nothing else of the driver's touches them)

    @property
    def all(self) -> list[HoldCase]:
        return self.cases + self.blackout


def make_holds(*, holds: int, users: list[str], seed: int) -> HoldPlan:
    """`holds` holds over the publish window and a tenth as many (at least 8) expire holds (and
    a few queue holds) placed while no worker runs, on `users` (which no event deletes)."""
    rng = random.Random(seed * 31 + 5)
    quiet = users[: max(2, len(users) // 10)]
    busy = users[len(quiet) :] or users
    n = 0

    def usage(clerk: str, hold_id: str, credits: int) -> dict[str, Any]:
        nonlocal n
        n += 1
        return {"type": "usage.recorded", "id": f"use-hold-{seed}-{n}", "clerkUserId": clerk,
                "operationType": rng.choice(["AI_TEXT_CHAT", "AI_IMAGE_GENERATION"]), "credits": credits,
                "holdId": hold_id, "details": {"hold": hold_id},
                "occurredAt": (T0 + timedelta(days=1, milliseconds=n)).isoformat()}  # fmt: skip

    def case(kind: str, clerk: str) -> HoldCase:
        nonlocal n
        n += 1
        credits = rng.randint(1, 50)
        c = HoldCase(f"hold-{seed}-{n}", clerk, kind, credits, rng.randint(0, credits + 10), HOLD_TTL_S[kind])
        if kind in ("queue", "race", "contested"):
            c.captures = [usage(clerk, c.hold_id, c.used)]
            c.twice = kind == "queue" and rng.random() < 0.25
        elif kind == "twin":
            c.captures = [usage(clerk, c.hold_id, c.used) for _ in range(2)]
        elif kind in ("http", "release"):
            c.after = [usage(clerk, c.hold_id, rng.randint(1, 20))]
            c.http_credits = kind != "http" or rng.random() < 0.75
            if not c.http_credits:
                c.used = credits
        if kind in ("release", "open", "expire"):
            c.used = 0
        return c

    kinds, weights = list(HOLD_KINDS), list(HOLD_KINDS.values())
    cases = [case(rng.choices(kinds, weights)[0], rng.choice(busy)) for _ in range(holds)]
    blackout = []
    for i in range(max(8, holds // 10)):
        c = case("expire", quiet[i % len(quiet)])
        c.in_blackout = True
        # the first quiet user's expire holds are named again once the workers are back (a usage,
        # or an HTTP capture / release); the others' are left to the sweep alone
        if c.clerk == quiet[0]:
            step = i // len(quiet) % 3
            if step == 0:
                c.after = [usage(c.clerk, c.hold_id, rng.randint(1, 20))]
            else:
                c.late_http = "capture" if step == 1 else "release"
        blackout.append(c)
    for _ in range(max(3, holds // 30)):  # captured once the workers are back: a kill between hold and capture
        c = case("queue", rng.choice(busy))
        c.in_blackout = True
        blackout.append(c)
    return HoldPlan(cases, blackout, quiet)
