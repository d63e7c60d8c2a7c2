"""Ops on credit grants (`worker.credit_grant`, docs/ledger.md "Grants").

- `user_grants` / `text_lines`: one user's grants as `pedro-worker user show` prints them: the
  live ones in burn order (what a debit takes next), the pending ones, the last few that ended,
  and the credits expiring in the next 7 days.
- `expiry_overview` / `expiry_view`: credits expiring in the next 7 days (and how many users
  hold them) and credits expired per day over the last 14: the dashboard's "Credits expiring /
  expired" panel and the `pedro_credits_expiring_*` gauges. Range scans of the partial indexes
  the expiry job uses, so a refresh costs the same whatever the history holds.
"""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from typing import Any

import asyncpg

from .. import clock
from ..ledger.grants import OVERDRAFT
from ..logs import get_logger
from ..repo import grants_ops as repo
from ..repo.grants_ops import GrantRow
from ..settings import Settings
from .text import cell
from .waiting import panel_view

log = get_logger("pedro.ops.grants")

EXPIRING_WINDOW = timedelta(days=7)
EXPIRED_DAYS = 14  # days of expiries on the dashboard, today included
ENDED_SHOWN = 5  # expired or voided grants `user show` lists


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _grant(g: GrantRow, burn: int | None = None) -> dict[str, Any]:
    return {
        "grant_id": g.grant_id, "source": g.source, "state": g.state, "remaining": g.remaining,
        "amount": g.amount, "priority": g.priority, "effective_at": _iso(g.effective_at),
        "expires_at": _iso(g.expires_at), "reference": g.reference, "expired": g.expired,
        "ended_at": _iso(g.ended_at), "burn": burn,
    }  # fmt: skip


def expiring_credits(live: list[GrantRow], until: datetime) -> int:
    """What live grants expiring before `until` still hold (the overdraft never expires)."""
    expiring = (g for g in live if g.expires_at is not None and g.expires_at < until)
    return sum(g.remaining for g in expiring if g.remaining > 0)


# --- one user (`user show`) ------------------------------------------------------------------


async def user_grants(
    conn: asyncpg.Connection, user_id: str, now: datetime, *, ended: int = ENDED_SHOWN
) -> dict[str, Any]:
    """The user's grants, JSON-ready. `burn` numbers the live grants in the order a debit takes
    them (None for the overdraft grant: the debt, where what no grant covers goes)."""
    live = await repo.list_user_live_grants(conn, user_id)
    pending = await repo.list_user_pending_grants(conn, user_id)
    last_ended, ended_total = await repo.list_user_ended_grants(conn, user_id, ended)
    order = iter(range(1, len(live) + 1))
    return {
        "live": [_grant(g, None if g.source == OVERDRAFT else next(order)) for g in live],
        "pending": [_grant(g) for g in pending],
        "ended": [_grant(g) for g in last_ended],
        "ended_total": ended_total,
        "expiring_7d": expiring_credits(live, now + EXPIRING_WINDOW),
    }


def _when(iso: str | None, none: str) -> str:
    if iso is None:
        return none
    return datetime.fromisoformat(iso).astimezone(UTC).strftime("%Y-%m-%d %H:%MZ")


def text_lines(grants: dict[str, Any]) -> list[str]:
    """The grants section of `user show`."""
    lines = ["grants (live in burn order, then pending, then the last ended)",
             f"  expiring in the next 7 days: {grants['expiring_7d']} credits"]  # fmt: skip
    rows = grants["live"] + grants["pending"] + grants["ended"]
    if not rows:
        return lines + ["  none"]
    lines.append(f"  {'BURN':>4}  {'STATE':<7}  {'SOURCE':<10} {'REMAINING/AMOUNT':<16} "
                 f"{'PRIORITY':>10}  {'EFFECTIVE FROM':<17}  {'EXPIRES AT':<17}  "
                 "GRANT ID")  # fmt: skip
    for g in rows:
        burn = g["burn"] if g["burn"] is not None else "debt" if g["source"] == OVERDRAFT else "-"
        ended = ""
        if g["ended_at"] is not None:
            expired = f", {g['expired']} credits expired" if g["expired"] else ""
            ended = f"  (ended {_when(g['ended_at'], '-')}{expired})"
        lines.append(
            f"  {burn:>4}  {g['state']:<7}  {g['source']:<10} "
            f"{g['remaining']:>8}/{g['amount']:<7} {g['priority']:>10}  "
            f"{_when(g['effective_at'], '-'):<17}  {_when(g['expires_at'], 'never'):<17}  "
            f"{cell(g['grant_id'], 200)}{ended}"
        )  # fmt: skip
    older = grants["ended_total"] - len(grants["ended"])
    if older > 0:
        lines.append(f"  ({older} older expired or voided grant(s) not shown)")
    return lines


# --- every user (dashboard, /metrics) --------------------------------------------------------


async def expiry_overview(
    conn: asyncpg.Connection, now: datetime, *, days: int = EXPIRED_DAYS
) -> dict[str, Any]:
    """Credits expiring in the next 7 days and whose; with `days`, credits expired per UTC day
    over the last `days` days (today last, days with none as 0). JSON-ready."""
    credits, users = await repo.summarize_expiring_credits(conn, now + EXPIRING_WINDOW)
    view: dict[str, Any] = {"expiring_7d": {"credits": credits, "users": users}}
    if days:
        first = now.astimezone(UTC).date() - timedelta(days=days - 1)
        found = {d.day: d for d in await repo.sum_expired_credits_by_day(
            conn, datetime.combine(first, time(), UTC))}  # fmt: skip
        by_day = []
        for n in range(days):
            day = first + timedelta(days=n)
            row = found.get(day)
            by_day.append({"day": day.isoformat(), "credits": row.credits if row else 0,
                           "grants": row.grants if row else 0})  # fmt: skip
        view["expired_by_day"] = by_day
        view["expired_total"] = sum(d["credits"] for d in by_day)
    return view


async def expiry_view(settings: Settings, *, days: int = EXPIRED_DAYS) -> dict[str, Any] | None:
    """`expiry_overview` for the dashboard and `/metrics` (waiting.panel_view: None without a
    DATABASE_URL, {"error": …} when PostgreSQL does not answer in time)."""
    return await panel_view(settings, lambda conn: expiry_overview(conn, clock.now(), days=days),
                            "credit_expiry_read_failed")
