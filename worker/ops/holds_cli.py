"""`pedro-worker holds list|show|release`: credit holds (`worker.credit_hold`) as an operator sees
and handles them. The work is done in `holds.py`; a release is the API's own transaction
(`worker.domain.holds.release`, by "ops").

Exit codes: 0 ok (a release: the hold was released now, or found past its expiry and released as
expired); 1 no such hold, a release declined, a hold resolved already (its resolution is printed
and nothing changes), the user's balance busy, or PostgreSQL unreachable; 2 usage or
configuration error.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

import asyncpg

from .. import db
from ..logs import scrub
from ..settings import Settings
from .holds import STATUSES, hold_view, list_lines, list_view, release_hold, release_line, show_lines
from .waiting_cli import _positive_int

EXIT_OK, EXIT_FAIL = 0, 1


def add_command(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("holds", help="credit holds: list, show, release")
    holds = p.add_subparsers(dest="holds_command", required=True)

    c = holds.add_parser("list", help="holds, newest first")
    c.add_argument("--user", dest="clerk_user_id", metavar="CLERK_ID", help="only this user's")
    c.add_argument("--status", choices=STATUSES, help="only holds in this status")
    c.add_argument("--limit", type=_positive_int, default=100, help="at most this many (100)")
    c.add_argument("--json", action="store_true", help="one JSON object per line")

    c = holds.add_parser("show", help="one hold: what it took, its movements, its usage")
    c.add_argument("hold_id", metavar="HOLD_ID")
    c.add_argument("--json", action="store_true", help="one JSON object")

    c = holds.add_parser(
        "release", help="give an open hold's credits back now (as the app's release does); a "
        "hold resolved already is left as it is",
    )  # fmt: skip
    c.add_argument("hold_id", metavar="HOLD_ID")
    c.add_argument("--yes", action="store_true", help="do not ask for confirmation")


def run(args: argparse.Namespace, settings: Settings) -> int:
    try:
        return asyncio.run(_run(args, settings))
    except (OSError, asyncpg.PostgresConnectionError, asyncpg.InterfaceError) as exc:
        print(f"pedro-worker: postgres unreachable ({type(exc).__name__})", file=sys.stderr)
        return EXIT_FAIL


async def _run(args: argparse.Namespace, settings: Settings) -> int:
    if args.holds_command == "release":
        # the ingress's own kind of connection: a balance held elsewhere longer than
        # `lock_wait_ms` fails the release (LockNotAvailableError) instead of hanging it
        pool = await db.request_pool(settings, max_size=1)
        try:
            async with pool.acquire() as conn:
                return await _release(conn, args, settings)
        finally:
            await pool.close()
    conn = await db.connect(settings.require_database_url())
    try:
        if args.holds_command == "list":
            return await _list(conn, args)
        return await _show(conn, args)
    finally:
        await conn.close()


def _no_hold(hold_id: str) -> int:
    print(f"pedro-worker: no hold {hold_id!r}", file=sys.stderr)
    return EXIT_FAIL


async def _list(conn: asyncpg.Connection, args: argparse.Namespace) -> int:
    view = await list_view(conn, clerk_user_id=args.clerk_user_id, status=args.status, limit=args.limit)
    if args.json:
        for h in view["holds"]:
            print(json.dumps(h))
        return EXIT_OK
    print("\n".join(list_lines(view)))
    return EXIT_OK


async def _show(conn: asyncpg.Connection, args: argparse.Namespace) -> int:
    view = await hold_view(conn, args.hold_id)
    if view is None:
        return _no_hold(args.hold_id)
    print(scrub(json.dumps(view) if args.json else "\n".join(show_lines(view))))  # details may hold an email
    return EXIT_OK


def _confirmed(view: dict) -> bool:
    """Asks on stdin (a pipe works too: `echo y | …`); no answer is no."""
    print(f"release hold {view['hold_id']} of {view['clerk_user_id']}: {view['credits']} credits go "
          f"back? [y/N] ", end="", flush=True)  # fmt: skip
    try:
        answer = sys.stdin.readline()
    except (OSError, ValueError):
        answer = ""
    if not answer or not sys.stdin.isatty():  # the answer was not echoed
        print()
    return answer.strip().lower() in ("y", "yes")


async def _release(conn: asyncpg.Connection, args: argparse.Namespace, settings: Settings) -> int:
    from ..domain.holds import HoldRefused

    view = await hold_view(conn, args.hold_id)
    if view is None:
        return _no_hold(args.hold_id)
    if view["status"] == "held" and not args.yes and not _confirmed(view):
        print("nothing released (answer y, or pass --yes)")
        return EXIT_FAIL
    try:
        result = await release_hold(conn, args.hold_id, settings)
    except asyncpg.LockNotAvailableError:
        print(f"pedro-worker: the balance of {view['clerk_user_id']} is held by another transaction; "
              "nothing released, try again", file=sys.stderr)  # fmt: skip
        return EXIT_FAIL
    except HoldRefused as exc:
        print(f"pedro-worker: {exc.error}: {exc.detail}", file=sys.stderr)
        return EXIT_FAIL
    if result is None:
        return _no_hold(args.hold_id)
    print(release_line(result))
    return EXIT_OK if result.released else EXIT_FAIL
