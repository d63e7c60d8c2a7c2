"""Servers going away: the worker backs off, keeps its messages, and catches up."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import redis
from pydantic import SecretStr

from tests.integration.helpers import balance, count, drain_what_the_killed_held, make_user, usage
from worker import db
from worker.broker import build_broker
from worker.embedded import EmbeddedPostgres
from worker.migrate import migrate
from worker.publisher import Publisher
from worker.repo.reconcile import find_balance_drift
from worker.runner import InProcessWorker


async def test_postgres_down_then_back_loses_nothing_and_dead_letters_nothing(settings):
    with EmbeddedPostgres() as pg:
        conn = await db.connect(pg.url)
        await migrate(conn, with_app_schema=True)
        await make_user(conn, "u", credits=1000)
        await conn.close()
        settings = settings.model_copy(update={
            "database_url": SecretStr(pg.url), "max_retries": 1, "infra_max_retries": 1000,
            "min_backoff_ms": 100, "max_backoff_ms": 500,
        })  # fmt: skip
        broker = build_broker(settings)
        with InProcessWorker(broker, threads=4) as worker:
            pg.stop()
            Publisher(broker).publish_many([usage("u", id=f"o{n}", credits=1) for n in range(50)])
            for n in range(50, 60):
                Publisher(broker).publish(usage("u", id=f"o{n}", credits=1))
            time.sleep(3)  # many retries happen meanwhile; a logical error would be dead already
            threading.Thread(target=pg.start).start()
            worker.drain(timeout_ms=120_000)

        conn = await db.connect(pg.url)
        assert await balance(conn, "u") == 940
        assert await count(conn, '"UsageHistory"') == 60
        await conn.close()
        client = redis.Redis.from_url(settings.require_redis_url())
        assert client.zcard(f"{settings.redis_namespace}:usage.XQ") == 0


async def _worker_mid_stream(conn, database_url, redis_url, settings, broker) -> subprocess.Popen:
    """A real worker process (dramatiq's CLI) busy with 20,000 one-credit events of user "u"."""
    await make_user(conn, "u", credits=1_000_000)
    # one event per message, so that the stream takes seconds and a signal lands in the middle of it
    Publisher(broker, batch_size=1).publish_many([usage("u", id=f"t{n}", credits=1) for n in range(20_000)])
    env = {**os.environ, "DATABASE_URL": database_url, "REDIS_URL": redis_url,
           "PEDRO_REDIS_NAMESPACE": settings.redis_namespace}  # fmt: skip
    proc = subprocess.Popen([sys.executable, "-m", "dramatiq", "worker.app", "--processes", "1", "--threads", "4"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.monotonic() + 60
    while await count(conn, "worker.journal") < 100 and time.monotonic() < deadline:
        time.sleep(0.01)
    return proc


async def test_sigterm_mid_stream_leaves_no_half_written_batch(conn, database_url, redis_url, settings, broker):
    proc = await _worker_mid_stream(conn, database_url, redis_url, settings, broker)
    proc.send_signal(signal.SIGTERM)  # while batches are in flight
    assert proc.wait(60) == 0

    applied = await count(conn, "worker.journal")
    print(f"\n{applied} of 20,000 events applied when the worker stopped")
    assert 0 < applied < 20_000  # stopped mid-stream …
    # … and every batch either committed whole or not at all
    assert await count(conn, '"UsageHistory"') == applied == await count(conn, "worker.event_log")
    assert await balance(conn, "u") == 1_000_000 - applied
    assert await find_balance_drift(conn) == []

    with InProcessWorker(broker, threads=4) as worker:  # the rest is still queued
        worker.drain()
    assert await count(conn, "worker.journal") == 20_000
    assert await balance(conn, "u") == 980_000


async def test_a_second_sigterm_kills_the_worker_at_once_and_loses_nothing(conn, database_url, redis_url, settings, broker):
    """dramatiq takes a second SIGTERM (or Ctrl-C) as "kill now": the worker exits instead of
    hanging on its event loop thread, and what it held is redelivered, like after a SIGKILL."""
    proc = await _worker_mid_stream(conn, database_url, redis_url, settings, broker)
    proc.send_signal(signal.SIGTERM)
    time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(30)  # it used to hang here for good
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise AssertionError("the worker did not exit after a second SIGTERM") from None

    applied = await count(conn, "worker.journal")
    assert await count(conn, '"UsageHistory"') == applied == await count(conn, "worker.event_log")
    assert await balance(conn, "u") == 1_000_000 - applied and await find_balance_drift(conn) == []
    # the killed worker's unacknowledged messages go back once its heartbeat is stale
    drain_what_the_killed_held(settings)
    assert await count(conn, "worker.journal") == 20_000
    assert await balance(conn, "u") == 980_000


def test_a_retry_enqueued_while_redis_is_down_is_stored_before_the_original_is_acknowledged(settings):
    from dramatiq.broker import MessageProxy

    from worker.broker import DurableRetries
    from worker.embedded import EmbeddedRedis
    from worker.errors import RetryLater
    from worker.publisher import build_message

    with EmbeddedRedis(appendfsync="always") as rd:
        settings = settings.model_copy(update={"redis_url": SecretStr(rd.url), "min_backoff_ms": 100})
        broker = build_broker(settings, worker=False)
        [retries] = [m for m in broker.middleware if isinstance(m, DurableRetries)]
        client = redis.Redis.from_url(rd.url)
        delayed = f"{settings.redis_namespace}:billing.DQ.msgs"

        original = broker.enqueue(build_message("billing", [{"type": "billing.event", "id": "waits"}]))
        rd.stop(kill=True)  # Redis dies between the message's outcome and its retry
        comes_back = threading.Timer(1.5, rd.start)
        comes_back.start()
        try:
            retries.after_process_message(broker, MessageProxy(original), exception=RetryLater(["unknown_user"]))
        finally:
            comes_back.join()  # so that the server is stopped with the block, whatever happened

        # returned only once the copy was stored: acknowledging the original now loses nothing
        assert client.hlen(delayed) == 1
        broker.close()
