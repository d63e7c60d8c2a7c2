"""Durable waiting through the real worker: events that cannot apply yet wait in PostgreSQL,
never in an expiring Redis key, and are released exactly once by what they wait for."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
import redis

from tests.integration.family_helpers import billing, object_created, plan, user_created
from tests.integration.helpers import T0, balance, make_user, refund, settle, usage, waiting_rows
from worker import clock, db
from worker.publisher import Publisher
from worker.repo.reconcile import find_balance_drift
from worker.waiting import Releaser

QUEUES = ("usage", "users", "billing", "storage")


@pytest.fixture(autouse=True)
def _real_clock():
    yield
    clock.reset()


def _values(client: redis.Redis, key: bytes) -> list[bytes]:
    kind = client.type(key)
    if kind == b"string":
        return [client.get(key) or b""]
    if kind == b"hash":
        return [*client.hkeys(key), *client.hvals(key)]
    if kind == b"list":
        return client.lrange(key, 0, -1)
    if kind == b"set":
        return list(client.smembers(key))
    if kind == b"zset":
        return client.zrange(key, 0, -1)
    return []


def redis_keys_with_a_ttl_holding(settings, needles: list[str]) -> list[str]:
    """Keys of the test's namespace that expire and hold any of these strings (their values
    read by type: DUMP output is compressed)."""
    client = redis.Redis.from_url(settings.require_redis_url())
    found = []
    for key in client.scan_iter(f"{settings.redis_namespace}*"):
        if client.ttl(key) < 0:  # -1: no expiry (-2: gone meanwhile)
            continue
        if any(n.encode() in value for value in _values(client, key) for n in needles):
            found.append(key.decode())
    return found


def test_the_ttl_check_finds_an_expiring_key_holding_an_event(settings) -> None:
    client = redis.Redis.from_url(settings.require_redis_url())
    message = '{"args": [[{"id": "late-use", "clerkUserId": "user_late"}]]}' * 20  # compressible
    hash_key, string_key = f"{settings.redis_namespace}:probe.h", f"{settings.redis_namespace}:probe.s"
    try:
        client.hset(hash_key, "m1", message)
        client.set(string_key, message)
        assert redis_keys_with_a_ttl_holding(settings, ["late-use"]) == []  # no TTL yet
        client.expire(hash_key, 3600)
        client.expire(string_key, 3600)
        assert sorted(redis_keys_with_a_ttl_holding(settings, ["late-use"])) == sorted([hash_key, string_key])
    finally:
        client.delete(hash_key, string_key)


def dead_letter_count(settings) -> int:
    client = redis.Redis.from_url(settings.require_redis_url())
    return sum(client.zcard(f"{settings.redis_namespace}:{q}.XQ") for q in QUEUES)


async def test_a_user_created_twelve_hours_late_releases_its_usage_refund_payment_and_upload_once_in_order(
    conn, broker, worker, settings
) -> None:
    await plan(conn, "plan_pro", 500)
    clerk = "user_late"
    at = lambda hours: (T0 + timedelta(hours=hours)).isoformat()  # noqa: E731
    early = [
        usage(clerk, id="late-use", credits=30, at=T0),
        refund(clerk, of="late-use", id="late-refund", credits=10),
        {**billing("PAYMENT_RECEIVED", clerk=clerk, payment="pay_late", t=60), "id": "evt_late&1"},
        object_created("obj_late", clerk, size=321, t=120),
    ]
    publisher = Publisher(broker)
    publisher.publish_many(early)
    await settle(worker, conn)

    waiting = await waiting_rows(conn)
    assert {(r["event"]["id"], r["queue"], r["reason"], r["waits_for"]) for r in waiting} == {
        ("late-use", "usage", "unknown_user", f"user:{clerk}"),
        ("late-refund", "usage", "unknown_user", f"user:{clerk}"),
        ("evt_late&1", "billing", "unknown_user", f"user:{clerk}"),
        ("obj_late", "storage", "unknown_user", f"user:{clerk}"),
    }
    ids = [e["id"] for e in early]
    assert redis_keys_with_a_ttl_holding(settings, ids) == []
    assert dead_letter_count(settings) == 0

    # Twelve hours pass (the worker's clock, and the events' own times): nothing expires.
    clock.advance(timedelta(hours=12))
    await settle(worker, conn)
    assert len(await waiting_rows(conn)) == 4
    assert await conn.fetchval("SELECT count(*) FROM worker.event_log") == 0

    publisher.publish({**user_created(clerk), "updatedAt": at(12)})
    await settle(worker, conn)

    assert await waiting_rows(conn) == []
    states = {r["event"]["id"]: (r["state"], r["times_released"]) for r in await waiting_rows(conn, None)}
    assert states == {i: ("applied", 1) for i in ids}
    assert await balance(conn, clerk) == 100 - 30 + 10 + 500
    used = await conn.fetch(
        'SELECT id, "creditsUsed" FROM "UsageHistory" ORDER BY "timestamp", id'
    )
    assert [(r["id"], r["creditsUsed"]) for r in used] == [("late-use", 30), ("late-refund", -10)]
    assert await conn.fetchval('SELECT size FROM "StorageObject" WHERE id = $1', "obj_late") == 321
    assert await conn.fetchval("SELECT count(*) FROM worker.event_log") == 4 + 1  # and the user.created
    assert dead_letter_count(settings) == 0
    assert redis_keys_with_a_ttl_holding(settings, ids) == []
    assert await find_balance_drift(conn) == []

    # the same events again (a provider retry, a replay): duplicates, nothing moves
    publisher.publish_many(early)
    await settle(worker, conn)
    assert await balance(conn, clerk) == 580


async def test_a_new_operation_type_added_while_the_worker_runs_releases_its_usage_and_refund(
    conn, broker, worker
) -> None:
    await make_user(conn, "user_v", credits=50)
    publisher = Publisher(broker)
    publisher.publish_many([
        usage("user_v", id="video-1", credits=8, op="VIDEO_GENERATION"),
        refund("user_v", of="video-1", id="video-1-r", credits=3),
    ])  # fmt: skip
    await settle(worker, conn)
    assert {(r["event_id"], r["reason"]) for r in await waiting_rows(conn)} == {
        ("video-1", "unknown_operation_type"), ("video-1-r", "refund_before_usage")}
    assert await balance(conn, "user_v") == 50

    await conn.execute("ALTER TYPE \"OperationType\" ADD VALUE 'VIDEO_GENERATION'")
    await settle(worker, conn)  # no restart: the sweep sees the label, then the usage

    assert await waiting_rows(conn) == []
    assert await balance(conn, "user_v") == 45
    op = await conn.fetchval('SELECT "operationType"::text FROM "UsageHistory" WHERE id = $1', "video-1")
    assert op == "VIDEO_GENERATION"


async def test_a_usage_with_no_cost_waits_until_featurecosts_has_the_key(conn, broker, worker) -> None:
    await make_user(conn, "user_c", credits=50)
    await conn.execute("ALTER TYPE \"OperationType\" ADD VALUE 'AI_MUSIC'")
    Publisher(broker).publish(usage("user_c", id="song", credits=None, op="AI_MUSIC"))
    await settle(worker, conn)
    [row] = await waiting_rows(conn)
    assert (row["reason"], row["waits_for"]) == ("no_cost", "cost:AI_MUSIC")

    await conn.execute(
        """INSERT INTO "AdminSettings" (id, "featureCosts", "updatedAt")
           VALUES ('singleton', '{"AI_MUSIC": "12"}', now())"""
    )
    await settle(worker, conn)
    assert await waiting_rows(conn) == []
    assert await balance(conn, "user_c") == 38


async def test_two_releasers_at_once_apply_a_waiting_event_exactly_once(
    conn, broker, worker, settings, database_url
) -> None:
    Publisher(broker).publish_many([usage("user_r", id=f"r-{n}", credits=1) for n in range(50)])
    await settle(worker, conn)
    assert len(await waiting_rows(conn)) == 50
    await make_user(conn, "user_r", credits=100)

    pools = [await db.create_pool(settings, database_url) for _ in range(2)]
    try:
        releasers = [Releaser(pool, broker, settings) for pool in pools]
        sent = await asyncio.gather(*(r.release(keys=["user:user_r"]) for r in releasers), releasers[0].sweep())
    finally:
        for pool in pools:
            await pool.close()
    assert sum(sent) <= 50  # with the worker's own sweep racing them too
    await settle(worker, conn)
    assert await balance(conn, "user_r") == 50
    assert await conn.fetchval("SELECT count(*) FROM worker.journal") == 50
    # SKIP LOCKED, then `released`: no row was sent twice
    assert {r["times_released"] for r in await waiting_rows(conn, None)} == {1}


async def test_a_released_event_whose_message_was_lost_is_sent_again(conn, broker, worker, settings) -> None:
    Publisher(broker).publish(usage("user_lost", id="lost-1", credits=4))
    await settle(worker, conn)
    # The release's message vanishes (a Redis without its append-only file restarted).
    await conn.execute("UPDATE worker.waiting SET state = 'released', released_at = now(), times_released = 1")
    await make_user(conn, "user_lost", credits=10)
    await asyncio.sleep(1)  # five sweeps
    assert await balance(conn, "user_lost") == 10  # not yet: released rows are trusted a while
    clock.advance(timedelta(milliseconds=settings.waiting_resend_ms + 1_000))
    await settle(worker, conn)
    assert await balance(conn, "user_lost") == 6
    [row] = await waiting_rows(conn, None)
    assert (row["state"], row["times_released"]) == ("applied", 2)


async def test_another_payload_under_a_waiting_id_is_refused_and_the_waiting_one_applies(conn, broker, worker) -> None:
    first = usage("user_same", id="same-id", credits=5)
    publisher = Publisher(broker)
    publisher.publish(first)
    await settle(worker, conn)
    publisher.publish({**first, "credits": 70})  # a publisher reusing an id
    await settle(worker, conn)
    [conflict] = await conn.fetch("SELECT * FROM worker.rejection")
    assert (conflict["event_type"], conflict["reason"], conflict["payload"]["credits"]) == (
        "usage.recorded", "idempotency_conflict", 70)
    publisher.publish(object_created("same-id", "user_same"))  # another family, same id
    await settle(worker, conn)
    [row] = await waiting_rows(conn)
    assert (row["queue"], row["event_type"], row["event"]["credits"], row["times_waited"]) == (
        "usage", "usage.recorded", 5, 1)

    publisher.publish(user_created("user_same"))
    await settle(worker, conn)
    assert await balance(conn, "user_same") == 95
