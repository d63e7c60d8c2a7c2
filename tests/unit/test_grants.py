"""Pure grant rules (worker/ledger/grants.py) and plan credit terms (worker/domain/plan_credits.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from worker.domain.plan_credits import DEFAULT, PlanCredits, add_months, allowances, plan_credits
from worker.ledger.grants import Grant, NewGrant, Wallet, burn_order, decode, encode

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)


def grant(gid: str, remaining: int, priority: int, *, expires: datetime | None = None,
          effective: datetime = NOW - DAY, source: str = "plan") -> Grant:  # fmt: skip
    return Grant.at(gid, source, remaining, priority, effective, expires)


def wallet(*grants: Grant) -> Wallet:
    return Wallet("u1", {g.grant_id: g for g in grants})


def test_burn_order_is_priority_then_earliest_expiry_then_effective_then_as_read():
    a = grant("a", 1, 10)
    b = grant("b", 1, 5)  # never expires
    c = grant("c", 1, 5, expires=NOW + 2 * DAY)
    d = grant("d", 1, 5, expires=NOW + DAY, effective=NOW - 2 * DAY)
    e = grant("e", 1, 5, expires=NOW + DAY, effective=NOW - DAY)
    f = grant("f", 1, 5, expires=NOW + DAY, effective=NOW - DAY)  # as e: read after it (younger)
    assert [g.grant_id for g in burn_order([a, b, c, f, d, e][::-1])] == ["d", "e", "f", "c", "b", "a"]


def test_a_debit_takes_in_burn_order_and_the_rest_becomes_debt():
    w = wallet(grant("starter", 100, 10, source="starter"), grant("plan", 500, 5))
    assert w.take(550, NOW) == [("plan", -500), ("starter", -50)]
    assert w.take(80, NOW) == [("starter", -50), ("overdraft/u1", -30)]
    assert w.debt == 30 and w.total == -30
    assert w.created["overdraft/u1"].remaining == -30


def test_a_grant_past_its_expiry_or_before_its_start_is_not_spent():
    w = wallet(grant("old", 50, 1, expires=NOW - timedelta(seconds=1)),
               grant("later", 50, 1, effective=NOW + DAY), grant("ok", 50, 9))  # fmt: skip
    assert w.take(10, NOW) == [("ok", -10)]
    assert w.usable(NOW) == 40


def test_credits_received_pay_the_debt_first():
    w = wallet(grant("s", 0, 10))
    w.take(30, NOW)
    w.add(NewGrant("adj", "u1", "adjustment", 50, 0, 15, NOW))
    assert w.credit("adj", 50) == [("overdraft/u1", 30), ("adj", 20)]
    assert w.debt == 0 and w.total == 20


def test_a_refund_goes_back_to_the_grants_it_came_from_last_taken_first():
    w = wallet(grant("plan", 10, 5), grant("starter", 100, 10, source="starter"))
    taken = w.take(30, NOW)
    assert taken == [("plan", -10), ("starter", -20)]
    back, expire = w.give_back(taken, 0, 25, NOW)
    assert (back, expire) == ([("starter", 20), ("plan", 5)], [])
    back, _ = w.give_back(taken, 25, 5, NOW)  # 25 already given back
    assert back == [("plan", 5)]


def test_credits_back_to_an_ended_grant_expire_at_once():
    w = wallet(grant("promo", 50, 1), grant("starter", 100, 10, source="starter"))
    taken = w.take(60, NOW)
    w.end("promo")  # it expired
    back, expire = w.give_back(taken, 0, 60, NOW)
    assert back == [("starter", 10), ("promo", 50)] and expire == [("promo", -50)]
    assert w.changes["promo"][1] == 50  # counted as expired


def test_a_refund_of_the_debts_share_pays_the_debt_or_goes_to_a_fallback_grant():
    w = wallet(grant("s", 10, 10))
    taken = w.take(30, NOW)  # 10 from s, 20 of debt
    w.add(NewGrant("top", "u1", "adjustment", 15, 0, 15, NOW))
    w.credit("top", 15)  # pays 15 of the debt: 5 left
    back, _ = w.give_back(taken, 0, 20, NOW)
    assert back == [("overdraft/u1", 5), ("adjustment/u1", 15)]
    assert w.debt == 0
    # the debt's share is given back in full (though it went elsewhere): the next goes to s
    back, _ = w.give_back(taken, 20, 10, NOW)
    assert back == [("s", 10)]


def test_expiry_carries_up_to_the_rollover_into_a_new_grant():
    w = wallet(grant("plan/p/0", 200, 5, expires=NOW))
    carry = NewGrant("rollover/plan/p/0", "u1", "rollover", 100, 0, 5, NOW - DAY, NOW + 30 * DAY)
    delta, allocation = w.expire("plan/p/0", carry)
    assert delta == -100 and allocation == [("plan/p/0", -200), ("rollover/plan/p/0", 100)]
    assert w.changes["plan/p/0"] == [-200, 100, 0, 0]  # remaining, expired, opening, amount
    assert w.created["rollover/plan/p/0"].remaining == 100


def test_a_balance_the_grants_do_not_explain_is_absorbed_once():
    w = wallet(grant("s", 40, 10))
    assert w.absorb(100, NOW) == 60
    assert w.created["legacy/u1"].opening == 60 and w.total == 100
    assert w.absorb(100, NOW) == 0
    low = wallet(grant("s", 40, 10))
    assert low.absorb(-5, NOW) == -45 and low.debt == 45


def test_plain_adjustments_top_up_one_standing_grant_per_priority_and_expiring_ones_get_their_own():
    w = wallet()
    assert w.adjustment_grant("e1", 10, None, None, NOW) == "adjustment/u1"
    w.credit("adjustment/u1", 10)
    assert w.adjustment_grant("e2", 5, 15, None, NOW) == "adjustment/u1"
    w.credit("adjustment/u1", 5)
    assert w.created["adjustment/u1"].amount == 15 and w.total == 15
    assert w.adjustment_grant("e3", 5, 3, None, NOW) == "adjustment/u1/3"
    assert w.adjustment_grant("e4", 5, None, NOW + DAY, NOW) == "adjustment/e4"


def test_allocations_round_trip_as_json_pairs():
    pairs = [("plan/x/0", -5), ('odd "id"', 3)]
    assert decode(encode(pairs)) == pairs
    assert decode(encode(pairs[:1])) == pairs[:1]


# --- plan credit terms -----------------------------------------------------------------------------


def test_plan_credit_terms_default_and_validate():
    assert plan_credits(None) == (DEFAULT, True)
    assert plan_credits({"badge": "x"}) == (DEFAULT, True)
    assert plan_credits({"credits": {"rollover": 100, "period": "cycle"}}) == (
        PlanCredits(period="cycle", rollover=100), True)  # fmt: skip
    for bad in ({"credits": {"rollover": -1}}, {"credits": {"period": "week"}}, {"credits": 5},
                {"credits": {"rollovr": 1}}):  # fmt: skip
        assert plan_credits(bad) == (DEFAULT, False)


@pytest.mark.parametrize(("start", "months", "expected"), [
    (datetime(2026, 1, 31, 9, 0, tzinfo=UTC), 1, datetime(2026, 2, 28, 9, 0, tzinfo=UTC)),
    (datetime(2026, 11, 15, tzinfo=UTC), 2, datetime(2027, 1, 15, tzinfo=UTC)),
    (datetime(2024, 1, 31, tzinfo=UTC), 1, datetime(2024, 2, 29, tzinfo=UTC)),
    (datetime(2026, 3, 31, tzinfo=UTC), 12, datetime(2027, 3, 31, tzinfo=UTC)),
])  # fmt: skip
def test_add_months_keeps_the_day_or_takes_the_months_last(start, months, expected):
    assert add_months(start, months) == expected


def test_a_yearly_payment_is_twelve_monthly_allowances_and_a_pack_one_that_never_expires():
    months = allowances(user_id="u1", grant_id="pay", credits=1000, months=12, pack=False,
                        terms=DEFAULT, start=NOW, now=NOW)  # fmt: skip
    assert [(g.grant_id, g.amount, g.state) for g in months[:2]] == [
        ("plan/pay/0", 1000, "live"), ("plan/pay/1", 1000, "pending")]  # fmt: skip
    assert all(g.remaining == 0 for g in months)  # credits come with their movement
    assert months[11].expires_at == add_months(NOW, 12) and months[11].effective_at == add_months(NOW, 11)
    cycle = allowances(user_id="u1", grant_id="pay", credits=1000, months=12, pack=False,
                       terms=PlanCredits(period="cycle"), start=NOW, now=NOW)  # fmt: skip
    assert [(g.amount, g.expires_at) for g in cycle] == [(12000, add_months(NOW, 12))]
    [pack] = allowances(user_id="u1", grant_id="pay", credits=300, months=1, pack=True,
                        terms=DEFAULT, start=NOW, now=NOW)  # fmt: skip
    assert (pack.source, pack.expires_at, pack.priority) == ("pack", None, 20)
