"""What a change notifies (worker/notify/notices.py), decided without a database; and every
notice each rule makes is a valid body of its type (worker/notify/payloads.py), so the published
schema cannot drift from the rules."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta

import msgspec
import pytest
from pydantic import ValidationError

from worker.events import usage_event_adapter
from worker.ledger.decide import Account, Plan, decide
from worker.ledger.grants import OVERDRAFT, PRIORITIES, Grant, NewGrant, Wallet
from worker.notify import notices
from worker.notify.config import Endpoint, Threshold
from worker.notify.notices import Notice, crossings, from_plan, movement, period_of, rejected
from worker.notify.payloads import DATA_MODELS, notification_adapter

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)
USER = "user_1"  # Clerk id
UID = "u1"  # "User".id


def account(balance: int, user_id: str = UID, clerk: str = USER) -> Account:
    return Account(f"cb-{user_id}", user_id, clerk, balance)


def grant(gid: str, source: str, *, remaining: int = 0, amount: int = 0, effective: datetime = NOW - DAY,
          expires: datetime | None = None) -> Grant:  # fmt: skip
    return Grant.at(gid, source, remaining, PRIORITIES[source], effective, expires, amount)


def wallet(*grants: Grant, user_id: str = UID) -> Wallet:
    return Wallet.read(user_id, grants)


def thresholds(*settings: str) -> list[Threshold]:
    return [Threshold.parse(s) for s in settings]


def row(key: str, kind: str, delta: int, *, reference: str | None = None, reason: str | None = None,
        user_id: str = UID, refund_of: str | None = None) -> tuple:  # fmt: skip
    """A journal row as decide.Plan.journal_rows has it."""
    return (key, user_id, kind, delta, refund_of, reference, reason, "[]")


def plan(*rows: tuple, wallets: dict[str, Wallet] | None = None) -> Plan:
    return Plan(journal_rows=list(rows), wallets=wallets or {})


def conforms(found: list[Notice] | Notice | None) -> list[Notice]:
    """Every notice as the dispatcher sends it (data encoded as the outbox writes it) is a valid
    body of its type; returns them as a list."""
    items = [] if found is None else [found] if isinstance(found, Notice) else list(found)
    for n in items:
        body = {"type": n.type, "timestamp": "2026-12-03T12:00:00Z", "data": msgspec.json.decode(
            msgspec.json.encode(n.data))}  # fmt: skip
        parsed = notification_adapter.validate_json(json.dumps(body))
        assert parsed.type == n.type and isinstance(parsed.data, DATA_MODELS[n.type])
    return items


def types(found: list[Notice]) -> list[str]:
    return [n.type for n in found]


# --- credits.low and credits.depleted: crossings --------------------------------------------------


def test_crossing_a_threshold_downward_fires_credits_low_keyed_by_user_threshold_and_period():
    w = wallet(grant(f"starter/{USER}", "starter", remaining=15, amount=100))
    (low,) = conforms(crossings(account(25), 25, 15, thresholds("20"), w, "evt_9"))
    assert low.key == f"credits.low/{USER}/20/starter/{USER}"
    assert low.type == "credits.low" and low.clerk_user_id == USER
    assert low.data == {"userId": UID, "clerkUserId": USER, "balance": 15, "previousBalance": 25, "threshold": 20,
                        "thresholdSetting": "20", "planCredits": None, "period": f"starter/{USER}",
                        "cause": "evt_9"}  # fmt: skip


def test_each_threshold_crossed_fires_once_and_the_same_crossing_gives_the_same_keys():
    w = wallet(grant(f"starter/{USER}", "starter", amount=100))
    ts = thresholds("50", "20", "10")
    first = conforms(crossings(account(60), 60, 5, ts, w, "evt_1"))
    assert [n.data["threshold"] for n in first] == [50, 20, 10]
    assert len({n.key for n in first}) == 3
    # back above and down again in the same period (another cause): the same keys, so the
    # outbox (one row per key) keeps the first of each
    again = crossings(account(60), 60, 5, ts, w, "evt_2")
    assert [n.key for n in again] == [n.key for n in first]
    assert [n.webhook_id for n in again] == [n.webhook_id for n in first]


def test_reaching_a_threshold_is_crossing_it_starting_at_or_below_it_is_not():
    w = wallet(grant("pack/p/0", "pack", amount=100))
    assert [n.data["threshold"] for n in crossings(account(21), 21, 20, thresholds("20"), w, "e")] == [20]
    assert crossings(account(20), 20, 19, thresholds("20"), w, "e") == []
    assert crossings(account(15), 15, 3, thresholds("20"), w, "e") == []


@pytest.mark.parametrize(("before", "after"), [(15, 25), (15, 15), (100, 50), (100, 21), (-5, 30)])
def test_a_balance_that_goes_up_or_stays_above_the_threshold_fires_nothing(before, after):
    w = wallet(grant("pack/p/0", "pack", amount=100))
    assert crossings(account(before), before, after, thresholds("20", "10%"), w, "e") == []


def test_no_thresholds_configured_fires_no_credits_low():
    assert crossings(account(25), 25, 15, [], wallet(grant("pack/p/0", "pack")), "e") == []


def test_each_grant_that_brings_credits_starts_a_period_named_by_the_newest_live_grant():
    starter = grant(f"starter/{USER}", "starter", amount=100, effective=NOW - 30 * DAY)
    pack = grant("pack/p/0", "pack", amount=500, effective=NOW - 2 * DAY)
    plan_month = grant("plan/s/3", "plan", amount=1000, effective=NOW - DAY)  # first in burn order
    debt = grant(f"{OVERDRAFT}/{UID}", OVERDRAFT, remaining=-10, effective=NOW)  # newest, but no credits
    assert period_of(wallet(starter)) == (f"starter/{USER}", None)
    assert period_of(wallet(starter, pack)) == ("pack/p/0", None)
    assert period_of(wallet(plan_month, starter, pack, debt)) == ("plan/s/3", 1000)
    keys = [crossings(account(25), 25, 15, thresholds("20"), wallet(*g), "e")[0].key
            for g in ([starter], [starter, pack], [plan_month, starter, pack, debt])]  # fmt: skip
    assert keys == [f"credits.low/{USER}/20/starter/{USER}", f"credits.low/{USER}/20/pack/p/0",
                    f"credits.low/{USER}/20/plan/s/3"]  # fmt: skip


def test_a_new_grant_made_in_the_transaction_names_the_period():
    w = wallet(grant(f"starter/{USER}", "starter", amount=100, effective=NOW - 30 * DAY))
    w.add(NewGrant("pack/pay_2/0", UID, "pack", 200, 200, PRIORITIES["pack"], NOW))
    assert period_of(w) == ("pack/pay_2/0", None)


def test_a_user_with_no_grant_has_one_period_named_none():
    assert period_of(None) == ("none", None)
    assert period_of(wallet()) == ("none", None)
    (low,) = conforms(crossings(account(25), 25, 15, thresholds("20"), None, "e"))
    assert low.key == f"credits.low/{USER}/20/none" and low.data["period"] == "none"


def test_a_percentage_threshold_is_of_the_newest_live_plan_grants_amount():
    older_plan = grant("plan/s/0", "plan", amount=1000, effective=NOW - 40 * DAY)
    newer_plan = grant("plan/s2/0", "plan", amount=500, remaining=40, effective=NOW - 10 * DAY)
    pack = grant("pack/p/0", "pack", amount=2000, effective=NOW - DAY)  # newest: names the period
    w = wallet(older_plan, newer_plan, pack)
    (low,) = conforms(crossings(account(60), 60, 40, thresholds("10%"), w, "evt_3"))
    assert low.key == f"credits.low/{USER}/10%/pack/p/0"
    assert (low.data["threshold"], low.data["thresholdSetting"], low.data["planCredits"]) == (50, "10%", 500)
    assert crossings(account(50), 50, 40, thresholds("10%"), w, "e") == []  # 50 is not above 10 % of 500


def test_a_percentage_threshold_rounds_down_to_whole_credits():
    w = wallet(grant("plan/s/0", "plan", amount=333))
    (low,) = crossings(account(40), 40, 30, thresholds("10%"), w, "e")
    assert low.data["threshold"] == 33


def test_no_percentage_threshold_without_a_plan_grant():
    w = wallet(grant(f"starter/{USER}", "starter", amount=100), grant("pack/p/0", "pack", amount=1000))
    assert crossings(account(500), 500, 0, thresholds("10%", "50%"), w, "e") == [
        n for n in crossings(account(500), 500, 0, [], w, "e")]  # only credits.depleted  # fmt: skip
    found = conforms(crossings(account(500), 500, 10, thresholds("10%", "20"), w, "e"))
    assert [n.data["thresholdSetting"] for n in found] == ["20"]
    assert found[0].data["planCredits"] is None


def test_a_plan_grant_with_no_amount_gives_no_percentage_threshold():
    assert Threshold.parse("10%").credits(0) is None and Threshold.parse("10%").credits(None) is None
    w = wallet(grant("plan/s/0", "plan", amount=0))
    assert crossings(account(50), 50, 1, thresholds("10%"), w, "e") == []


def test_crossing_to_zero_or_below_fires_credits_depleted_keyed_by_its_cause():
    w = wallet(grant("pack/p/0", "pack", amount=100))
    (depleted,) = conforms(crossings(account(5), 5, 0, [], w, "evt_7"))
    assert depleted.key == "credits.depleted/evt_7" and depleted.type == "credits.depleted"
    assert depleted.data == {"userId": UID, "clerkUserId": USER, "balance": 0, "previousBalance": 5, "cause": "evt_7"}
    assert types(crossings(account(5), 5, -3, [], w, "evt_8")) == ["credits.depleted"]
    assert crossings(account(0), 0, -5, [], w, "e") == []  # already at zero
    assert crossings(account(-5), -5, -10, [], w, "e") == []


def test_one_fall_through_a_threshold_and_zero_fires_both_low_then_depleted():
    w = wallet(grant("pack/p/0", "pack", amount=100))
    found = conforms(crossings(account(30), 30, -2, thresholds("20", "5"), w, "evt_4"))
    assert types(found) == ["credits.low", "credits.low", "credits.depleted"]
    assert all(n.data["cause"] == "evt_4" for n in found)


# --- movements ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "key", "delta", "reference", "reason"),
    [
        ("grant", "grant/pay_1", 1000, "pay_1", "plan plan_pro"),
        ("grant_start", "start/plan/pay_1/2", 1000, "plan/pay_1/2", "allowance plan/pay_1/2 starts"),
        ("starter", f"starter/{USER}", 100, USER, "starter credits"),
        ("grant_restore", "grant_restore/pay_1/1", 400, "pay_1", "PAYMENT_AWAITING_CHARGEBACK_REVERSAL"),
        ("adjustment", "adj-42", 50, f"adjustment/{UID}", "support"),
    ],
)
def test_credits_received_notify_credits_granted_once_per_movement(kind, key, delta, reference, reason):
    (n,) = conforms(movement(account(10), row(key, kind, delta, reference=reference, reason=reason), 60))
    assert (n.key, n.type, n.clerk_user_id) == (f"credits.granted/{key}", "credits.granted", USER)
    assert n.data == {"userId": UID, "clerkUserId": USER, "credits": delta, "kind": kind, "reference": reference,
                      "reason": reason, "movement": key, "balance": 60}  # fmt: skip


def test_a_reversal_notifies_credits_reversed_with_the_credits_taken_back():
    r = row("grant_reversal/pay_1", "grant_reversal", -1000, reference="pay_1", reason="PAYMENT_REFUNDED",
            refund_of="pay_1")  # fmt: skip
    (n,) = conforms(movement(account(1200), r, 200))
    assert (n.key, n.type) == ("credits.reversed/grant_reversal/pay_1", "credits.reversed")
    assert (n.data["credits"], n.data["kind"], n.data["balance"]) == (1000, "grant_reversal", 200)


def test_an_expiry_notifies_credits_expired():
    r = row("expire/plan/pay_1/0", "grant_expiry", -300, reference="plan/pay_1/0", reason="plan credits expired")
    (n,) = conforms(movement(account(350), r, 50))
    assert (n.key, n.type) == ("credits.expired/expire/plan/pay_1/0", "credits.expired")
    assert (n.data["credits"], n.data["kind"], n.data["reference"]) == (300, "grant_expiry", "plan/pay_1/0")


def test_a_release_at_the_holds_expiry_notifies_hold_expired_other_releases_do_not():
    r = row("release/hold_1", "release", 25, reference="hold_1", reason="hold expired")
    (n,) = conforms(movement(account(10), r, 35))
    assert (n.key, n.type) == ("hold.expired/hold_1", "hold.expired")
    assert n.data == {"userId": UID, "clerkUserId": USER, "holdId": "hold_1", "credits": 25, "balance": 35}
    for reason in ("released (http)", "released (ops)"):
        r = row("release/hold_2", "release", 25, reference="hold_2", reason=reason)
        assert movement(account(10), r, 35) is None


@pytest.mark.parametrize(
    ("kind", "delta"),
    [("usage", -5), ("hold", -10), ("capture", 3), ("capture", -2), ("refund", 5), ("adjustment", -50),
     ("debt_payment", -30), ("grant", 0)],  # fmt: skip
)
def test_usage_holds_captures_refunds_and_debits_notify_no_movement(kind, delta):
    assert movement(account(100), row("k", kind, delta, reference="r", reason="x"), 100 + delta) is None
    assert from_plan(plan(row("k", kind, delta, reference="r", reason="hold expired")), [account(100)], []) == []


# --- from_plan ------------------------------------------------------------------------------------


def test_from_plan_gives_movements_then_the_crossing_of_the_balance_over_the_whole_transaction():
    w = wallet(grant("pack/p/0", "pack", amount=100, remaining=30))
    p = plan(row("evt_1", "usage", -5, reference="evt_1", reason="AI_TEXT_CHAT"),
             row("release/hold_1", "release", 10, reference="hold_1", reason="hold expired"),
             row("evt_2", "usage", -20, reference="evt_2", reason="AI_IMAGE_GENERATION"),
             row("evt_3", "usage", -5, reference="evt_3", reason="AI_TEXT_CHAT"),
             wallets={USER: w})  # fmt: skip
    found = conforms(from_plan(p, [account(30)], thresholds("20")))
    assert types(found) == ["hold.expired", "credits.low"]
    assert found[0].data["balance"] == 10  # the balance after the transaction
    low = found[1]
    assert low.key == f"credits.low/{USER}/20/pack/p/0"
    assert (low.data["previousBalance"], low.data["balance"], low.data["cause"]) == (30, 10, "evt_3")


def test_from_plan_measures_the_net_change_a_dip_within_the_transaction_is_no_crossing():
    p = plan(row("evt_1", "usage", -25, reference="evt_1"), row("grant/pay_1", "grant", 100, reference="pay_1"),
             wallets={USER: wallet(grant("pack/p/0", "pack", amount=100))})  # fmt: skip
    found = conforms(from_plan(p, [account(30)], thresholds("20")))
    assert types(found) == ["credits.granted"]
    assert found[0].data["balance"] == 105


def test_from_plan_takes_each_user_on_its_own_and_skips_users_it_has_no_balance_for():
    p = plan(row("a1", "usage", -20, user_id="u1"), row("b1", "usage", -1, user_id="u2"),
             row("c1", "usage", -50, user_id="u3"), row("c2", "adjustment", 80, user_id="u3"))  # fmt: skip
    accounts = [account(30, "u1", "user_1"), account(30, "u2", "user_2")]
    found = conforms(from_plan(p, accounts, thresholds("20")))
    assert [(n.type, n.clerk_user_id, n.data["balance"]) for n in found] == [("credits.low", "user_1", 10)]


def test_from_plan_names_the_period_by_the_users_wallet_in_the_plan():
    w = wallet(grant("plan/s/1", "plan", amount=400, remaining=50))
    found = conforms(from_plan(plan(row("evt_1", "usage", -35), wallets={USER: w}), [account(50)],
                               thresholds("20", "10%")))  # fmt: skip
    assert [n.key for n in found] == [f"credits.low/{USER}/20/plan/s/1", f"credits.low/{USER}/10%/plan/s/1"]
    assert [n.data["threshold"] for n in found] == [20, 40]


def test_from_plan_of_a_plan_with_no_movements_is_nothing():
    assert from_plan(Plan(), [account(10)], thresholds("20")) == []


def test_from_plan_over_decided_usage_fires_credits_low_once_however_often_the_balance_crosses():
    """The rules over the ledger's own decisions: usage batches down through the threshold and
    adjustments back above it, ten times, give one credits.low key (the outbox keeps one row per
    key). The adjustments top up the user's standing adjustment grant, which exists already: a
    top-up makes no grant, so it starts no period."""
    grants = {UID: [grant("pack/p/0", "pack", remaining=30, amount=100),
                    grant(f"adjustment/{UID}", "adjustment", amount=5, effective=NOW - 30 * DAY)]}  # fmt: skip
    balance, keys, sent = 30, set(), 0

    def batch(events):
        nonlocal balance, sent
        accounts = {USER: account(balance)}
        p = decide(events, accounts=accounts, targets={}, feature_costs={}, default_costs={"AI_TEXT_CHAT": 5},
                   policy="allow", now=NOW, grants=grants)  # fmt: skip
        found = conforms(from_plan(p, accounts.values(), thresholds("20")))
        sent += sum(n.type == "credits.low" for n in found)
        keys.update(n.key for n in found if n.type == "credits.low")
        balance += sum(r[3] for r in p.journal_rows)
        grants[UID] = list(p.wallets[USER].grants.values())

    def use(i, credits):
        return usage_event_adapter.validate_python({
            "type": "usage.recorded", "id": f"use-{i}", "clerkUserId": USER, "operationType": "AI_TEXT_CHAT",
            "credits": credits, "occurredAt": (NOW + timedelta(seconds=i)).isoformat()})  # fmt: skip

    def give(i, credits):
        return usage_event_adapter.validate_python({
            "type": "credits.adjusted", "id": f"adj-{i}", "clerkUserId": USER, "delta": credits,
            "reason": "test"})  # fmt: skip

    for i in range(0, 40, 4):  # down through 20 and back up, ten times, one batch each way
        batch([use(i, 6), use(i + 1, 6)])
        batch([give(i, 12)])
    assert balance == 30
    assert sent == 10 and keys == {f"credits.low/{USER}/20/pack/p/0"}


# --- usage.rejected, user.provisioned, credits.expiring, event.waiting ----------------------------


def test_a_rejection_notifies_usage_rejected_keyed_by_event_id_and_reason():
    payload = json.dumps({"type": "usage.recorded", "id": "evt_5", "clerkUserId": USER, "credits": 500})
    (n,) = conforms(rejected([("evt_5", "usage.recorded", "insufficient_credits", "balance 3, change -500",
                               payload)]))  # fmt: skip
    assert (n.key, n.type, n.clerk_user_id) == ("usage.rejected/evt_5/insufficient_credits", "usage.rejected", USER)
    assert n.data == {"eventId": "evt_5", "eventType": "usage.recorded", "clerkUserId": USER,
                      "reason": "insufficient_credits", "detail": "balance 3, change -500"}  # fmt: skip


def test_a_rejection_without_an_id_is_keyed_by_its_payloads_hash():
    a, b = '{"type":"usage.recorded","credits":"five"}', '{"type":"usage.recorded","credits":"six"}'
    found = conforms(rejected([(None, "usage.recorded", "validation_error", "id: Field required", a),
                               (None, None, "validation_error", "type: Field required", b),
                               (None, "usage.recorded", "validation_error", "id: Field required", a)]))  # fmt: skip
    digest = hashlib.sha256(a.encode()).hexdigest()
    assert found[0].key == f"usage.rejected/sha256:{digest}/validation_error"
    assert found[0].key == found[2].key != found[1].key  # the same payload is the same notification
    assert found[0].data["eventId"] is None and found[1].data["eventType"] is None


@pytest.mark.parametrize("payload", ["[1, 2]", "not json", '{"clerkUserId": 42}', '"user_1"', "{}"])
def test_a_rejection_names_a_user_only_when_its_payload_has_a_string_clerk_user_id(payload):
    (n,) = conforms(rejected([("evt_6", None, "validation_error", None, payload)]))
    assert n.clerk_user_id is None and n.data["clerkUserId"] is None


def test_a_new_user_notifies_user_provisioned_and_its_starter_credits_as_their_journal_movement_would():
    found = conforms(notices.provisioned(UID, USER, "ana@example.com", 100, f"starter/{USER}", 100))
    assert types(found) == ["user.provisioned", "credits.granted"]
    assert found[0].key == f"user.provisioned/{USER}"
    assert found[0].data == {"userId": UID, "clerkUserId": USER, "email": "ana@example.com", "starterCredits": 100}
    # the same key as the starter movement's notice from a plan: one notification either way
    from_journal = movement(account(0), row(f"starter/{USER}", "starter", 100, reference=USER,
                                            reason="starter credits"), 100)  # fmt: skip
    assert found[1].key == from_journal.key and found[1].data == from_journal.data


def test_a_user_whose_starter_credits_were_not_granted_now_is_provisioned_with_none():
    found = conforms(notices.provisioned(UID, USER, None, 100, None, 0))
    assert types(found) == ["user.provisioned"] and found[0].data["starterCredits"] == 0
    assert found[0].data["email"] is None


def test_a_grant_about_to_expire_notifies_credits_expiring_once_per_grant():
    at = datetime(2026, 12, 31, 23, 59, 59, tzinfo=UTC)
    n = notices.expiring("plan/pay_1/0", UID, USER, "plan", 40, at)
    conforms(n)
    assert (n.key, n.type, n.clerk_user_id) == ("credits.expiring/plan/pay_1/0", "credits.expiring", USER)
    assert n.data == {"userId": UID, "clerkUserId": USER, "grantId": "plan/pay_1/0", "source": "plan", "credits": 40,
                      "expiresAt": "2026-12-31T23:59:59+00:00"}  # fmt: skip
    conforms(notices.expiring("pack/p/0", UID, None, "pack", 1, at))  # a user row gone: no Clerk id


def test_an_event_waiting_too_long_notifies_event_waiting_once_per_event():
    since = datetime(2026, 12, 3, 11, 0, tzinfo=UTC)
    n = notices.waited("evt_8", "usage", "usage.recorded", "user_9", "unknown_user", "user:user_9",
                       "no user with clerkUserId user_9", since)  # fmt: skip
    conforms(n)
    assert (n.key, n.clerk_user_id) == ("event.waiting/evt_8", "user_9")
    assert n.data["since"] == "2026-12-03T11:00:00+00:00" and n.data["waitsFor"] == "user:user_9"
    conforms(notices.waited("pay_1", "billing", "billing.event", None, "no_clerk_user", "payment:pay_1", None, since))


# --- webhook ids, endpoints, and the contract's teeth --------------------------------------------


def test_a_webhook_id_is_msg_prefixed_and_a_function_of_the_key_alone():
    a = Notice("credits.low/user_1/20/pack/p/0", "credits.low", USER, {"balance": 15})
    b = Notice("credits.low/user_1/20/pack/p/0", "credits.low", USER, {"balance": 12})
    c = Notice("credits.low/user_1/20/pack/p/1", "credits.low", USER, {"balance": 15})
    assert a.webhook_id == b.webhook_id != c.webhook_id
    assert a.webhook_id.startswith("msg_") and len(a.webhook_id) == 4 + 32
    assert a.webhook_id == "msg_" + hashlib.sha256(a.key.encode()).hexdigest()[:32]


def test_each_endpoint_gets_the_types_its_filter_takes():
    endpoints = {"app": Endpoint(url="https://app.example/api/pedro/webhooks", secret="whsec_AAAA"),
                 "billing": Endpoint(name="billing", url="https://b.example/h", secret="whsec_AAAA",
                                     events=("credits.granted", "credits.reversed"))}  # fmt: skip
    found = notices.provisioned(UID, USER, None, 100, f"starter/{USER}", 100)
    assert notices.for_endpoints(found, endpoints) == [(f"user.provisioned/{USER}", "app"),
                                                       (f"credits.granted/starter/{USER}", "app"),
                                                       (f"credits.granted/starter/{USER}", "billing")]  # fmt: skip


def test_a_notice_the_contract_does_not_describe_fails_the_conformance_check():
    (low,) = crossings(account(25), 25, 15, thresholds("20"), None, "e")
    for data in ({**low.data, "surprise": 1}, {k: v for k, v in low.data.items() if k != "period"},
                 {**low.data, "balance": "15"}, {**low.data, "balance": True}):  # fmt: skip
        with pytest.raises(ValidationError):
            conforms(Notice(low.key, low.type, low.clerk_user_id, data))
    with pytest.raises(ValidationError):
        conforms(Notice("k", "credits.granted", USER, {**low.data}))


# --- reported to the owner of notices.py, not fixed here -----------------------------------------


def test_a_crossing_caused_by_the_period_grants_expiry_belongs_to_that_period():
    starter = grant(f"starter/{USER}", "starter", amount=100, remaining=0, effective=NOW - 60 * DAY)
    month = grant("plan/pay_1/0", "plan", amount=1000, remaining=500, effective=NOW - 31 * DAY, expires=NOW)
    w = wallet(month, starter)
    assert period_of(w) == ("plan/pay_1/0", 1000)  # before the sweep: the month names the period
    delta, allocation = w.expire("plan/pay_1/0")  # the grant sweep, as domain/expiry.py does it
    assert delta == -500
    p = plan(row("expire/plan/pay_1/0", "grant_expiry", delta, reference="plan/pay_1/0",
                 reason="plan credits expired"), wallets={USER: w})  # fmt: skip
    lows = [n for n in from_plan(p, [account(500)], thresholds("20", "10%")) if n.type == "credits.low"]
    # expected: both thresholds, in the month's period (10 % of its 1000 credits = 100); got:
    # `20` keyed by the starter's period (already used when the starter credits ran low, so the
    # outbox drops it) and no `10%` at all (no live plan grant is left to take it of)
    assert [(n.data["thresholdSetting"], n.data["period"]) for n in lows] == [
        ("20", "plan/pay_1/0"), ("10%", "plan/pay_1/0")]  # fmt: skip

