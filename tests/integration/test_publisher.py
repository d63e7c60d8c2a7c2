"""The publisher's pipelined enqueue: one round trip per publish, and nothing lost when Redis
has forgotten the broker's script (a restart, a failover, SCRIPT FLUSH)."""

from __future__ import annotations

import redis

from tests.integration.helpers import balance, count, make_user, usage
from worker.publisher import Publisher


def test_a_publish_is_one_round_trip_without_asking_for_the_script(broker, settings):
    client = redis.Redis.from_url(settings.require_redis_url())
    Publisher(broker).publish(usage("u", id="warm-up"))  # the server has the script from now on
    before = client.info("commandstats")
    Publisher(broker).publish_many([usage("u", id=f"p{n}") for n in range(3)])
    after = client.info("commandstats")
    calls = {name: after[name]["calls"] - before.get(name, {"calls": 0})["calls"] for name in after}
    assert calls.get("cmdstat_script|exists", 0) == 0 and calls.get("cmdstat_script", 0) == 0
    assert calls["cmdstat_evalsha"] == 1


async def test_events_published_after_script_flush_are_all_enqueued_and_applied_once(conn, broker, worker, settings):
    await make_user(conn, "u", credits=100)
    publisher = Publisher(broker, batch_size=2)
    publisher.publish_many([usage("u", id=f"f{n}", credits=1) for n in range(4)])
    redis.Redis.from_url(settings.require_redis_url()).script_flush()  # what a restart or a failover does
    publisher.publish_many([usage("u", id=f"f{n}", credits=1) for n in range(4, 10)])
    worker.drain()
    assert await count(conn, '"UsageHistory"') == 10
    assert await balance(conn, "u") == 90
