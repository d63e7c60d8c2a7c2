"""Make docs/dashboard.png: real servers, real workers, minutes of traffic, a real Chromium.

    .venv/bin/python docs/dashboard_screenshot.py [--minutes 9] [--out docs/dashboard.png]

Embedded PostgreSQL and Redis, the app schema, a handful of users; then a stream of usage,
storage and user events (some for users that never come, some refunds of usages that never
come, a low balance running out, some events sent twice) applied by `pedro-worker worker` (two
processes); then a headless Chromium (Debian's chromium + chromium-driver) takes the picture of
the dashboard, served by the same routes the ingress mounts.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import signal
import subprocess
import sys
import time
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path

from pydantic import SecretStr

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.integration.ops_helpers import (
    chromium_driver,
    find_chromium,
    full_page_screenshot,
    serve,
)  # noqa: E402
from worker import db  # noqa: E402
from worker.broker import build_broker  # noqa: E402
from worker.embedded import EmbeddedPostgres, EmbeddedRedis  # noqa: E402
from worker.migrate import migrate  # noqa: E402
from worker.ops.reconcile import reconcile, store  # noqa: E402
from worker.publisher import Publisher  # noqa: E402
from worker.repo.users import insert_user_with_balance  # noqa: E402
from worker.settings import Settings  # noqa: E402

USERS = [
    f"user_{name}" for name in ("ana", "bruno", "carla", "davi", "elis", "fabio", "gabi", "hugo")
]
TOKEN = "screenshot"


async def prepare(url: str) -> None:
    conn = await db.connect(url)
    try:
        await migrate(conn, with_app_schema=True)
        for n, clerk in enumerate(USERS):
            await insert_user_with_balance(conn, clerk, credits=100_000 if n else 60)
    finally:
        await conn.close()


def traffic(tick: int, rng: random.Random) -> list[dict]:
    now = datetime.now(UTC).isoformat()
    wave = 1 + (tick // 20) % 4  # the load comes and goes
    events: list[dict] = []
    for n in range(rng.randint(3, 8) * wave):
        events.append(
            {
                "type": "usage.recorded",
                "id": f"u-{tick}-{n}",
                "clerkUserId": rng.choice(USERS),
                "operationType": rng.choice(
                    ["AI_TEXT_CHAT", "AI_TEXT_CHAT", "AI_IMAGE_GENERATION"]
                ),
                "details": {"model": "demo"},
                "occurredAt": now,
            }
        )
    if tick % 7 == 0:
        events.append(events[0])  # a redelivery: a duplicate
    if tick % 4 == 0:
        events.append(
            {
                "type": "storage.object_created",
                "id": f"obj-{tick}",
                "clerkUserId": rng.choice(USERS),
                "url": f"https://blob.example/{tick}.png",
                "pathname": f"uploads/{tick}.png",
                "name": f"{tick}.png",
                "contentType": "image/png",
                "size": 1000 + tick,
                "createdAt": now,
            }
        )
    if tick % 13 == 5:
        events.append(
            {
                "type": "user.created",
                "id": f"signup-{tick}",
                "clerkUserId": f"user_new_{tick}",
                "name": "New User",
                "updatedAt": now,
            }
        )
    if tick % 45 == 3:  # a user the worker will never see: waits as unknown_user (Waiting panel)
        events.append(
            {
                "type": "usage.recorded",
                "id": f"orphan-{tick}",
                "clerkUserId": f"user_ghost_{tick}",
                "operationType": "AI_TEXT_CHAT",
                "credits": 5,
                "occurredAt": now,
            }
        )
    if tick % 70 == 30:  # a refund whose usage never comes: waits as refund_before_usage
        events.append(
            {
                "type": "usage.refunded",
                "id": f"refund-{tick}",
                "clerkUserId": USERS[1],
                "refundOf": f"lost-usage-{tick}",
            }
        )
    return events


def start_workers(settings: Settings, stack: ExitStack) -> None:
    """`pedro-worker worker`, two real processes, as production runs it."""
    env = {
        **os.environ,
        "DATABASE_URL": settings.require_database_url(),
        "REDIS_URL": settings.require_redis_url(),
        "PEDRO_REDIS_NAMESPACE": settings.redis_namespace,
        "PEDRO_MAX_RETRIES": str(settings.max_retries),
        "PEDRO_MIN_BACKOFF_MS": str(settings.min_backoff_ms),
        "PEDRO_MAX_BACKOFF_MS": str(settings.max_backoff_ms),
        "PEDRO_LOG_LEVEL": "WARNING",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "worker.cli", "worker", "--processes", "2", "--threads", "2"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )

    def stop() -> None:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)

    stack.callback(stop)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--minutes", type=float, default=9.0)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "dashboard.png")
    args = parser.parse_args()
    found = find_chromium()
    if found is None:
        print("no Chromium: apt-get install chromium chromium-driver", file=sys.stderr)
        return 1
    rng = random.Random(7)
    with ExitStack() as stack:
        pg = stack.enter_context(EmbeddedPostgres())
        rd = stack.enter_context(EmbeddedRedis())
        settings = Settings(
            database_url=SecretStr(pg.url),
            redis_url=SecretStr(rd.url),
            redis_namespace="pedro",
            max_retries=2,
            min_backoff_ms=2000,
            max_backoff_ms=5000,
            ops_token=SecretStr(TOKEN),
            ops_refresh_s=5,
        )
        asyncio.run(prepare(pg.url))
        broker = build_broker(settings, worker=False)
        start_workers(settings, stack)
        publisher = Publisher(broker, batch_size=8)
        deadline = time.monotonic() + args.minutes * 60
        tick = 0
        while time.monotonic() < deadline:
            publisher.publish_many(traffic(tick, rng))
            tick += 1
            time.sleep(1)
        time.sleep(5)  # the last messages, and the workers' last counter flush

        async def check() -> None:
            conn = await db.connect(pg.url)
            try:
                store(broker.client, settings.redis_namespace, await reconcile(conn), "dashboard")
            finally:
                await conn.close()

        asyncio.run(check())
        base = stack.enter_context(serve(settings))
        driver = chromium_driver(*found, width=1440, height=1000)
        stack.callback(driver.quit)
        driver.get(f"{base}/ops/login")
        driver.find_element("id", "token").send_keys(TOKEN)
        driver.find_element("id", "login").click()
        time.sleep(3)  # the first refresh renders everything
        full_page_screenshot(driver, args.out)
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
