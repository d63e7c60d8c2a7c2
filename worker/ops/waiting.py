"""Ops on durable waiting (worker/waiting.py): what waits, by reason and age, and what an
operator does about it.

- `overview` / `read_overview`: open waiting events (waiting or released) per reason and queue,
  with the oldest one's age, and the oldest few: what `pedro-worker stats`, `/metrics` and the
  dashboard's Waiting panel show. One cheap read over the partial index of open rows.
- `release`: sends waiting events back to their queues now, through `Releaser.release` (the path
  the sweep takes). A released event that still cannot apply simply waits again.
- `drop`: an operator gives up on waiting events. In one transaction the rows are locked, the
  events' keys are claimed in `worker.event_log` (a later redelivery is a duplicate), a
  rejection `dropped` says who and why, and the rows become `dropped`. Refused as a whole when
  one of them is not waiting (applied, dropped already, decided meanwhile, unknown).

The `pedro-worker waiting …` commands are in `waiting_cli.py`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

import asyncpg

from .. import clock, db
from ..ledger.apply import safe_payload
from ..logs import get_logger, scrub
from ..repo import ledger as ledger_repo
from ..repo import waiting_ops as repo
from ..repo.waiting_ops import OPEN_STATES
from ..settings import Settings
from ..waiting import Releaser
from .text import format_age

log = get_logger("pedro.ops.waiting")

DROPPED = "dropped"  # the rejection reason of a drop
OLDEST_SHOWN = 5  # oldest events on the dashboard
T = TypeVar("T")
READ_TIMEOUT_S = 3.0  # the web process's read: a scrape must not hang on PostgreSQL
MAX_DROP_REASON = 500
MAX_DROPPED_BY = 100


def age_seconds(since: datetime | None, now: datetime) -> int | None:
    return None if since is None else max(int((now - since).total_seconds()), 0)


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def event_summary(row: asyncpg.Record, now: datetime) -> dict[str, Any]:
    """One open waiting event as ops see it in lists (no payload; emails masked)."""
    return {
        "event_id": row["event_id"], "queue": row["queue"], "event_type": row["event_type"],
        "clerk_user_id": None if row["clerk_user_id"] is None else scrub(row["clerk_user_id"]),
        "reason": row["reason"], "waits_for": scrub(row["waits_for"]),
        "detail": None if row["detail"] is None else scrub(row["detail"]), "state": row["state"],
        "first_waited_at": _iso(row["first_waited_at"]), "released_at": _iso(row["released_at"]),
        "age_s": age_seconds(row["first_waited_at"], now), "times_waited": row["times_waited"],
        "times_released": row["times_released"],
    }  # fmt: skip


def full_row(row: asyncpg.Record, now: datetime) -> dict[str, Any]:
    """`waiting show`: every column and the event, JSON-ready (the caller masks emails)."""
    shown = {k: (_iso(v) if isinstance(v, datetime) else v) for k, v in dict(row).items()}
    shown["age_s"] = age_seconds(row["first_waited_at"], now)
    return shown


# --- what waits ------------------------------------------------------------------------------


async def overview(conn: asyncpg.Connection, *, oldest: int = 0) -> dict[str, Any]:
    """Open waiting events per reason (and queue) with the oldest's age, and the `oldest` first
    few events themselves. JSON-ready."""
    now = clock.now()
    rows = await repo.summarize_waiting(conn)
    by_reason: dict[str, dict[str, Any]] = {}
    for r in rows:
        entry = by_reason.setdefault(
            r["reason"], {"reason": r["reason"], "events": 0, "oldest_s": 0, "queues": {}}
        )
        entry["events"] += r["events"]
        entry["queues"][r["queue"]] = r["events"]
        entry["oldest_s"] = max(entry["oldest_s"], age_seconds(r["oldest"], now) or 0)
    view: dict[str, Any] = {
        "total": sum(r["events"] for r in rows),
        "oldest_s": max((e["oldest_s"] for e in by_reason.values()), default=None),
        "by_reason": sorted(by_reason.values(), key=lambda e: (-e["events"], e["reason"])),
        "by_queue_reason": [
            {"queue": r["queue"], "reason": r["reason"], "events": r["events"],
             "oldest_s": age_seconds(r["oldest"], now)}
            for r in rows
        ],  # fmt: skip
    }
    if oldest:
        events, _ = await repo.list_waiting(conn, limit=oldest)
        view["oldest"] = [event_summary(r, now) for r in events]
    return view


async def read_briefly(settings: Settings, read: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
    """`read` on a connection of its own (the web process and `stats` hold no pool), within
    READ_TIMEOUT_S. Raises OSError, TimeoutError or asyncpg errors when PostgreSQL does not
    answer in time."""

    async def run() -> T:
        conn = await db.connect(settings.require_database_url())
        try:
            return await read(conn)
        finally:
            await conn.close()

    return await asyncio.wait_for(run(), READ_TIMEOUT_S)


async def panel_view(settings: Settings, read: Callable[[asyncpg.Connection], Awaitable[dict[str, Any]]],
                     failed: str) -> dict[str, Any] | None:  # fmt: skip
    """`read_briefly` for `stats`, the dashboard and `/metrics`: None without a DATABASE_URL,
    {"error": …} when PostgreSQL does not answer (logged as `failed`; the rest is still shown)."""
    if settings.database_url is None:
        return None
    try:
        return await read_briefly(settings, read)
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        log.warning(failed, error=type(exc).__name__)
        return {"error": f"PostgreSQL unreachable ({type(exc).__name__})"}


async def read_overview(settings: Settings, *, oldest: int = 0) -> dict[str, Any]:
    """`overview` on a connection of its own (read_briefly)."""
    return await read_briefly(settings, lambda conn: overview(conn, oldest=oldest))


async def waiting_view(settings: Settings, *, oldest: int = 0) -> dict[str, Any] | None:
    """`overview` for `stats`, the dashboard and `/metrics` (panel_view)."""
    return await panel_view(settings, lambda conn: overview(conn, oldest=oldest), "waiting_read_failed")


def unknown_line(name: str, view: dict[str, Any] | None) -> str | None:
    """The `stats` line of a panel PostgreSQL could not give (`panel_view`: None without a
    DATABASE_URL, {"error": …} when it did not answer), or None when `view` is there to show."""
    if view is None:
        return f"{name}: unknown (DATABASE_URL not set)"
    if "error" in view:
        return f"{name}: unknown ({view['error']})"
    return None


def text_lines(view: dict[str, Any] | None) -> list[str]:
    """The waiting section of `pedro-worker stats`."""
    if (unknown := unknown_line("waiting", view)) is not None:
        return [unknown]
    if not view["total"]:
        return ["waiting: none"]
    lines = [f"waiting: {view['total']} event(s), oldest {format_age(view['oldest_s'] or 0)}"]
    for e in view["by_reason"]:
        queues = ", ".join(f"{q}: {n}" for q, n in sorted(e["queues"].items()))
        lines.append(f"  {e['reason']:<28} {e['events']:>6}  oldest {format_age(e['oldest_s']):>7}"
                     f"  ({queues})")  # fmt: skip
    return lines


# --- release ---------------------------------------------------------------------------------


@dataclass
class ReleaseReport:
    sent: int = 0
    in_flight: int = 0  # open, but released moments ago (or being released): not sent again now
    not_waiting: dict[str, str | None] = field(default_factory=dict)  # id -> state (None: unknown)


async def releasable_ids(
    conn: asyncpg.Connection, *, reason: str | None = None, queue: str | None = None
) -> list[str]:
    """Every open waiting event matching these filters (`waiting release --all`)."""
    rows, _ = await repo.list_waiting(conn, reason=reason, queue=queue, limit=None)
    return [r["event_id"] for r in rows]


async def release(
    pool: asyncpg.Pool, broker: Any, settings: Settings, event_ids: Sequence[str]
) -> ReleaseReport:
    """Send these waiting events back to their queues now (`Releaser.release`, as the sweep
    does). Ids that are not open (applied, dropped, unknown) are reported, not sent."""
    ids = list(dict.fromkeys(event_ids))
    async with pool.acquire() as conn:
        states = await repo.find_waiting_states(conn, ids)
    report = ReleaseReport(
        not_waiting={i: states.get(i) for i in ids if states.get(i) not in OPEN_STATES}
    )
    open_ids = [i for i in ids if i not in report.not_waiting]
    if open_ids:
        report.sent = await Releaser(pool, broker, settings).release(event_ids=open_ids)
    report.in_flight = len(open_ids) - report.sent
    log.info("waiting_release_requested", events=len(ids), sent=report.sent,
             in_flight=report.in_flight, not_waiting=len(report.not_waiting))  # fmt: skip
    return report


# --- drop ------------------------------------------------------------------------------------


class NotWaiting(Exception):
    """Some of the events to drop are not waiting: id -> state ('applied', 'dropped',
    'decided' when its key was taken meanwhile, None when there is no such waiting event)."""

    def __init__(self, states: dict[str, str | None]) -> None:
        self.states = states
        super().__init__(", ".join(f"{i} ({s or 'unknown'})" for i, s in states.items()))


def drop_detail(by: str, why: str) -> str:
    return f"dropped by {by}: {why}"


async def _drop_once(
    conn: asyncpg.Connection, ids: list[str], by: str, why: str, now: datetime
) -> list[str]:
    async with conn.transaction():
        rows = {r["event_id"]: r for r in await repo.lock_waiting_for_drop(conn, ids)}
        refused = {i: rows[i]["state"] if i in rows else None for i in ids
                   if i not in rows or rows[i]["state"] not in OPEN_STATES}  # fmt: skip
        if refused:
            raise NotWaiting(refused)
        claims, rejections = [], []
        for event_id in sorted(ids):
            row = rows[event_id]
            event = row["event"]
            clerk = row["clerk_user_id"]
            # the hash its queue recorded when it waited: a redelivery after the drop is a duplicate
            claims.append((event_id, row["event_type"], row["payload_hash"], clerk, None))
            rejections.append(
                (event_id, row["event_type"], DROPPED, drop_detail(by, why), safe_payload(event))
            )
        claimed = await ledger_repo.claim_events(conn, claims)
        decided = {i: "decided" for i in ids if i not in claimed}
        if decided:  # applied (or rejected) through its queue since it was found waiting
            raise NotWaiting(decided)
        await ledger_repo.insert_rejections(conn, rejections)
        await repo.mark_dropped(conn, ids, by=by, why=why, now=now)
    return sorted(ids)


async def drop(
    conn: asyncpg.Connection, event_ids: Sequence[str], *, by: str, why: str
) -> list[str]:
    """Drop these waiting events, all or none (raises NotWaiting, nothing changed)."""
    ids = list(dict.fromkeys(event_ids))
    by, why = by.strip()[:MAX_DROPPED_BY], why.strip()[:MAX_DROP_REASON]
    if not ids or not by or not why:
        raise ValueError("a drop needs event ids, who drops them and why")
    for attempt in range(3):
        try:
            dropped = await _drop_once(conn, ids, by, why, clock.now())
            break
        except asyncpg.DeadlockDetectedError:  # a worker storing one of them again meanwhile
            if attempt == 2:
                raise
    for event_id in dropped:
        log.info("waiting_dropped", event_id=event_id, by=by, reason=why)
    return dropped
