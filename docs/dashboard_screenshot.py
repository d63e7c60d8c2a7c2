"""Make docs/dashboard.png: real servers, a real worker, a few minutes of traffic, real Chromium.

    .venv/bin/python docs/dashboard_screenshot.py [--minutes 4] [--out docs/dashboard.png]

Embedded PostgreSQL and Redis, the app schema, a handful of users; then a stream of usage and
user events for a few minutes (some for users that do not exist, some too expensive, some sent
twice), so every panel has something real to show, and a headless Chromium (Debian's chromium +
chromium-driver) takes the picture of the dashboard served by the ingress app's routes.
"""

from __future__ import annotations

import argparse
import asyncio
import random
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
from worker.ops.recorder import stats_of  # noqa: E402
from worker.publisher import Publisher  # noqa: E402
from worker.repo.users import insert_user_with_balance  # noqa: E402
from worker.runner import InProcessWorker  # noqa: E402
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
            await insert_user_with_balance(conn, clerk, credits=400 if n else 30)
    finally:
        await conn.close()


def traffic(tick: int, rng: random.Random) -> list[dict]:
    now = datetime.now(UTC).isoformat()
    wave = 1 + (tick // 6) % 4  # the load comes and goes
    events: list[dict] = []
    for n in range(rng.randint(2, 6) * wave):
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
    if tick % 9 == 0:
        events.append(events[0])  # a redelivery: a duplicate
    if tick % 15 == 3:
        events.append(
            {
                "type": "usage.recorded",
                "id": f"orphan-{tick}",
                "clerkUserId": f"user_unknown_{tick}",
                "operationType": "AI_TEXT_CHAT",
                "credits": 5,
                "occurredAt": now,
            }
        )
    if tick % 11 == 5:
        events.append(
            {
                "type": "user.created",
                "id": f"signup-{tick}",
                "clerkUserId": f"user_new_{tick}",
                "name": "New User",
                "updatedAt": now,
            }
        )
    return events


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--minutes", type=float, default=4.0)
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
        broker = build_broker(settings)
        worker = stack.enter_context(InProcessWorker(broker, threads=4))
        publisher = Publisher(broker, batch_size=8)
        deadline = time.monotonic() + args.minutes * 60
        tick = 0
        while time.monotonic() < deadline:
            publisher.publish_many(traffic(tick, rng))
            tick += 1
            time.sleep(1)
        worker.drain()
        stats = stats_of(broker)
        assert stats is not None
        stats.flush()

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
