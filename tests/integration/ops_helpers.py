"""What the ops tests share: a dead letter and a waiting event made the real way, stats flushed,
the web app served."""

from __future__ import annotations

import base64
import shutil
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import asyncpg
import redis
import uvicorn

from tests.integration.helpers import held_balance, make_user, usage
from worker.embedded import free_port
from worker.ops.dlq import DeadLetters
from worker.ops.recorder import stats_of
from worker.ops.web import create_app
from worker.publisher import Publisher
from worker.runner import InProcessWorker
from worker.settings import Settings


def dead_letters(settings: Settings) -> DeadLetters:
    return DeadLetters(redis.Redis.from_url(settings.require_redis_url()), settings.redis_namespace)


async def make_balance_busy_dead_letter(
    conn: asyncpg.Connection, database_url: str, broker, worker: InProcessWorker,
    settings: Settings, clerk: str, event_id: str, *, credits: int = 7, balance: int = 100,
) -> dict[str, Any]:
    """A dead letter as they happen now: a usage for a user (made here with `balance` credits)
    whose "CreditBalance" row another session holds, as the app would in a long transaction.
    Every attempt gives up on the row after `lock_wait_ms` (100 ms here), retries run out (the
    test settings allow 2, 50-200 ms apart) and the message is dead-lettered with reason
    `balance_busy`. The hold ends before this returns: a requeue then applies the event."""
    settings.lock_wait_ms = 100  # the worker reads its settings object at each transaction
    exists = 'SELECT 1 FROM "CreditBalance" WHERE "clerkUserId" = $1'
    if await conn.fetchval(exists, clerk) is None:
        await make_user(conn, clerk, credits=balance)
    event = usage(clerk, id=event_id, credits=credits)
    async with held_balance(database_url, clerk):
        Publisher(broker).publish(event)
        worker.drain()
    return event


def make_waiting_event(
    broker, worker: InProcessWorker, clerk: str, event_id: str
) -> dict[str, Any]:
    """A usage for a user that does not exist: it waits in worker.waiting (unknown_user), and
    its message is acknowledged."""
    event = usage(clerk, id=event_id, credits=3)
    Publisher(broker).publish(event)
    worker.drain()
    return event


def flush_stats(broker) -> None:
    """Push the worker's in-memory counters to Redis now (the flusher thread does it every second)."""
    stats = stats_of(broker)
    assert stats is not None and stats.flush()


def wait_until(predicate, what: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"still waiting for {what}")
        time.sleep(0.05)


@contextmanager
def serve(settings: Settings) -> Iterator[str]:
    """The dashboard app on a loopback port (uvicorn in a thread); yields its base URL."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(settings), host="127.0.0.1", port=port, log_level="warning", access_log=False
        )
    )
    thread = threading.Thread(target=server.run, name="ops-web", daemon=True)
    thread.start()
    wait_until(lambda: server.started, "the web server to start")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


def find_chromium() -> tuple[str, str] | None:
    """(browser, chromedriver) from the system (Debian: chromium, chromium-driver), or None."""
    browser = next(
        (p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None
    )
    driver = shutil.which("chromedriver")
    return (browser, driver) if browser and driver else None


def chromium_driver(browser: str, driver: str, *, width: int = 1440, height: int = 1000):
    """A headless Chromium driven by Selenium through the system chromedriver (no downloads)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--hide-scrollbars",
        f"--window-size={width},{height}",
    ):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(executable_path=driver), options=options)


def full_page_screenshot(driver, path: Path) -> None:
    """The whole page, beyond the window (Chromium's DevTools screenshot), from the top."""
    driver.execute_script("window.scrollTo(0, 0)")
    size = driver.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]
    clip = {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1}
    shot = driver.execute_cdp_cmd(
        "Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True, "clip": clip}
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(base64.b64decode(shot["data"]))
