"""A usage message is acknowledged after its commit, without a worker thread waiting for it
(worker/settle.py): real worker, real Redis, real PostgreSQL."""

from __future__ import annotations

import asyncio

import redis
from dramatiq import Message

from tests.integration.family_helpers import user_created
from tests.integration.helpers import balance, held_balance, make_user, usage
from worker.publisher import Publisher
from worker.repo.reconcile import find_balance_drift
from worker.runner import InProcessWorker


def stored_usage_events(settings) -> set[str]:
    """Ids of the events of every usage message Redis still holds (queued or unacknowledged)."""
    client = redis.Redis.from_url(settings.require_redis_url())
    stored = client.hvals(f"{settings.redis_namespace}:usage.msgs")
    return {event["id"] for data in stored for event in Message.decode(data).args[0]}


async def wait_for(predicate, seconds: float = 10) -> bool:
    for _ in range(int(seconds / 0.05)):
        if await predicate():
            return True
        await asyncio.sleep(0.05)
    return False


async def test_a_usage_message_waiting_for_its_commit_holds_no_worker_thread(conn, database_url, settings, broker):
    settings.lock_wait_ms = 20_000  # the held balance is waited for, not sent back
    await make_user(conn, "held", credits=100)
    publisher = Publisher(broker)
    async with held_balance(database_url, "held") as held:
        with InProcessWorker(broker, threads=1) as worker:  # one thread for every queue
            publisher.publish(usage("held", id="waits", credits=3))
            await asyncio.sleep(0.3)  # fetched, and its transaction waits for the row
            publisher.publish(user_created("newcomer", t=0))
            # the only worker thread is free: another queue's message is applied meanwhile …
            assert await wait_for(lambda: conn.fetchval('SELECT count(*) FROM "User" WHERE "clerkId" = $1', "newcomer"))
            # … while the usage message, not committed, is not acknowledged either
            assert await balance(conn, "held") == 100
            assert stored_usage_events(settings) == {"waits"}
            await held.rollback()
            worker.drain()

    assert await balance(conn, "held") == 97
    assert stored_usage_events(settings) == set()  # acknowledged once committed
    assert await find_balance_drift(conn) == []


async def test_a_stopping_worker_commits_and_acknowledges_what_it_took_first(conn, database_url, settings, broker):
    settings.lock_wait_ms = 20_000
    await make_user(conn, "held", credits=100)
    await make_user(conn, "free", credits=100)
    publisher = Publisher(broker)
    async with held_balance(database_url, "held") as held:
        worker = InProcessWorker(broker, threads=2).start()
        # one after the other: published together, "waits" could form a group of its own and hold
        # the process's one transaction in flight (waiting for "held") before "flows" arrived
        publisher.publish(usage("free", id="flows", credits=1))
        assert await wait_for(lambda: _applied(conn, "flows"))
        publisher.publish(usage("held", id="waits", credits=3))
        assert await wait_for(lambda: _waiting_for_a_lock(conn))
        stopping = asyncio.create_task(asyncio.to_thread(worker.stop))  # while "waits" is in flight
        await asyncio.sleep(0.5)
        assert not stopping.done()  # the stop waits for the transaction it started …
        await held.rollback()
        await stopping

    # … which commits, and its message is acknowledged before the worker is gone
    assert await balance(conn, "held") == 97
    assert stored_usage_events(settings) == set()
    assert await find_balance_drift(conn) == []


async def _waiting_for_a_lock(conn) -> bool:
    return await conn.fetchval(
        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()"
    ) > 0


async def _applied(conn, event_id: str) -> bool:
    return await conn.fetchval("SELECT count(*) FROM worker.event_log WHERE event_id = $1", event_id) == 1
