"""`pedro-worker user show CLERK_ID`: one user's balance, its grants and holds, why it moved, and
what still waits.

Movements come newest first, a page at a time: keyset pagination on (created_at, event_id), so
a page costs the same however deep it is and a movement written meanwhile never shifts the
next page. The cursor printed under a page is the last movement's key, opaque to the operator.
The grants (worker/ops/grants.py) are the live ones in burn order, the pending ones and the last
few that ended; the holds (worker/ops/holds.py) the open ones and the last few resolved; the
notifications (worker/ops/notifications.py) the last few about the user, with their deliveries.
The email is masked as the logs mask it; everything else is what the tables hold.

Exit codes: 0 shown, 1 no such user (its waiting events are still shown: they may be what an
operator is looking for), 2 usage error (a bad --cursor).
"""

from __future__ import annotations

import base64
import binascii
import json
import sys
from datetime import datetime
from typing import Any

import asyncpg

from .. import clock, db
from ..logs import scrub
from ..repo.accounts import (
    Movement,
    find_user_account,
    list_user_movements,
)  # fmt: skip
from ..repo.waiting_ops import list_waiting
from ..settings import Settings
from . import grants as grants_ops
from . import holds as holds_ops
from . import notifications as notifications_ops
from .text import cell, format_age, utc_time

EXIT_OK, EXIT_NOT_FOUND, EXIT_USAGE = 0, 1, 2


class BadCursor(ValueError):
    pass


def encode_cursor(movement: Movement) -> str:
    """The key of the last movement of a page, as one copy-pastable word."""
    raw = json.dumps([movement.created_at.isoformat(), movement.event_id], separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        at, event_id = json.loads(raw)
        created_at = datetime.fromisoformat(at)
    except (binascii.Error, ValueError, TypeError) as exc:
        raise BadCursor(f"not a cursor this command printed: {cursor!r}") from exc
    if not isinstance(event_id, str) or created_at.tzinfo is None:
        raise BadCursor(f"not a cursor this command printed: {cursor!r}")
    return created_at, event_id


async def user_view(
    conn: asyncpg.Connection, clerk_user_id: str, *, limit: int, cursor: str | None = None
) -> dict[str, Any]:
    """What `user show` prints, as JSON values. `user` is None when there is no such user."""
    after = decode_cursor(cursor) if cursor else None
    account = await find_user_account(conn, clerk_user_id)
    now = clock.now()
    movements: list[Movement] = []
    grants = holds = None
    if account is not None:
        movements = await list_user_movements(conn, account.user_id, after, limit + 1)
        grants = await grants_ops.user_grants(conn, account.user_id, now)
        holds = await holds_ops.user_holds(conn, account.user_id, now)
    page, more = movements[:limit], len(movements) > limit
    waiting, waiting_total = await list_waiting(conn, clerk_user_id=clerk_user_id, limit=limit)
    notifications = await notifications_ops.user_notifications(conn, clerk_user_id, now)
    return {
        "clerk_user_id": clerk_user_id,
        "user": None if account is None else {
            "id": account.user_id,
            "email": None if account.email is None else scrub(account.email),
            "is_active": account.is_active,
        },
        "balance": None if account is None else account.balance,
        "debt": None if account is None else account.debt,
        "grants": grants,
        "holds": holds,
        "movements": [_movement(m) for m in page],
        "next_cursor": encode_cursor(page[-1]) if more else None,
        "waiting": [_waiting(w, now) for w in waiting],
        "waiting_total": waiting_total,
        "notifications": notifications,
    }  # fmt: skip


def _movement(m: Movement) -> dict[str, Any]:
    return {
        "at": m.created_at.isoformat(), "kind": m.kind, "delta": m.delta,
        "reference": m.reference, "reason": m.reason, "event_id": m.event_id,
    }  # fmt: skip


def _waiting(w: asyncpg.Record, now: datetime) -> dict[str, Any]:
    return {
        "event_id": w["event_id"], "event_type": w["event_type"], "queue": w["queue"],
        "reason": w["reason"], "waits_for": w["waits_for"], "state": w["state"],
        "since": w["first_waited_at"].isoformat(),
        "age_seconds": max(int((now - w["first_waited_at"]).total_seconds()), 0),
    }  # fmt: skip


def text_lines(view: dict[str, Any], *, limit: int) -> list[str]:
    lines: list[str] = []
    user = view["user"]
    if user is not None:
        state = "active" if user["is_active"] else "inactive"
        lines.append(f"user      {view['clerk_user_id']}  id={user['id']}  "
                     f"email={user['email'] or '-'}  {state}")  # fmt: skip
        balance = view["balance"]
        lines.append(f"balance   {'no CreditBalance row' if balance is None else balance}")
        if view["debt"]:
            lines.append(f"debt      {view['debt']}  (the next credits given pay it first)")
        lines.append("")
        lines += grants_ops.text_lines(view["grants"])
        lines.append("")
        lines += holds_ops.text_lines(view["holds"])
        lines.append("")
        lines.append("movements (newest first)")
        if view["movements"]:
            lines.append(f"  {'AT':<24}  {'KIND':<14} {'DELTA':>8}  {'REFERENCE':<24}  "
                         f"{'REASON':<32}  EVENT ID")  # fmt: skip
        else:
            lines.append("  none" if view["next_cursor"] is None else "  none on this page")
        for m in view["movements"]:
            lines.append(
                f"  {utc_time(m['at']):<24}  {m['kind']:<14} {m['delta']:>+8}  "
                f"{cell(m['reference'], 24):<24}  {cell(m['reason'], 32):<32}  {cell(m['event_id'], 200)}"
            )  # fmt: skip
        if view["next_cursor"] is not None:
            lines.append(f"  more: pedro-worker user show {view['clerk_user_id']} --limit {limit} "
                         f"--cursor {view['next_cursor']}")  # fmt: skip
        lines.append("")
    shown, total = len(view["waiting"]), view["waiting_total"]
    lines.append(f"waiting events: {total}" + (f" (oldest {shown} shown)" if shown < total else ""))
    if view["waiting"]:
        lines.append(f"  {'AGE':>7}  {'STATE':<8}  {'EVENT TYPE':<24}  {'REASON':<24}  "
                     f"{'WAITS FOR':<32}  EVENT ID")  # fmt: skip
    for w in view["waiting"]:
        lines.append(
            f"  {format_age(w['age_seconds']):>7}  {w['state']:<8}  {cell(w['event_type'], 24):<24}  "
            f"{cell(w['reason'], 24):<24}  {cell(w['waits_for'], 32):<32}  {cell(w['event_id'], 200)}"
        )  # fmt: skip
    lines.append("")
    lines += notifications_ops.text_lines(view["notifications"], view["clerk_user_id"])
    return lines


async def run_command(
    settings: Settings, clerk_user_id: str, *, limit: int, cursor: str | None, as_json: bool
) -> int:
    try:
        if cursor:
            decode_cursor(cursor)  # a usage error before any connection
    except BadCursor as exc:
        print(f"pedro-worker: --cursor: {exc}", file=sys.stderr)
        return EXIT_USAGE
    conn = await db.connect(settings.require_database_url())
    try:
        view = await user_view(conn, clerk_user_id, limit=limit, cursor=cursor)
    finally:
        await conn.close()
    if as_json:
        print(json.dumps(view))
    else:
        print("\n".join(text_lines(view, limit=limit)))
    if view["user"] is None:
        print(f"pedro-worker: no user with clerkId {clerk_user_id!r}", file=sys.stderr)
        return EXIT_NOT_FOUND
    return EXIT_OK
