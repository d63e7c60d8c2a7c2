"""Delivery of notifications (`pedro-worker notify`, worker/notify/dispatch.py) to a real
receiver that verifies every request with the `standardwebhooks` library: signed, at least
once, in order per user, through a receiver outage, a dispatcher killed mid-delivery, an
endpoint that keeps answering 500, and two dispatchers at once."""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import Awaitable, Callable

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from tests.integration.notify_helpers import Dispatcher, Receiver, new_secret, notice, with_endpoints
from worker.notify.outbox import record

pytestmark = pytest.mark.integration


async def _wait_for(condition: Callable[[], Awaitable[bool] | bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        done = condition()
        if not isinstance(done, bool):
            done = await done
        if done:
            return
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


async def _write(conn, settings, notices) -> None:
    async with conn.transaction():  # as the ledger does: NOTIFY goes at commit
        await record(conn, settings, notices)


async def _deliveries(conn, endpoint: str = "app") -> list:
    return await conn.fetch(
        "SELECT d.*, n.webhook_id, n.type, n.data, n.created_at FROM worker.notification_delivery d "
        "JOIN worker.notification n USING (seq) WHERE d.endpoint = $1 ORDER BY d.seq", endpoint)


async def _all_delivered(conn, endpoint: str = "app") -> bool:
    return await conn.fetchval("SELECT count(*) = 0 FROM worker.notification_delivery "
                               "WHERE endpoint = $1 AND status = 'pending'", endpoint)  # fmt: skip


async def _listening(conn, dispatchers: int = 1) -> bool:
    return await conn.fetchval("SELECT count(*) >= $1 FROM pg_stat_activity "
                               "WHERE datname = current_database() AND query ILIKE 'LISTEN%'", dispatchers)  # fmt: skip


def _in_order_once(receiver: Receiver, users: list[str], per_user: int) -> None:
    """Each user's notifications arrived once each, in the order they were written."""
    assert receiver.unverified == []
    ids = receiver.ids()
    assert len(ids) == len(set(ids)) == len(users) * per_user, "a webhook-id arrived twice, or one is missing"
    for user in users:
        assert [a.n for a in receiver.of(user)] == list(range(per_user)), user


@pytest.fixture
def receivers():
    started: list[Receiver] = []

    def make(**options) -> Receiver:
        receiver = Receiver(**options).up()
        started.append(receiver)
        return receiver

    yield make
    for receiver in started:
        receiver.down()


@pytest.fixture
def dispatchers(database_url, tmp_path):
    started: list[Dispatcher] = []

    def start(*endpoints, **options) -> Dispatcher:
        dispatcher = Dispatcher(database_url, endpoints, tmp_path / f"notify-{len(started)}.log", **options)
        started.append(dispatcher)
        return dispatcher

    yield start
    for dispatcher in started:
        dispatcher.kill()


async def test_every_delivery_is_signed_per_standard_webhooks(conn, settings, receivers, dispatchers):
    """The body is {type, timestamp, data} from the row, the webhook-id is the notification's,
    and the standardwebhooks library verifies the signature (and refuses another secret).
    Written after the dispatcher started, and delivered at once although it polls only every
    minute: the writer's commit wakes it (LISTEN)."""
    receiver = receivers()
    writer = with_endpoints(settings, receiver.endpoint())
    dispatcher = dispatchers(receiver.endpoint(), poll_ms=60_000)
    await _wait_for(lambda: _listening(conn), 15, "the dispatcher to LISTEN")

    written = time.monotonic()
    await _write(conn, writer, [notice("user_a", 0, "credits.low"), notice("user_a", 1, "credits.depleted"),
                                notice("user_b", 0, "credits.granted"), notice(None, 0, "usage.rejected")])
    await _wait_for(lambda: len(receiver.arrivals) == 4, 10, "four deliveries")
    assert time.monotonic() - written < 5  # not the minute's poll
    assert dispatcher.stop() == 0

    assert receiver.unverified == []
    rows = {r["webhook_id"]: r for r in await _deliveries(conn)}
    for arrival in receiver.arrivals:
        row = rows[arrival.webhook_id]
        assert json.loads(arrival.body) == {
            "type": row["type"], "data": row["data"],
            "timestamp": row["created_at"].isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        }  # fmt: skip
        assert b" " not in arrival.body  # compact JSON
        assert abs(arrival.timestamp - time.time()) < 60
        assert (row["status"], row["attempts"], row["last_status"], row["in_flight"]) == ("delivered", 1, 204, False)
        assert arrival.signature.startswith("v1,")
        Webhook(receiver.secret).verify(arrival.body, arrival.headers)
        with pytest.raises(WebhookVerificationError):
            Webhook(new_secret()).verify(arrival.body, arrival.headers)
    assert [a.n for a in receiver.of("user_a")] == [0, 1]
    assert {a.type for a in receiver.arrivals} == {"credits.low", "credits.depleted", "credits.granted", "usage.rejected"}
    delivered = dispatcher.events("notification_delivered")
    assert {e["webhook_id"] for e in delivered} == set(rows)
    logged = dispatcher.log.read_text()
    assert receiver.secret not in logged and receiver.url not in logged  # a URL may carry a token


async def test_receiver_down_for_30_s_then_up_every_notification_arrives_once_in_order(
    conn, settings, receivers, dispatchers
):
    """Users' notifications written while the receiver is down, at different moments, so each
    lane backs off on its own phase of the schedule; once the receiver is back, the first
    retry that gets through makes every other lane due at once (no lane waits out its
    backoff), and all arrive once each, in order per user."""
    receiver = receivers()
    writer = with_endpoints(settings, receiver.endpoint())
    dispatchers(receiver.endpoint(), schedule=(1, 2, 4, 8, 16, 32))
    receiver.down()
    down = time.monotonic()
    users = [f"user_{n}" for n in range(4)]
    for k, user in enumerate(users):  # lanes start failing at 0, 6, 12 and 18 s into the outage
        await asyncio.sleep(max(0.0, down + 6 * k - time.monotonic()))
        await _write(conn, writer, [notice(user, n) for n in range(5)])
    await asyncio.sleep(max(0.0, down + 30 - time.monotonic()))
    pending = await _deliveries(conn)
    assert {r["status"] for r in pending} == {"pending"} and receiver.arrivals == []
    heads = [r for r in pending if r["attempts"] > 0]
    assert len(heads) == len(users) and all(r["last_status"] is None and r["last_error"] for r in heads)

    receiver.up()  # the same port
    await _wait_for(lambda: _all_delivered(conn), 40, "every notification to be delivered")
    first, last = receiver.arrivals[0].at, receiver.arrivals[-1].at
    print(f"\nreceiver back after {first - down:.1f} s; all {len(receiver.arrivals)} delivered {last - first:.2f} s later")
    _in_order_once(receiver, users, 5)
    assert last - first < 3  # the lanes' next retries were due at 31 to 41 s: they did not wait for them
    rows = await _deliveries(conn)
    assert {(r["status"], r["last_status"], r["in_flight"]) for r in rows} == {("delivered", 204, False)}


async def test_a_dispatcher_killed_mid_delivery_is_followed_by_a_redelivery_with_the_same_webhook_id(
    conn, settings, receivers, dispatchers
):
    """kill -9 while the receiver holds the first request: no transaction was open meanwhile;
    the next dispatcher leaves the lane alone until the dead one's lease ends, then sends the
    same webhook-id with the same body, and the lane's later notifications after it."""
    receiver = receivers()
    writer = with_endpoints(settings, receiver.endpoint())
    release = receiver.stall_next()
    try:
        first = dispatchers(receiver.endpoint(), timeout_s=2)  # lease: 2 s + 5 s
        await _write(conn, writer, [notice("user_k", n) for n in range(3)])
        await asyncio.to_thread(receiver.wait_stalled, 15)
        assert await conn.fetchval("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                                   "AND state LIKE 'idle in transaction%'") == 0  # fmt: skip
        first.kill()
        killed = time.monotonic()
        (row,) = [r for r in await _deliveries(conn) if r["attempts"]]
        assert (row["status"], row["in_flight"], row["attempts"]) == ("pending", True, 1)

        dispatchers(receiver.endpoint(), timeout_s=2)
        await _wait_for(lambda: _all_delivered(conn), 20, "the lane to be delivered")
    finally:
        release.set()
    arrivals = receiver.of("user_k")
    assert [a.n for a in arrivals] == [0, 0, 1, 2]
    stalled, again = arrivals[0], arrivals[1]
    assert again.webhook_id == stalled.webhook_id and again.body == stalled.body
    assert 4 < again.at - killed < 10  # after the lease (7 s from the claim), not before
    assert receiver.unverified == []
    rows = await _deliveries(conn)
    assert [(r["status"], r["attempts"]) for r in rows] == [("delivered", 2), ("delivered", 1), ("delivered", 1)]


async def test_an_endpoint_answering_500_goes_through_the_schedule_then_fails_and_the_lane_moves_on(
    conn, settings, receivers, dispatchers
):
    """The receiver answers 500 to one notification only: it is tried on the schedule (the
    other deliveries that succeed meanwhile do not hasten it: a 500 is the receiver's answer
    about that notification), then `failed`, and its lane goes on with the next."""
    poisoned = notice("user_p", 0)
    receiver = receivers(answer=lambda a: 500 if a.webhook_id == poisoned.webhook_id else 204)
    writer = with_endpoints(settings, receiver.endpoint())
    dispatcher = dispatchers(receiver.endpoint(), schedule=(1, 2))
    await _write(conn, writer, [poisoned, notice("user_p", 1), notice("user_p", 2)])
    await _wait_for(lambda: len(receiver.arrivals) == 1, 10, "the first attempt")
    await _write(conn, writer, [notice("user_q", n) for n in range(3)])  # delivered during the backoff
    await _wait_for(lambda: _all_delivered(conn), 15, "the lane to end")

    assert receiver.unverified == []
    attempts = [a for a in receiver.of("user_p") if a.webhook_id == poisoned.webhook_id]
    assert len(attempts) == 3
    gaps = [b.at - a.at for a, b in zip(attempts, attempts[1:])]
    assert gaps[0] >= 0.9 and gaps[1] >= 1.9, gaps
    assert [a.n for a in receiver.of("user_p")] == [0, 0, 0, 1, 2]
    assert [a.n for a in receiver.of("user_q")] == [0, 1, 2]
    assert max(a.at for a in receiver.of("user_q")) < attempts[1].at  # user_q did not wait for user_p
    rows = {r["webhook_id"]: r for r in await _deliveries(conn)}
    failed = rows[poisoned.webhook_id]
    assert (failed["status"], failed["attempts"], failed["last_status"], failed["last_error"]) == ("failed", 3, 500, "HTTP 500")
    assert failed["failed_at"] is not None and failed["delivered_at"] is None
    assert sorted(r["status"] for r in rows.values()) == ["delivered"] * 5 + ["failed"]
    assert [e["attempt"] for e in dispatcher.events("notification_retry_scheduled")] == [1, 2]
    assert [(e["webhook_id"], e["attempt"]) for e in dispatcher.events("notification_failed")] == [(poisoned.webhook_id, 3)]


async def test_two_dispatchers_at_once_deliver_each_lane_in_order_one_at_a_time(conn, settings, receivers, dispatchers):
    """Both claim from the same lanes, woken by the same writes: each notification arrives
    once, each user's in order, and never two of one user's at the receiver at once."""
    receiver = receivers()
    receiver.delay_s = 0.005
    writer = with_endpoints(settings, receiver.endpoint())
    pair = [dispatchers(receiver.endpoint(), concurrency=3) for _ in range(2)]
    await _wait_for(lambda: _listening(conn, 2), 15, "the dispatchers to LISTEN")
    users = [f"user_{n}" for n in range(10)]
    rng = random.Random(20)
    for n in range(8):  # eight writes, each a notification for every user, in shuffled order
        await _write(conn, writer, [notice(u, n) for u in rng.sample(users, len(users))])
        await asyncio.sleep(0.02)
    await _wait_for(lambda: _all_delivered(conn), 30, "every notification to be delivered")
    for dispatcher in pair:
        assert dispatcher.stop() == 0

    _in_order_once(receiver, users, 8)
    assert receiver.max_per_user == 1
    shares = [len(d.events("notification_delivered")) for d in pair]
    print(f"\ndeliveries by dispatcher: {shares}")
    assert sum(shares) == 80 and min(shares) > 0


async def test_deliveries_go_only_to_the_endpoints_that_took_them(conn, settings, receivers, dispatchers):
    """An endpoint gets the types its filter took when the notification was written (a
    delivery row each); an endpoint that is no longer configured keeps its rows pending."""
    lows, everything = receivers(), receivers()
    gone = Receiver()  # configured when the notifications were written, not in the dispatcher
    endpoints = [lows.endpoint("lows", ["credits.low"]), everything.endpoint("all"), gone.endpoint("gone")]
    writer = with_endpoints(settings, *endpoints)
    dispatchers(*endpoints[:2])
    await _write(conn, writer, [notice("user_f", 0, "credits.low"), notice("user_f", 1, "credits.granted"),
                                notice(None, 0, "usage.rejected")])
    await _wait_for(lambda: len(lows.arrivals) == 1 and len(everything.arrivals) == 3, 10, "the deliveries")
    await asyncio.sleep(0.5)  # a few more turns of the dispatcher's loop

    assert [a.type for a in lows.arrivals] == ["credits.low"]
    assert sorted(a.type for a in everything.arrivals) == ["credits.granted", "credits.low", "usage.rejected"]
    assert lows.unverified == everything.unverified == []
    assert [r["type"] for r in await _deliveries(conn, "lows")] == ["credits.low"]
    assert {(r["status"], r["attempts"], r["in_flight"]) for r in await _deliveries(conn, "gone")} == {("pending", 0, False)}
    assert len(await _deliveries(conn, "gone")) == 3
