"""Small builders and readers shared by integration tests."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from worker import db

from worker.repo.users import insert_user_with_balance

_seq = itertools.count()
T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


def usage(clerk: str, *, id: str | None = None, credits: int | None = 5, op: str = "AI_TEXT_CHAT",
          at: datetime | None = None, **extra: Any) -> dict[str, Any]:  # fmt: skip
    event = {
        "type": "usage.recorded", "id": id or f"use-{next(_seq)}", "clerkUserId": clerk,
        "operationType": op, "occurredAt": (at or T0 + timedelta(seconds=next(_seq))).isoformat(),
        **extra,
    }  # fmt: skip
    if credits is not None:
        event["credits"] = credits
    return event


def refund(clerk: str, of: str, *, id: str | None = None, credits: int | None = None) -> dict[str, Any]:
    event = {"type": "usage.refunded", "id": id or f"ref-{next(_seq)}", "clerkUserId": clerk, "refundOf": of}
    if credits is not None:
        event["credits"] = credits
    return event


def adjust(clerk: str, delta: int, *, id: str | None = None) -> dict[str, Any]:
    return {"type": "credits.adjusted", "id": id or f"adj-{next(_seq)}", "clerkUserId": clerk,
            "delta": delta, "reason": "test"}  # fmt: skip


async def make_user(conn: asyncpg.Connection, clerk: str, credits: int = 100) -> str:
    user_id = await insert_user_with_balance(conn, clerk, credits=credits)
    assert user_id is not None
    return user_id


async def balance(conn: asyncpg.Connection, clerk: str) -> int:
    return await conn.fetchval('SELECT "creditsRemaining" FROM "CreditBalance" WHERE "clerkUserId" = $1', clerk)


async def usage_rows(conn: asyncpg.Connection, clerk: str) -> list[asyncpg.Record]:
    return await conn.fetch(
        'SELECT u.* FROM "UsageHistory" u JOIN "User" us ON us.id = u."userId" '
        'WHERE us."clerkId" = $1 ORDER BY u."timestamp", u.id', clerk,
    )  # fmt: skip


async def rejections(conn: asyncpg.Connection, event_id: str | None = None) -> list[asyncpg.Record]:
    if event_id is None:
        return await conn.fetch("SELECT * FROM worker.rejection ORDER BY id")
    return await conn.fetch("SELECT * FROM worker.rejection WHERE event_id = $1 ORDER BY id", event_id)


async def count(conn: asyncpg.Connection, table: str) -> int:
    return await conn.fetchval(f"SELECT count(*) FROM {table}")


@contextlib.asynccontextmanager
async def held_balance(database_url: str, clerk_user_id: str) -> AsyncIterator[asyncpg.transaction.Transaction]:
    """Another session holding this user's balance row (as the app would in its own
    transaction) until the block ends or the yielded transaction is rolled back."""
    holder = await db.connect(database_url)
    try:
        tx = holder.transaction()
        await tx.start()
        await holder.execute('SELECT 1 FROM "CreditBalance" WHERE "clerkUserId" = $1 FOR UPDATE', clerk_user_id)
        yield tx
    finally:
        await holder.close()


async def settle(worker: Any, conn: asyncpg.Connection, *, timeout_s: float = 30.0) -> None:
    """Drain the queues and let the waiting sweep release what it can, until nothing moves: no
    released event still in flight and the waiting rows unchanged over a few sweeps."""
    deadline = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < deadline:
        worker.drain()
        await asyncio.sleep(0.6)  # three sweeps of the tests' 200 ms
        snapshot = await conn.fetch("SELECT event_id, state, times_waited, times_released FROM worker.waiting ORDER BY 1")
        if snapshot == last and all(r["state"] != "released" for r in snapshot):
            return
        last = snapshot
    raise TimeoutError("waiting events kept moving")


async def waiting_rows(conn: asyncpg.Connection, state: str | None = "waiting") -> list[asyncpg.Record]:
    query = "SELECT * FROM worker.waiting WHERE $1::text IS NULL OR state = $1 ORDER BY first_waited_at, event_id"
    return await conn.fetch(query, state)


def drain_what_the_killed_held(settings: Any) -> None:
    """After SIGKILLed workers: an in-process worker whose broker requeues their unacknowledged
    messages as soon as their heartbeats are stale (500 ms), and drains the queues."""
    from worker.broker import build_broker
    from worker.runner import InProcessWorker

    rescuer = build_broker(settings.model_copy(update={"heartbeat_timeout_ms": 500, "maintenance_chance": 1_000_000}))
    try:
        time.sleep(1)
        with InProcessWorker(rescuer, threads=4) as worker:
            worker.drain()
    finally:
        rescuer.close()
