"""The ledger's rules, decided without a database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from worker.events import usage_event_adapter
from worker.ledger.decide import APPLIED, REJECTED, WAITING, Account, RefundTarget, decide

T0 = datetime(2026, 11, 1, tzinfo=UTC)
DEFAULTS = {"AI_TEXT_CHAT": 5, "AI_IMAGE_GENERATION": 10}


def ev(**fields):
    return usage_event_adapter.validate_python(fields)


def use(id, credits=None, op="AI_TEXT_CHAT", user="u1", at=0):
    fields = {"type": "usage.recorded", "id": id, "clerkUserId": user, "operationType": op,
              "occurredAt": (T0 + timedelta(seconds=at)).isoformat()}  # fmt: skip
    if credits is not None:
        fields["credits"] = credits
    return ev(**fields)


def refund(id, of, credits=None, user="u1"):
    fields = {"type": "usage.refunded", "id": id, "clerkUserId": user, "refundOf": of}
    if credits is not None:
        fields["credits"] = credits
    return ev(**fields)


def run(events, balance=100, policy="reject", costs=None, targets=None, users=("u1",), operation_types=None):
    accounts = {u: Account(f"cb-{u}", f"id-{u}", u, balance) for u in users}
    return decide(events, accounts=accounts, targets=targets or {}, feature_costs=costs or {},
                  default_costs=DEFAULTS, policy=policy, operation_types=operation_types)  # fmt: skip


def statuses(plan):
    return {k: (o.status, o.reason) for k, o in plan.outcomes.items()}


def test_cost_comes_from_event_then_admin_settings_then_code_defaults():
    plan = run([use("a", credits=3), use("b", op="AI_IMAGE_GENERATION"), use("c")],
               costs={"AI_TEXT_CHAT": 7})  # fmt: skip
    assert [r[4] for r in plan.usage_rows] == [3, 10, 7]
    assert plan.balance_deltas == {"cb-u1": -20}


def test_a_cost_configured_as_a_numeric_string_or_an_integral_float_is_charged():
    plan = run([use("a"), use("b", op="AI_IMAGE_GENERATION")],
               costs={"AI_TEXT_CHAT": "25", "AI_IMAGE_GENERATION": 2.0})  # fmt: skip
    assert [r[4] for r in plan.usage_rows] == [25, 2]


def test_a_malformed_admin_cost_makes_the_usage_wait_naming_the_key_never_a_silent_default():
    for bad in ("lots", 2.5, -1, True, None, {"n": 1}):
        plan = run([use("a")], costs={"AI_TEXT_CHAT": bad})
        outcome = plan.outcomes["a"]
        assert (outcome.status, outcome.reason, outcome.waits_for) == (WAITING, "bad_feature_cost", "cost:AI_TEXT_CHAT")
        assert 'featureCosts["AI_TEXT_CHAT"]' in outcome.detail
        assert plan.usage_rows == [] and plan.journal_rows == [] and plan.balance_deltas == {}


def test_a_usage_without_credits_or_any_configured_cost_waits_instead_of_costing_zero():
    plan = run([use("a", op="VIDEO_GENERATION")], operation_types=frozenset({"AI_TEXT_CHAT", "VIDEO_GENERATION"}))
    assert (plan.outcomes["a"].status, plan.outcomes["a"].reason) == (WAITING, "no_cost")
    assert plan.outcomes["a"].waits_for == "cost:VIDEO_GENERATION"


def test_a_label_the_database_lacks_waits_and_so_do_its_refunds_in_the_batch():
    plan = run([use("a", op="VIDEO_GENERATION", credits=3), refund("r", of="a")],
               operation_types=frozenset({"AI_TEXT_CHAT"}))  # fmt: skip
    assert statuses(plan) == {"a": (WAITING, "unknown_operation_type"), "r": (WAITING, "refund_before_usage")}
    assert plan.outcomes["a"].waits_for == "operation_type:VIDEO_GENERATION"
    assert plan.outcomes["r"].waits_for == "usage:a"
    assert plan.balance_deltas == {}


def test_reject_policy_never_lets_the_balance_go_below_zero():
    plan = run([use("a", credits=60, at=1), use("b", credits=60, at=2), use("c", credits=40, at=3)])
    assert statuses(plan) == {"a": (APPLIED, None), "b": (REJECTED, "insufficient_credits"),
                              "c": (APPLIED, None)}  # fmt: skip
    assert plan.balance_deltas == {"cb-u1": -100}


def test_allow_policy_lets_the_balance_go_negative():
    plan = run([use("a", credits=60), use("b", credits=60)], policy="allow")
    assert plan.balance_deltas == {"cb-u1": -120}


def test_events_are_decided_in_occurred_at_order_not_arrival_order():
    late, early = use("late", credits=80, at=10), use("early", credits=30, at=1)
    plan = run([late, early])
    assert statuses(plan)["early"] == (APPLIED, None)
    assert statuses(plan)["late"] == (REJECTED, "insufficient_credits")


def test_same_instant_keeps_arrival_order_and_events_without_a_time_come_last():
    grant = ev(type="credits.adjusted", id="grant", clerkUserId="u1", delta=-90, reason="correction")
    plan = run([grant, use("second", credits=30, at=5), use("first", credits=30, at=1),
                use("also", credits=30, at=5)])  # fmt: skip
    assert statuses(plan) == {"first": (APPLIED, None), "second": (APPLIED, None),
                              "also": (APPLIED, None), "grant": (REJECTED, "insufficient_credits")}  # fmt: skip
    assert [r[0] for r in plan.journal_rows] == ["first", "second", "also"]  # ties: arrival order


def test_refund_in_the_same_batch_follows_its_usage():
    plan = run([refund("r", of="a"), use("a", credits=8)])
    assert statuses(plan) == {"a": (APPLIED, None), "r": (APPLIED, None)}
    assert plan.balance_deltas == {"cb-u1": 0}
    assert [(r[0], r[4]) for r in plan.usage_rows] == [("a", 8), ("r", -8)]


def test_partial_refunds_never_exceed_the_usage():
    target = RefundTarget("a", "u1", 10, "AI_TEXT_CHAT", refunded=4, decided=True)
    plan = run([refund("r1", of="a", credits=5), refund("r2", of="a", credits=2)], targets={"a": target})
    assert statuses(plan) == {"r1": (APPLIED, None), "r2": (REJECTED, "refund_exceeds_usage")}


def test_refund_of_another_users_usage_is_rejected():
    target = RefundTarget("a", "u2", 10, "AI_TEXT_CHAT", refunded=0, decided=True)
    plan = run([refund("r", of="a")], targets={"a": target})
    assert statuses(plan) == {"r": (REJECTED, "refund_user_mismatch")}


def test_refund_of_a_rejected_usage_is_rejected():
    plan = run([use("a", credits=500), refund("r", of="a")])
    assert statuses(plan)["r"] == (REJECTED, "refund_of_rejected_usage")


def test_adjustments_are_journal_movements_without_usage_rows():
    adj = ev(type="credits.adjusted", id="g", clerkUserId="u1", delta=25, reason="promo")
    plan = run([adj])
    assert plan.usage_rows == []
    assert plan.journal_rows == [("g", "id-u1", "adjustment", 25, None, "adjustment/id-u1", "promo",
                                  '[["adjustment/id-u1",25]]')]  # the user's adjustment grant
    assert plan.openings == {"id-u1": 100}


def test_every_movement_says_what_it_refers_to_and_why():
    """(event_id, user_id, kind, delta, refund_of, reference, reason): a usage refers to its
    "UsageHistory" row, a refund to the usage it gives back; the reason is the operation."""
    target = RefundTarget("old", "u1", 10, "AI_IMAGE_GENERATION", refunded=0, decided=True)
    plan = run([use("a", credits=8, at=1), refund("r", of="a", credits=3), refund("r2", of="old")],
               targets={"old": target})  # fmt: skip
    assert [row[:7] for row in plan.journal_rows] == [
        ("a", "id-u1", "usage", -8, None, "a", "AI_TEXT_CHAT"),
        ("r", "id-u1", "refund", 3, "a", "a", "refund of AI_TEXT_CHAT"),
        ("r2", "id-u1", "refund", 10, "old", "old", "refund of AI_IMAGE_GENERATION"),
    ]


def test_balance_overflow_is_rejected_not_crashed():
    adj = ev(type="credits.adjusted", id="g", clerkUserId="u1", delta=2**31 - 1, reason="x")
    plan = run([adj], balance=10)
    assert statuses(plan) == {"g": (REJECTED, "balance_out_of_range")}
