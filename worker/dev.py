"""`pedro-worker dev`: everything on one machine with nothing but Python.

Starts a throwaway PostgreSQL and Redis (unless DATABASE_URL / REDIS_URL are set), creates the
app schema and the worker's tables, seeds a few demo users and publishes a short stream of
usage events so the ledger visibly moves, then runs the worker until Ctrl-C. On exit every
embedded server is stopped and its files removed.
"""

from __future__ import annotations

import asyncio
import signal
import threading
import time
from contextlib import ExitStack
from datetime import UTC, datetime

from pydantic import SecretStr

from . import db
from .broker import build_broker
from .embedded import EmbeddedPostgres, EmbeddedRedis
from .ingress.server import curl_example, start_dev_ingress
from .logs import get_logger
from .migrate import migrate
from .ops.web import dev_dashboard_settings
from .publisher import Publisher
from .repo.users import get_balances, insert_user_with_balance
from .runner import InProcessWorker
from .settings import Settings, mask_url

log = get_logger("pedro.dev")

DEMO_USERS = ("user_demo_alice", "user_demo_bob", "user_demo_carol")


def demo_events(now: datetime | None = None) -> list[dict]:
    now = now or datetime.now(UTC)
    stamp = now.strftime("%Y%m%dT%H%M%S")
    events: list[dict] = []
    for n in range(12):
        events.append({
            "type": "usage.recorded", "id": f"demo-{stamp}-{n}", "clerkUserId": DEMO_USERS[n % 3],
            "operationType": "AI_IMAGE_GENERATION" if n % 4 == 0 else "AI_TEXT_CHAT",
            "details": {"model": "demo"}, "occurredAt": now.isoformat(),
        })  # fmt: skip
    events.append({"type": "usage.refunded", "id": f"demo-{stamp}-refund", "clerkUserId": DEMO_USERS[0],
                   "refundOf": f"demo-{stamp}-0", "occurredAt": now.isoformat()})  # fmt: skip
    events.append({"type": "credits.adjusted", "id": f"demo-{stamp}-grant", "clerkUserId": DEMO_USERS[1],
                   "delta": 50, "reason": "demo grant"})  # fmt: skip
    return events


async def _prepare(database_url: str, demo: bool, starter_credits: int) -> None:
    conn = await db.connect(database_url)
    try:
        report = await migrate(conn, with_app_schema=True)
        log.info("schema_ready", app_schema_created=report.app_schema_created, applied=report.applied)
        if demo:
            for clerk_id in DEMO_USERS:
                await insert_user_with_balance(conn, clerk_id, name=clerk_id.rsplit("_", 1)[-1].title(),
                                               credits=starter_credits)  # fmt: skip
    finally:
        await conn.close()


async def _balances(database_url: str) -> dict[str, int]:
    conn = await db.connect(database_url)
    try:
        return await get_balances(conn, list(DEMO_USERS))
    finally:
        await conn.close()


def run_dev(settings: Settings, *, demo: bool = True) -> int:
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with ExitStack() as stack:
        if settings.database_url is None:
            pg = stack.enter_context(EmbeddedPostgres())
            settings = settings.model_copy(update={"database_url": SecretStr(pg.url)})
        if settings.redis_url is None and not settings.redis_sentinels:
            rd = stack.enter_context(EmbeddedRedis())
            settings = settings.model_copy(update={"redis_url": SecretStr(rd.url)})
        database_url = settings.require_database_url()
        redis_url = settings.require_redis_url()
        asyncio.run(_prepare(database_url, demo, settings.starter_credits))

        broker = build_broker(settings)
        worker = stack.enter_context(InProcessWorker(broker, threads=settings.worker_threads))
        redis_shown = (f"sentinels {','.join(settings.redis_sentinels)} (master {settings.redis_sentinel_master})"
                       if settings.redis_sentinels else mask_url(redis_url))  # fmt: skip
        print(f"\npedro-worker dev\n  postgres  {mask_url(database_url)}\n  redis     {redis_shown}")
        if demo:
            before = asyncio.run(_balances(database_url))
            Publisher(broker).publish_many(demo_events())
            worker.drain(timeout_ms=30_000)
            after = asyncio.run(_balances(database_url))
            print("  demo      " + ", ".join(f"{u}: {before.get(u)} -> {after.get(u)}" for u in DEMO_USERS))
        ingress_url, token = start_dev_ingress(dev_dashboard_settings(settings), stack)
        print(f"  ingress   {ingress_url}  (POST /v1/events, webhooks; docs/ingress.md)")
        print(f"  dashboard {ingress_url}/ops/  (queues, workers, ledger, waiting, dead letters; /metrics)")
        print(f"  try       {curl_example(ingress_url, token)}")
        if settings.notify_targets:  # notifications are written only when an endpoint is set
            from .notify.dispatch import DispatcherThread

            stack.enter_context(DispatcherThread(settings))
            print(f"  notify    delivering to {', '.join(e.name for e in settings.notify_targets)}")
        try:  # Ctrl-C may come as soon as the line below is out
            print("  worker running; Ctrl-C to stop\n", flush=True)
            while not stop.wait(0.5):
                pass
        except KeyboardInterrupt:
            pass
        print("\nstopping…", flush=True)
        started = time.monotonic()
    log.info("dev_stopped", seconds=round(time.monotonic() - started, 2))
    return 0
