"""`pedro-worker waiting list|show|release|drop`: events waiting in PostgreSQL (worker/waiting.py),
as an operator sees and handles them. The work is done in `waiting.py`.

Exit codes: 0 ok; 1 an event not found or not waiting (a drop then changes nothing at all), or
PostgreSQL (or, for a release, Redis) unreachable; 2 usage or configuration error.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import sys
from typing import Any

import asyncpg
import dramatiq
import redis

from .. import clock, db
from ..broker import QUEUES
from ..logs import scrub
from ..repo import waiting_ops as repo
from ..settings import Settings
from .text import format_age
from .waiting import NotWaiting, drop, event_summary, full_row, releasable_ids, release

EXIT_OK, EXIT_NOT_FOUND, EXIT_USAGE = 0, 1, 2
STATES = {"waiting": ("waiting",), "released": ("released",), "all": repo.OPEN_STATES}


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def add_command(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("waiting", help="events waiting in PostgreSQL: list, show, release, drop")
    waiting = p.add_subparsers(dest="waiting_command", required=True)

    c = waiting.add_parser("list", help="open waiting events, oldest first")
    c.add_argument("--reason", help="only this reason, e.g. unknown_user")
    c.add_argument("--queue", choices=QUEUES, help="only this queue")
    c.add_argument("--user", dest="clerk_user_id", metavar="CLERK_ID", help="only this user's")
    c.add_argument("--state", choices=tuple(STATES), default="all",
                   help="waiting (nothing released it yet), released (sent back, not decided "
                        "yet) or all open ones (default)")  # fmt: skip
    c.add_argument("--limit", type=_positive_int, default=100, help="at most this many (100)")
    c.add_argument("--json", action="store_true", help="one JSON object per line")

    c = waiting.add_parser("show", help="one waiting event in full, with its event (emails masked)")
    c.add_argument("event_id", metavar="EVENT_ID")

    c = waiting.add_parser(
        "release", help="send waiting events back to their queues now (they wait again if "
        "they still cannot apply)",
    )  # fmt: skip
    c.add_argument("ids", nargs="*", metavar="EVENT_ID")
    c.add_argument("--all", action="store_true", help="every open one matching --reason/--queue")
    c.add_argument("--reason", help="with --all: only this reason")
    c.add_argument("--queue", choices=QUEUES, help="with --all: only this queue")

    c = waiting.add_parser(
        "drop", help="give up on waiting events: recorded as a rejection `dropped` with who and "
        "why; a later redelivery is a duplicate",
    )  # fmt: skip
    c.add_argument("ids", nargs="+", metavar="EVENT_ID")
    c.add_argument("--reason", required=True, help="why (stored in the rejection)")
    c.add_argument("--by", help="who drops them (default: the login name)")


def run(args: argparse.Namespace, settings: Settings) -> int:
    try:
        return asyncio.run(_run(args, settings))
    except (redis.RedisError, dramatiq.errors.BrokerError) as exc:  # a release's enqueue
        print(f"pedro-worker: redis unreachable ({type(exc).__name__})", file=sys.stderr)
        return EXIT_NOT_FOUND
    except (OSError, asyncpg.PostgresConnectionError, asyncpg.InterfaceError) as exc:
        print(f"pedro-worker: postgres unreachable ({type(exc).__name__})", file=sys.stderr)
        return EXIT_NOT_FOUND


async def _run(args: argparse.Namespace, settings: Settings) -> int:
    command = args.waiting_command
    if command == "release":
        return await _release(args, settings)
    if command == "drop" and not args.reason.strip():
        return _usage("waiting drop needs a non-empty --reason")
    conn = await db.connect(settings.require_database_url())
    try:
        if command == "list":
            return await _list(conn, args)
        if command == "show":
            return await _show(conn, args.event_id)
        return await _drop(conn, args)
    finally:
        await conn.close()


def _usage(message: str) -> int:
    print(f"pedro-worker: {message}", file=sys.stderr)
    return EXIT_USAGE


def _cell(value: object, width: int | None = None) -> str:
    """A table cell: control characters as '·', emails masked, long text cut with '…'."""
    if value is None:
        return "-"
    text = scrub("".join(c if c.isprintable() else "·" for c in str(value)))
    return text if width is None or len(text) <= width else text[: width - 1] + "…"


async def _list(conn: Any, args: argparse.Namespace) -> int:
    now = clock.now()
    rows, matching = await repo.list_waiting(
        conn, reason=args.reason, queue=args.queue, clerk_user_id=args.clerk_user_id,
        states=STATES[args.state], limit=args.limit,
    )  # fmt: skip
    if args.json:
        for row in rows:
            print(json.dumps(event_summary(row, now)))
        return EXIT_OK
    if rows:
        print(f"{'AGE':>7}  {'STATE':<8}  {'QUEUE':<7}  {'TYPE':<22}  {'USER':<20}  "
              f"{'REASON':<22}  {'WAITS FOR':<28}  {'WAITED':>6}  {'RELEASED':>8}  "
              "EVENT ID")  # fmt: skip
    for r in rows:
        age = format_age((now - r["first_waited_at"]).total_seconds())
        print(f"{age:>7}  {r['state']:<8}  {r['queue']:<7}  {_cell(r['event_type'], 22):<22}  "
              f"{_cell(r['clerk_user_id'], 20):<20}  {_cell(r['reason'], 22):<22}  "
              f"{_cell(r['waits_for'], 28):<28}  {r['times_waited']:>6}  {r['times_released']:>8}  "
              f"{_cell(r['event_id'])}")  # fmt: skip
    print(f"{len(rows)} of {matching} waiting event(s) listed")
    return EXIT_OK


async def _show(conn: Any, event_id: str) -> int:
    row = await repo.get_waiting(conn, event_id)
    if row is None:
        print(f"no waiting event {event_id}", file=sys.stderr)
        return EXIT_NOT_FOUND
    print(scrub(json.dumps(full_row(row, clock.now()), indent=2, default=str)))
    return EXIT_OK


def _report_not_waiting(states: dict[str, str | None]) -> None:
    for event_id, state in states.items():
        if state is None:
            print(f"not found: {event_id}", file=sys.stderr)
        else:
            print(f"not waiting: {event_id} ({state})", file=sys.stderr)


async def _release(args: argparse.Namespace, settings: Settings) -> int:
    from ..broker import build_broker

    if bool(args.ids) == bool(args.all):
        return _usage("waiting release needs event ids or --all (not both)")
    if args.ids and (args.reason or args.queue):
        return _usage("--reason and --queue go with --all")
    broker = build_broker(settings, worker=False)
    small = settings.model_copy(update={"pool_min_size": 1, "pool_max_size": 2})
    pool = await db.create_pool(small)
    try:
        ids = list(args.ids)
        if args.all:
            async with pool.acquire() as conn:
                ids = await releasable_ids(conn, reason=args.reason, queue=args.queue)
        report = await release(pool, broker, settings, ids)
    finally:
        await pool.close()
        broker.close()
    _report_not_waiting(report.not_waiting)
    print(f"released {report.sent} waiting event(s) to their queues; {report.in_flight} already "
          f"on their way; {len(report.not_waiting)} not waiting")  # fmt: skip
    return EXIT_NOT_FOUND if report.not_waiting else EXIT_OK


def whoami() -> str:
    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no login name in a bare container
        return "unknown"


async def _drop(conn: Any, args: argparse.Namespace) -> int:
    by = (args.by or "").strip() or whoami()
    try:
        dropped = await drop(conn, args.ids, by=by, why=args.reason)
    except NotWaiting as exc:
        _report_not_waiting(exc.states)
        print("nothing dropped")
        return EXIT_NOT_FOUND
    print(f"dropped {len(dropped)} waiting event(s), recorded as rejection 'dropped' by "
          f"{_cell(by)}: {_cell(args.reason.strip())}")  # fmt: skip
    return EXIT_OK
