"""Notifications are written to the outbox by the transaction that makes the change they report:
once per key, with a delivery row per endpoint that takes them (the dispatcher's side is in
test_notify_delivery.py)."""

from __future__ import annotations

import asyncio
import base64
import random
import time
from datetime import timedelta

import pytest

from tests.integration.family_helpers import billing, plan, user_created
from tests.integration.helpers import T0, balance, make_user, refund, usage
from tests.integration.notify_helpers import Dispatcher, Receiver
from worker import clock
from worker.domain.billing import BILLING
from worker.domain.each import apply_each
from worker.domain.users import USERS
from worker.grant_sweep import sweep_due
from worker.ledger.apply import apply_usage_batch
from worker.notify.config import Endpoint, Threshold
from worker.notify.scans import scan
from worker.publisher import Publisher

SECRET = "whsec_" + base64.b64encode(b"pedro-notification-test-secret!").decode()


def endpoint(name: str = "app", events: tuple[str, ...] = ("*",)) -> Endpoint:
    """An endpoint nothing delivers to in these tests (no dispatcher runs)."""
    return Endpoint(name=name, url="http://127.0.0.1:9/hooks", secret=SECRET, events=events)


@pytest.fixture
def receiver():
    """A local receiver that verifies every delivery with the standardwebhooks library."""
    receiver = Receiver(secret=SECRET).up()
    yield receiver
    receiver.down()


@pytest.fixture
def settings(settings, receiver):
    """The test settings with one endpoint (the receiver) taking every type and a low threshold of 20."""
    app = receiver.endpoint()
    return with_thresholds(settings.model_copy(update={"notify_endpoints": [app]}), "20")


@pytest.fixture(autouse=True)
def _clock():
    clock.reset()
    yield
    clock.reset()


async def notifications(conn, type_: str | None = None) -> list[dict]:
    rows = await conn.fetch(
        "SELECT n.key, n.type, n.clerk_user_id, n.data::text AS data, array_agg(d.endpoint ORDER BY d.endpoint) AS endpoints "
        "FROM worker.notification n LEFT JOIN worker.notification_delivery d USING (seq) "
        "WHERE $1::text IS NULL OR n.type = $1 GROUP BY n.seq ORDER BY n.seq", type_,
    )  # fmt: skip
    import json

    return [{**dict(r), "data": json.loads(r["data"])} for r in rows]


def with_thresholds(settings, text: str):
    """model_copy does not validate: the thresholds go in parsed."""
    return settings.model_copy(update={"notify_low_thresholds": [Threshold.parse(t) for t in text.split(",")]})


async def test_a_balance_crossing_20_sends_credits_low_once_through_a_thousand_events_and_duplicates(
    conn, broker, worker, receiver, database_url, tmp_path
):
    """The balance goes 21 -> 20 -> 21 -> 20 … around the threshold, every event published
    twice: the crossing is notified once (per threshold per period), and the receiver gets it
    once, verified with the standardwebhooks library."""
    dispatcher = Dispatcher(database_url, [receiver.endpoint()], tmp_path / "notify.log")
    await make_user(conn, "user_low", credits=21)
    events = []
    for i in range(500):
        events.append(usage("user_low", id=f"u{i}", credits=1, at=T0 + timedelta(seconds=2 * i)))
        if i < 495:
            events.append(refund("user_low", of=f"u{i}", id=f"r{i}"))
    duplicated = events + random.Random(7).sample(events, len(events))
    publisher = Publisher(broker)
    for start in range(0, len(duplicated), 50):
        publisher.publish_many(duplicated[start:start + 50])
    worker.drain()

    assert await balance(conn, "user_low") == 16
    [low] = await notifications(conn, "credits.low")
    assert low["clerk_user_id"] == "user_low" and low["endpoints"] == ["app"]
    assert low["data"]["threshold"] == 20 and low["data"]["previousBalance"] > 20 >= low["data"]["balance"]
    assert await notifications(conn, "credits.depleted") == []

    deadline = time.monotonic() + 30
    while not receiver.arrivals and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    await asyncio.sleep(1)  # time for anything more to arrive
    dispatcher.stop()
    assert receiver.unverified == []
    [arrival] = receiver.arrivals
    assert arrival.type == "credits.low" and arrival.payload["data"]["threshold"] == 20


