"""`pedro-worker notifications list|show|redeliver`: the outbox of notifications to the app
(`worker.notification` and its deliveries) as an operator sees and handles it. The work is done
in `notifications.py`; delivering is the dispatcher's (`pedro-worker notify`).

Exit codes: 0 ok (a redelivery: what was asked was sent again, or there was nothing failed to
send); 1 no such notification or delivery, a redelivery declined, nothing it could send again
(pending already, or to an endpoint no longer configured), or PostgreSQL unreachable; 2 usage
or configuration error.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
from datetime import timedelta

import asyncpg

from .. import clock, db
from ..logs import scrub
from ..settings import Settings
from .notifications import (
    STATUSES,
    Redelivery,
    configured_endpoints,
    deliveries_of,
    describe,
    failed_deliveries,
    list_lines,
    list_view,
    notification_view,
    per_endpoint,
    plan_redelivery,
    redeliver,
    show_lines,
)
from .text import format_age
from .waiting_cli import _positive_int, whoami

EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2
_DURATION = re.compile(r"(\d+)([smhd])")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def duration(text: str) -> timedelta:
    """`90s`, `30m`, `2h`, `1d`, `1h30m`."""
    parts = _DURATION.findall(text.strip())
    if not parts or "".join(n + u for n, u in parts) != text.strip():
        raise argparse.ArgumentTypeError(f"a duration is like 30m, 2h, 1d or 1h30m, not {text!r}")
    return sum((timedelta(**{_UNITS[u]: int(n)}) for n, u in parts), timedelta())


def add_command(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("notifications", help="notifications to the app: list, show, redeliver")
    notifications = p.add_subparsers(dest="notifications_command", required=True)

    c = notifications.add_parser("list", help="deliveries, newest first")
    c.add_argument("--status", choices=STATUSES, help="only deliveries in this status")
    c.add_argument("--type", dest="notice_type", metavar="TYPE", help="only this type, e.g. credits.low")
    c.add_argument("--user", dest="clerk_user_id", metavar="CLERK_ID", help="only this user's")
    c.add_argument("--endpoint", metavar="NAME", help="only deliveries to this endpoint")
    c.add_argument("--limit", type=_positive_int, default=100, help="at most this many (100)")
    c.add_argument("--json", action="store_true", help="one JSON object per line")

    c = notifications.add_parser("show", help="one notification: its data and its delivery to each endpoint")
    c.add_argument("ref", metavar="SEQ|WEBHOOK_ID", help="its seq, its webhook id (msg_…) or its key")
    c.add_argument("--json", action="store_true", help="one JSON object")

    c = notifications.add_parser(
        "redeliver", help="send deliveries again (pending, due now, attempts from 0, the same webhook "
        "id: the receiver dedupes): one notification's, or every failed one with --failed",
    )  # fmt: skip
    c.add_argument("ref", nargs="?", metavar="SEQ|WEBHOOK_ID", help="the notification: every delivery "
                   "of it not pending (failed, or delivered and wanted again)")  # fmt: skip
    c.add_argument("--failed", action="store_true", help="every failed delivery instead")
    c.add_argument("--endpoint", metavar="NAME", help="only deliveries to this endpoint")
    c.add_argument("--since", type=duration, metavar="DURATION",
                   help="with --failed: only those last tried within this long, e.g. 2h")  # fmt: skip
    c.add_argument("--yes", action="store_true", help="do not ask for confirmation")


def run(args: argparse.Namespace, settings: Settings) -> int:
    try:
        return asyncio.run(_run(args, settings))
    except (OSError, asyncpg.PostgresConnectionError, asyncpg.InterfaceError) as exc:
        print(f"pedro-worker: postgres unreachable ({type(exc).__name__})", file=sys.stderr)
        return EXIT_FAIL


async def _run(args: argparse.Namespace, settings: Settings) -> int:
    command = args.notifications_command
    if command == "redeliver":
        if bool(args.ref) == bool(args.failed):
            return _usage("notifications redeliver needs a notification or --failed (not both)")
        if args.since is not None and not args.failed:
            return _usage("--since goes with --failed")
    conn = await db.connect(settings.require_database_url())
    try:
        if command == "list":
            return await _list(conn, args)
        if command == "show":
            return await _show(conn, args, settings)
        if args.failed:
            return await _redeliver_failed(conn, args, settings)
        return await _redeliver_one(conn, args, settings)
    finally:
        await conn.close()


def _usage(message: str) -> int:
    print(f"pedro-worker: {message}", file=sys.stderr)
    return EXIT_USAGE


def _no_notification(ref: str) -> int:
    print(f"pedro-worker: no notification {ref!r}", file=sys.stderr)
    return EXIT_FAIL


async def _list(conn: asyncpg.Connection, args: argparse.Namespace) -> int:
    view = await list_view(
        conn, status=args.status, notice_type=args.notice_type, clerk_user_id=args.clerk_user_id,
        endpoint=args.endpoint, limit=args.limit,
    )  # fmt: skip
    if args.json:
        for d in view["deliveries"]:
            print(json.dumps(d))
        return EXIT_OK
    print("\n".join(list_lines(view)))
    return EXIT_OK


async def _show(conn: asyncpg.Connection, args: argparse.Namespace, settings: Settings) -> int:
    view = await notification_view(conn, args.ref, settings)
    if view is None:
        return _no_notification(args.ref)
    print(scrub(json.dumps(view) if args.json else "\n".join(show_lines(view))))  # data may hold an email
    return EXIT_OK


def _confirmed(question: str) -> bool:
    """Asks on stdin (a pipe works too: `echo y | …`); no answer is no."""
    print(f"{question} [y/N] ", end="", flush=True)
    try:
        answer = sys.stdin.readline()
    except (OSError, ValueError):
        answer = ""
    if not answer or not sys.stdin.isatty():  # the answer was not echoed
        print()
    return answer.strip().lower() in ("y", "yes")


def _report_left(plan: Redelivery) -> None:
    for item in plan.pending:
        print(f"left as it is: {describe(item)}: pending, the dispatcher has it")
    for item in plan.unconfigured:
        assert item.delivery is not None
        print(f"refused: {describe(item)}: endpoint {item.delivery.endpoint!r} is not configured "
              "(PEDRO_NOTIFY_ENDPOINTS, PEDRO_NOTIFY_URL)", file=sys.stderr)  # fmt: skip


async def _redeliver_one(conn: asyncpg.Connection, args: argparse.Namespace, settings: Settings) -> int:
    configured = configured_endpoints(settings)
    found = await deliveries_of(conn, args.ref, args.endpoint)
    if found is None:
        return _no_notification(args.ref)
    n, items = found
    if not items:
        why = f"to {args.endpoint!r}" if args.endpoint else "(no endpoint took its type)"
        print(f"pedro-worker: notification {n.seq} has no delivery {why}", file=sys.stderr)
        return EXIT_FAIL
    plan = plan_redelivery(items, configured)
    _report_left(plan)
    if not plan.targets:
        print("nothing redelivered")
        return EXIT_FAIL
    targets = ", ".join(f"{t.delivery.endpoint} ({t.delivery.status})" for t in plan.targets if t.delivery)
    user = scrub(n.clerk_user_id or "-")
    question = f"redeliver notification {n.seq} ({n.type} for {user}, {n.webhook_id}) to {targets}?"
    if not args.yes and not _confirmed(question):
        print("nothing redelivered (answer y, or pass --yes)")
        return EXIT_FAIL
    done = await redeliver(conn, plan.targets, by=whoami())
    for item in done:
        print(f"redelivered {describe(item)}: pending again, due now, webhook id {n.webhook_id}")
    if len(done) < len(plan.targets):
        print(f"{len(plan.targets) - len(done)} became pending meanwhile (another redelivery): left as it is")
    return EXIT_OK if done and not plan.unconfigured else EXIT_FAIL


async def _redeliver_failed(conn: asyncpg.Connection, args: argparse.Namespace, settings: Settings) -> int:
    configured = configured_endpoints(settings)
    since = None if args.since is None else clock.now() - args.since
    plan = plan_redelivery(await failed_deliveries(conn, endpoint=args.endpoint, since=since), configured)
    if plan.unconfigured:
        print(f"refused {len(plan.unconfigured)} failed delivery(ies) to endpoints not configured "
              f"({per_endpoint(plan.unconfigured)}): nothing would deliver them",
              file=sys.stderr)  # fmt: skip
    scope = "" if args.since is None else f" last tried within {format_age(args.since.total_seconds())}"
    if not plan.targets:
        print(f"no failed deliveries{scope} to redeliver")
        return EXIT_FAIL if plan.unconfigured else EXIT_OK
    question = f"redeliver {len(plan.targets)} failed delivery(ies){scope} ({per_endpoint(plan.targets)})?"
    if not args.yes and not _confirmed(question):
        print("nothing redelivered (answer y, or pass --yes)")
        return EXIT_FAIL
    done = await redeliver(conn, plan.targets, by=whoami())
    print(f"redelivered {len(done)} failed delivery(ies): pending again, due now, the same webhook ids"
          + (f" ({per_endpoint(done)})" if done else ""))  # fmt: skip
    if len(done) < len(plan.targets):
        print(f"{len(plan.targets) - len(done)} became pending meanwhile (another redelivery): "
              "left as they are")  # fmt: skip
    return EXIT_FAIL if plan.unconfigured else EXIT_OK
