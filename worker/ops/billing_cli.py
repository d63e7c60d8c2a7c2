"""`pedro-worker billing show|regrant PAYMENT_ID`: one Asaas payment as an operator sees it
(`billing_show.py`), and deciding its grant again (`worker/domain/billing.py`'s `regrant`).

A regrant decides the payment's grant again from the facts stored on it (`--plan`: the
operator's choice of plan, which `regrant` keeps on the payment), then sends the payment's open
waiting events back to their queues (what `waiting release` does: one that still cannot apply
waits again). In that order, so that those events apply with the plan the operator named. A
payment whose only events waited has no facts yet: the regrant says so, and its released events
decide the grant through the billing queue.

Exit codes: show: 0 shown, 1 no such payment; regrant: 0 the payment has its grant (given now or
before) or its waiting events were sent back to decide it, 1 neither (the note says why:
not_paid, no_plan, no_clerk_user, unknown_user, …) or no such payment; both: 1 PostgreSQL (or,
for a release, Redis) unreachable, 2 usage or configuration error.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

import asyncpg
import dramatiq
import redis

from .. import db
from ..logs import get_logger, scrub
from ..repo.billing_ops import find_payment_facts, list_payment_waiting
from ..repo.waiting_ops import OPEN_STATES
from ..settings import Settings
from .billing_show import payment_view, text_lines
from .waiting import release
from .waiting_cli import whoami

log = get_logger("pedro.ops.billing")

EXIT_OK, EXIT_FAIL = 0, 1
GRANTED = ("granted", "already_granted")  # the regrant notes after which the payment has its grant
MAX_BY = 100


def add_command(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("billing", help="one Asaas payment: show it, decide its grant again")
    billing = p.add_subparsers(dest="billing_command", required=True)

    c = billing.add_parser(
        "show", help="a payment's facts, grant, movements, events, waiting events, rejections, "
        "subscription and its user's debt",
    )  # fmt: skip
    c.add_argument("payment_id", metavar="PAYMENT_ID")
    c.add_argument("--json", action="store_true", help="one JSON object")

    c = billing.add_parser(
        "regrant", help="decide the payment's grant again from its stored facts, then send its "
        "waiting events back to their queues",
    )  # fmt: skip
    c.add_argument("payment_id", metavar="PAYMENT_ID")
    c.add_argument("--plan", metavar="PLAN_ID", help='the plan to grant ("Plan".id or its '
                   "asaasId) instead of the one the payment names")  # fmt: skip
    c.add_argument("--by", metavar="WHO", help="who asks (printed and logged; default: the login "
                   "name)")  # fmt: skip


def run(args: argparse.Namespace, settings: Settings) -> int:
    command = _show(args, settings) if args.billing_command == "show" else _regrant(args, settings)
    try:
        return asyncio.run(command)
    except (redis.RedisError, dramatiq.errors.BrokerError) as exc:  # a release's enqueue
        unreachable = f"redis unreachable ({type(exc).__name__})"
    except (OSError, asyncpg.PostgresConnectionError, asyncpg.InterfaceError) as exc:
        unreachable = f"postgres unreachable ({type(exc).__name__})"
    print(f"pedro-worker: {unreachable}", file=sys.stderr)
    return EXIT_FAIL


def _unknown(payment_id: str, what: str) -> int:
    print(f"pedro-worker: no payment {payment_id!r} ({what})", file=sys.stderr)
    return EXIT_FAIL


async def _show(args: argparse.Namespace, settings: Settings) -> int:
    conn = await db.connect(settings.require_database_url())
    try:
        view = await payment_view(conn, args.payment_id)
    finally:
        await conn.close()
    if view is None:
        return _unknown(args.payment_id, "no facts, grant, events or waiting events")
    print(scrub(json.dumps(view) if args.json else "\n".join(text_lines(view))))
    return EXIT_OK


async def _release_waiting(pool: asyncpg.Pool, settings: Settings, payment_id: str) -> str | None:
    """Send the payment's open waiting events back to their queues; what to tell the operator."""
    from ..broker import build_broker

    async with pool.acquire() as conn:
        rows = await list_payment_waiting(conn, payment_id)
    ids = [r["event_id"] for r in rows if r["state"] in OPEN_STATES]
    if not ids:
        return None
    broker = build_broker(settings, worker=False)
    try:
        report = await release(pool, broker, settings, ids)
    finally:
        broker.close()
    return (f"released {report.sent} waiting event(s) of payment {payment_id} to their queues "
            f"({report.in_flight} already on their way, {len(report.not_waiting)} decided "
            f"meanwhile): they apply through the billing queue, see `pedro-worker billing show "
            f"{payment_id}`")  # fmt: skip


async def _known(pool: asyncpg.Pool, payment_id: str) -> bool:
    """Whether the worker has seen the payment: facts stored, or an event that waited."""
    async with pool.acquire() as conn:
        facts = await find_payment_facts(conn, payment_id)
        return facts is not None or bool(await list_payment_waiting(conn, payment_id))


async def _regrant(args: argparse.Namespace, settings: Settings) -> int:
    from ..domain.billing import regrant

    by = (args.by or "").strip()[:MAX_BY] or whoami()
    small = settings.model_copy(update={"pool_min_size": 1, "pool_max_size": 2})
    pool = await db.create_pool(small)
    try:
        if not await _known(pool, args.payment_id):  # a typo must not leave a payment row behind
            return _unknown(args.payment_id, "no facts stored, no events waiting")
        async with pool.acquire() as conn:
            result = await regrant(conn, args.payment_id, settings, plan_ref=args.plan)
        # after the regrant: its events then apply with the plan it kept on the payment
        released = await _release_waiting(pool, settings, args.payment_id)
    finally:
        await pool.close()
    log.info("billing_regrant", payment_id=args.payment_id, by=by, plan=args.plan,
             note=result.note, released=released is not None)  # fmt: skip
    asked = f"plan {args.plan}, " if args.plan else ""
    detail = f": {scrub(result.detail)}" if result.detail else ""
    print(f"regrant of payment {args.payment_id} ({asked}by {by}): {result.note}{detail}")
    if released is not None:
        print(released)
    return EXIT_OK if result.note in GRANTED or released is not None else EXIT_FAIL