async def test_nothing_is_written_while_no_endpoint_is_set(conn, settings):
    plain = settings.model_copy(update={"notify_endpoints": []})
    await make_user(conn, "user_off", credits=25)
    await apply_usage_batch(conn, [usage("user_off", credits=30)], plain)
    assert await balance(conn, "user_off") == -5
    assert await notifications(conn) == []


async def test_depleting_a_balance_notifies_low_and_depleted_and_a_rejection_is_notified(conn, settings):
    strict = settings.model_copy(update={"overdraft_policy": "reject"})
    await make_user(conn, "user_zero", credits=30)
    await apply_usage_batch(conn, [usage("user_zero", id="all", credits=30)], strict)
    await apply_usage_batch(conn, [usage("user_zero", id="more", credits=1)], strict)

    kinds = [(n["type"], n["key"]) for n in await notifications(conn)]
    assert [t for t, _ in kinds] == ["credits.low", "credits.depleted", "usage.rejected"]
    assert kinds[1][1] == "credits.depleted/all"
    assert kinds[2][1] == "usage.rejected/more/insufficient_credits"
    [rejected] = await notifications(conn, "usage.rejected")
    assert rejected["data"]["reason"] == "insufficient_credits" and rejected["clerk_user_id"] == "user_zero"


async def test_a_percentage_threshold_is_of_the_plan_allowance_and_a_new_grant_starts_a_new_period(conn, settings):
    settings = with_thresholds(settings, "10%")
    await make_user(conn, "user_pay", credits=0)
    await plan(conn, "plan_pro", 500)
    received = billing("PAYMENT_RECEIVED", id="evt_pay1", t=0)
    assert (await apply_each(conn, [received], BILLING, settings)).outcomes[0].status == "applied"
    [granted] = await notifications(conn, "credits.granted")
    assert granted["data"]["credits"] == 500 and granted["data"]["balance"] == 500

    await apply_usage_batch(conn, [usage("user_pay", credits=440)], settings)  # 500 -> 60: above 10 % (50)
    assert await notifications(conn, "credits.low") == []
    await apply_usage_batch(conn, [usage("user_pay", credits=20)], settings)  # 60 -> 40: crossed
    await apply_usage_batch(conn, [usage("user_pay", credits=5)], settings)  # 40 -> 35: already below
    [low] = await notifications(conn, "credits.low")
    assert (low["data"]["threshold"], low["data"]["thresholdSetting"], low["data"]["planCredits"]) == (50, "10%", 500)
    assert (low["data"]["previousBalance"], low["data"]["balance"]) == (60, 40)

    # a second payment is a new grant: a new period, in which the threshold can fire again
    await apply_each(conn, [billing("PAYMENT_RECEIVED", id="evt_pay2", t=10, payment="pay_2")], BILLING, settings)
    await apply_usage_batch(conn, [usage("user_pay", credits=500)], settings)  # 535 -> 35
    assert [n["data"]["period"] for n in await notifications(conn, "credits.low")] == [
        low["data"]["period"], "plan/pay_2/0"]


async def test_a_refund_of_a_payment_notifies_the_reversal(conn, settings):
    await make_user(conn, "user_pay", credits=0)
    await plan(conn, "plan_pro", 500)
    await apply_each(conn, [billing("PAYMENT_RECEIVED", id="evt_r1", t=0)], BILLING, settings)
    await apply_each(conn, [billing("PAYMENT_REFUNDED", id="evt_r2", t=100, status="REFUNDED")], BILLING, settings)
    [reversed_] = await notifications(conn, "credits.reversed")
    assert reversed_["data"]["credits"] == 500 and reversed_["data"]["balance"] == 0
    assert [n["type"] for n in await notifications(conn)][-1:] == ["credits.depleted"]


async def test_a_new_user_is_provisioned_once_with_its_starter_credits(conn, settings):
    created = user_created("user_new", email="new@example.com")
    await apply_each(conn, [created], USERS, settings)
    await apply_each(conn, [user_created("user_new", email="new@example.com", id="again")], USERS, settings)
    assert [(n["type"], n["key"]) for n in await notifications(conn)] == [
        ("user.provisioned", "user.provisioned/user_new"),
        ("credits.granted", "credits.granted/starter/user_new"),
    ]


