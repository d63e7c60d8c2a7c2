"""Usage events through the real worker: Redis -> dramatiq -> asyncpg -> PostgreSQL."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from tests.integration.helpers import (
    balance,
    count,
    held_balance,
    make_user,
    refund,
    rejections,
    settle,
    usage,
    usage_rows,
    waiting_rows,
)
from worker.publisher import Publisher
from worker.repo.reconcile import find_balance_drift
from worker.runner import InProcessWorker


async def test_same_event_delivered_ten_times_is_one_row_and_one_debit(conn, broker, worker) -> None:
    await make_user(conn, "user_a", credits=100)
    event = usage("user_a", id="evt-once", credits=7)
    publisher = Publisher(broker)
    for _ in range(10):
        publisher.publish(event)
    publisher.publish_many([event] * 5)  # and duplicates inside one batch message
    worker.drain()

    assert await balance(conn, "user_a") == 93
    rows = await usage_rows(conn, "user_a")
    assert [(r["id"], r["creditsUsed"]) for r in rows] == [("evt-once", 7)]
    assert await count(conn, "worker.journal") == 1
    assert await find_balance_drift(conn) == []


async def test_events_with_python_datetimes_are_published_and_applied(conn, broker, worker) -> None:
    from datetime import UTC, datetime

    await make_user(conn, "user_dt", credits=10)
    at = datetime(2026, 11, 2, 8, 15, 30, 123000, tzinfo=UTC)
    Publisher(broker).publish({**usage("user_dt", id="dt-1", credits=4), "occurredAt": at})
    worker.drain()

    [row] = await usage_rows(conn, "user_dt")
    assert (row["id"], row["creditsUsed"], row["timestamp"]) == ("dt-1", 4, at.replace(tzinfo=None))


async def test_refund_before_its_usage_is_applied_once_the_usage_arrives(conn, broker, worker) -> None:
    await make_user(conn, "user_b", credits=50)
    publisher = Publisher(broker)
    publisher.publish(refund("user_b", of="late-usage", id="early-refund"))
    worker.drain()
    [waiting] = await waiting_rows(conn)
    assert (waiting["event_id"], waiting["reason"], waiting["waits_for"]) == (
        "early-refund", "refund_before_usage", "usage:late-usage")
    publisher.publish(usage("user_b", id="late-usage", credits=20))
    await settle(worker, conn)

    assert await balance(conn, "user_b") == 50  # debited 20, refunded 20
    assert [r["state"] for r in await waiting_rows(conn, None)] == ["applied"]
    rows = {r["id"]: r["creditsUsed"] for r in await usage_rows(conn, "user_b")}
    assert rows == {"late-usage": 20, "early-refund": -20}


async def test_bad_payload_is_rejected_with_a_reason_and_never_retried(conn, broker, worker) -> None:
    await make_user(conn, "user_c", credits=10)
    bad = usage("user_c", id="bad-op", op="ai time travel")  # not a label PostgreSQL could hold
    Publisher(broker, validate=False).publish(bad)
    worker.drain()

    assert await balance(conn, "user_c") == 10
    assert await count(conn, '"UsageHistory"') == 0
    [rejection] = await rejections(conn, "bad-op")
    assert rejection["reason"] == "validation_error"
    assert "operationType" in rejection["detail"]


async def test_an_unknown_users_usage_waits_in_postgres_not_in_redis_until_the_user_exists(
    conn, broker, worker, settings
) -> None:
    import redis

    Publisher(broker).publish(usage("user_nobody", id="orphan", credits=7))
    worker.drain()

    assert await count(conn, '"UsageHistory"') == 0
    assert await count(conn, "worker.event_log") == 0  # nothing marked seen
    [waiting] = await waiting_rows(conn)
    assert (waiting["event_id"], waiting["queue"], waiting["reason"], waiting["waits_for"]) == (
        "orphan", "usage", "unknown_user", "user:user_nobody")
    client = redis.Redis.from_url(settings.require_redis_url())
    assert client.zcard(f"{settings.redis_namespace}:usage.XQ") == 0  # acknowledged, not dead-lettered

    await make_user(conn, "user_nobody", credits=10)
    await settle(worker, conn)  # the sweep sees the balance and releases it
    assert await balance(conn, "user_nobody") == 3
    assert [r["state"] for r in await waiting_rows(conn, None)] == ["applied"]


async def test_reconcile_finds_a_corrupted_balance(conn: asyncpg.Connection, broker, worker) -> None:
    await make_user(conn, "user_d", credits=100)
    Publisher(broker).publish_many([usage("user_d", credits=3) for _ in range(5)])
    worker.drain()
    assert await find_balance_drift(conn) == []

    await conn.execute('UPDATE "CreditBalance" SET "creditsRemaining" = 999 WHERE "clerkUserId" = $1', "user_d")
    [drift] = await find_balance_drift(conn)
    assert (drift.clerk_user_id, drift.expected, drift.actual) == ("user_d", 85, 999)


async def test_eight_threads_and_a_thousand_events_for_one_user_end_exact(conn, broker) -> None:
    await make_user(conn, "hot_user", credits=1000)
    events = [usage("hot_user", id=f"hot-{n}", credits=1) for n in range(1000)]
    publisher = Publisher(broker)
    for event in events:  # single-event messages: the most contention
        publisher.publish(event)
    publisher.publish_many(events[:300])  # and redeliveries of some of them, batched
    with InProcessWorker(broker, threads=8) as eight:
        eight.drain()

    assert await balance(conn, "hot_user") == 0
    assert await count(conn, '"UsageHistory"') == 1000
    assert await count(conn, "worker.rejection") == 0
    assert await find_balance_drift(conn) == []


@pytest.fixture
def short_lock_wait(settings):
    """The worker built after this fixture gives up on a held balance after 100 ms, and retries
    long enough to outlast the hold."""
    settings.lock_wait_ms = 100
    settings.max_retries = 100
    return settings


async def test_a_balance_held_by_another_session_delays_its_own_events_only(
    conn, database_url, short_lock_wait, broker
) -> None:
    await make_user(conn, "held", credits=100)
    for n in range(4):
        await make_user(conn, f"free{n}", credits=100)
    publisher = Publisher(broker)
    async with held_balance(database_url, "held") as held:
        with InProcessWorker(broker, threads=4) as worker:
            publisher.publish(usage("held", id="h1", credits=1))
            publisher.publish_many([usage("held", id="h2", credits=2)] + [usage(f"free{n % 4}", credits=1) for n in range(40)])
            for n in range(40):  # single-event messages that come after the held user's
                publisher.publish(usage(f"free{n % 4}", credits=1))
            # every other user's event commits while the row is still held (with no limit on the
            # lock wait, the worker's one usage transaction in flight waited for it instead)
            for _ in range(400):
                if await count(conn, '"UsageHistory"') == 80:
                    break
                await asyncio.sleep(0.05)
            assert [await balance(conn, f"free{n}") for n in range(4)] == [80] * 4
            assert await balance(conn, "held") == 100
            await held.rollback()
            worker.drain()

    assert await balance(conn, "held") == 97  # h1 and h2, once each, after the row was let go
    assert await count(conn, '"UsageHistory"') == 82
    assert await count(conn, "worker.rejection") == 0
    assert await find_balance_drift(conn) == []
