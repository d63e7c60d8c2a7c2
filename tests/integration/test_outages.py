"""Servers going away: the worker backs off, keeps its messages, and catches up."""

from __future__ import annotations

import threading
import time

import redis
from pydantic import SecretStr

from tests.integration.helpers import balance, count, make_user, usage
from worker import db
from worker.broker import build_broker
from worker.embedded import EmbeddedPostgres
from worker.migrate import migrate
from worker.publisher import Publisher
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