async def test_an_endpoint_gets_only_the_types_its_filter_takes(conn, settings):
    settings = settings.model_copy(update={"notify_endpoints": [
        endpoint("all"), endpoint("lows", ("credits.low", "credits.depleted"))]})  # fmt: skip
    await make_user(conn, "user_f", credits=25)
    await apply_usage_batch(conn, [usage("user_f", credits=10)], settings)
    await apply_each(conn, [user_created("user_g")], USERS, settings)
    assert {n["type"]: n["endpoints"] for n in await notifications(conn)} == {
        "credits.low": ["all", "lows"], "user.provisioned": ["all"], "credits.granted": ["all"]}


async def test_an_expiring_grant_and_an_expired_one_and_an_expired_hold_are_notified_once(conn, settings):
    from tests.integration.test_ops_grants import give, new_user

    user_id = await new_user(conn, "user_exp")
    await give(conn, user_id, "promo/p1", 50, priority=1, expires=clock.now() + timedelta(days=2))
    await give(conn, user_id, "promo/p2", 10, priority=1, expires=clock.now() + timedelta(days=30))
    assert await scan(conn, settings, clock.now()) == 1  # p1 expires within 3 days; p2 does not
    assert await scan(conn, settings, clock.now()) == 0
    [expiring] = await notifications(conn, "credits.expiring")
    assert (expiring["key"], expiring["data"]["credits"]) == ("credits.expiring/promo/p1", 50)

    clock.advance(timedelta(days=3))
    await sweep_due(conn, settings)
    [expired] = await notifications(conn, "credits.expired")
    assert expired["data"]["credits"] == 50 and expired["data"]["reference"] == "promo/p1"


async def test_an_event_waiting_longer_than_the_setting_is_notified_once(conn, settings):
    await apply_usage_batch(conn, [usage("user_nobody", id="early")], settings)
    assert await scan(conn, settings, clock.now()) == 0
    later = clock.now() + timedelta(seconds=settings.notify_waiting_after_s + 1)
    assert await scan(conn, settings, later) == 1
    assert await scan(conn, settings, later) == 0
    [waited] = await notifications(conn, "event.waiting")
    assert waited["data"]["reason"] == "unknown_user" and waited["data"]["waitsFor"] == "user:user_nobody"


async def test_a_hold_that_takes_the_balance_below_20_notifies_low_and_its_expiry_is_notified_once(conn, settings):
    from tests.integration.test_ops_holds import place, sweep

    await make_user(conn, "user_hold", credits=50)
    await place(conn, settings, "h1", "user_hold", 40, ttl=60)  # 50 -> 10: what can be spent now
    [low] = await notifications(conn, "credits.low")
    assert (low["data"]["previousBalance"], low["data"]["balance"], low["data"]["cause"]) == (50, 10, "hold/h1")

    clock.advance(timedelta(minutes=2))
    assert await sweep(conn, settings) == 1
    assert await sweep(conn, settings) == 0
    [expired] = await notifications(conn, "hold.expired")
    assert (expired["key"], expired["data"]["credits"], expired["data"]["balance"]) == ("hold.expired/h1", 40, 50)


async def test_an_invalid_event_sent_twice_in_one_message_is_one_rejection_notice_and_the_rest_applies(
    conn, settings
):
    await make_user(conn, "user_bad", credits=100)
    invalid = {"type": "usage.recorded", "clerkUserId": "user_bad", "credits": 1}  # no id, no operationType
    result = await apply_usage_batch(conn, [invalid, invalid, usage("user_bad", id="good", credits=5)], settings)
    assert [o.status for o in result.outcomes] == ["rejected", "rejected", "applied"]
    [rejected] = await notifications(conn, "usage.rejected")
    assert rejected["data"]["reason"] == "validation_error" and rejected["endpoints"] == ["app"]


def test_two_endpoints_with_one_name_are_refused(settings):
    from worker.errors import ConfigError

    twice = settings.model_copy(update={"notify_endpoints": [endpoint("app"), endpoint("app")]})
    with pytest.raises(ConfigError, match="share a name"):
        twice.notify_targets
