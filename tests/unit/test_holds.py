"""Pure hold rules (worker/ledger/holds.py): what a hold may take, what a capture charges and
gives back, what a release returns — and the queue path's use of them (worker/ledger/decide.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from worker.events import usage_event_adapter
from worker.ledger import holds as rules
from worker.ledger.decide import APPLIED, REJECTED, Account, decide
from worker.ledger.grants import Grant, Wallet
from worker.ledger.holds import Hold

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)


def grants() -> list[Grant]:
    return [Grant.at("plan", "plan", 30, 5, NOW - DAY, NOW + DAY), Grant.at("starter", "starter", 70, 10, NOW - DAY)]


def wallet() -> Wallet:
    return Wallet.read("u1", grants())


def a_hold(w: Wallet, credits: int, *, over: str = "overflow", expires: datetime = NOW + DAY) -> Hold:
    return Hold("h", "u1", "c1", credits, rules.HELD, expires.timestamp(), w.take(credits, NOW), over)


@pytest.mark.parametrize(
    ("held", "used", "rule", "charged"),
    [(10, 4, "reject", 4), (10, 10, "cap", 10), (10, 25, "overflow", 25), (10, 25, "cap", 10), (10, 25, "reject", None),
     (10, 0, "reject", 0)],
)  # fmt: skip
def test_a_capture_charges_what_was_used_or_follows_over_capture(held, used, rule, charged):
    assert rules.charge(held, used, rule) == charged


def test_available_is_what_usable_grants_hold_never_more_than_the_balance():
    w = Wallet.read("u1", [*grants(), Grant.at("overdraft/u1", "overdraft", -20, 2**31 - 1, NOW - DAY)])
    assert rules.available(80, w, NOW) == 80  # 100 in grants, 20 owed
    expired = Wallet.read("u1", [Grant.at("plan", "plan", 30, 5, NOW - DAY, NOW - 1e-3 * DAY)])
    assert rules.available(30, expired, NOW) == 0  # past its expiry, not yet swept


def test_a_hold_takes_in_burn_order_and_a_smaller_capture_gives_back_the_last_taken():
    w = wallet()
    h = a_hold(w, 50)
    assert h.allocation == [("plan", -30), ("starter", -20)]
    res = rules.capture(w, h, 35, NOW)
    assert res.delta == 15 and res.allocation == [("starter", 15)]
    assert res.taken == [("plan", -30), ("starter", -5)]  # a refund of the usage gives back to these
    assert w.grants["starter"].remaining == 65 and w.grants["plan"].remaining == 0


def test_an_overflowing_capture_takes_the_rest_in_burn_order_then_into_debt():
    w = wallet()
    h = a_hold(w, 90)
    res = rules.capture(w, h, 120, NOW)
    assert res.delta == -30 and res.allocation == [("starter", -10), ("overdraft/u1", -20)]
    assert res.taken == [("plan", -30), ("starter", -60), ("starter", -10), ("overdraft/u1", -20)]
    assert w.debt == 20


def test_a_release_gives_everything_back_and_what_belongs_to_an_ended_grant_expires():
    w = wallet()
    h = a_hold(w, 50)
    w.end("plan")  # the plan allowance expired while the credits were held
    res = rules.release(w, h, NOW)
    assert res.delta == 50 and res.allocation == [("starter", 20), ("plan", 30)]
    assert res.expire == [("plan", -30)]
    rows = rules.movements("release", h, res, "h", "released")
    assert [(r[0], r[2], r[3]) for r in rows] == [("release/h", "release", 50), ("expire/release/h", "grant_expiry", -30)]


def test_first_taken_keeps_the_first_credits_in_order():
    assert rules.first_taken([("a", -3), ("b", -5), ("c", -2)], 6) == [("a", -3), ("b", -3)]
    assert rules.first_taken([("a", -3)], 0) == []


# --- the queue path: a usage naming its hold -------------------------------------------------------


def _usage(event_id: str, credits: int, hold_id: str | None = "h", at: str = "2026-12-03T11:00:00Z"):
    event = {"type": "usage.recorded", "id": event_id, "clerkUserId": "c1", "operationType": "AI_TEXT_CHAT",
             "credits": credits, "occurredAt": at}  # fmt: skip
    if hold_id is not None:
        event["holdId"] = hold_id
    return usage_event_adapter.validate_python(event)


def _decide(events, hold: Hold, balance: int):
    w_grants = [Grant.at("plan", "plan", balance, 5, NOW - DAY, NOW + DAY)]
    return decide(events, accounts={"c1": Account("b1", "u1", "c1", balance)}, targets={}, feature_costs={},
                  default_costs={}, policy="reject", now=NOW, grants={"u1": w_grants}, holds={"h": hold})  # fmt: skip


def _held(credits: int, expires: datetime = NOW + DAY, over: str = "overflow") -> Hold:
    return Hold("h", "u1", "c1", credits, rules.HELD, expires.timestamp(), [("plan", -credits)], over)


def test_a_usage_with_its_hold_is_charged_against_it_even_beyond_the_balance():
    plan = _decide([_usage("use1", 50)], _held(40), balance=5)  # 5 left after the hold of 40
    assert plan.outcomes["use1"].status == APPLIED
    assert [(r[0], r[2], r[3]) for r in plan.journal_rows] == [("capture/h", "capture", -10)]
    assert plan.hold_resolutions == [("h", "captured", 50, "use1", '[["plan",-40],["plan",-5],["overdraft/u1",-5]]', "use1")]
    assert plan.usage_rows[0][4] == 50


def test_a_second_usage_naming_a_captured_hold_is_refused_in_the_same_batch():
    plan = _decide([_usage("use1", 10), _usage("use2", 10, at="2026-12-03T11:00:01Z")], _held(40), balance=60)
    assert (plan.outcomes["use2"].status, plan.outcomes["use2"].reason) == (REJECTED, "hold_already_captured")


def test_a_usage_naming_an_expired_hold_releases_it_then_is_a_plain_usage():
    plan = _decide([_usage("use1", 10)], _held(40, expires=NOW - DAY / 24), balance=60)
    assert [(r[0], r[2], r[3]) for r in plan.journal_rows] == [("release/h", "release", 40), ("use1", "usage", -10)]
    assert plan.hold_resolutions[0][:2] == ("h", "expired")


def test_a_usage_over_a_rejecting_hold_is_refused_and_the_hold_stays_open():
    hold = _held(10, over="reject")
    plan = _decide([_usage("use1", 25)], hold, balance=60)
    assert (plan.outcomes["use1"].status, plan.outcomes["use1"].reason) == (REJECTED, "over_capture")
    assert plan.hold_resolutions == [] and hold.status == rules.HELD


def test_a_usage_with_no_hold_id_hashes_as_before_hold_ids_existed():
    with_none = _usage("use1", 5, hold_id=None)
    assert "holdId" not in with_none.model_dump(exclude={"holdId"})
    assert with_none.payload_hash() != _usage("use1", 5).payload_hash()
    from worker.codec import payload_hash

    assert with_none.payload_hash() == payload_hash(with_none.model_dump(mode="json", exclude={"holdId"}))
