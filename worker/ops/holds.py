"""Ops on credit holds (`worker.credit_hold`, docs/ledger.md "Holds").

- `list_view` / `hold_view` / `release_hold`: `pedro-worker holds list|show|release`
  (holds_cli.py). A release is `worker.domain.holds.release` with `by="ops"`: the transaction the
  API's release runs, under the user's balance lock; a hold resolved already is left as it is.
- `user_holds` / `text_lines`: one user's open holds and the last few resolved, as
  `pedro-worker user show` prints them.
- `holds_overview` / `holds_view`: open holds and the credits they keep out of the balances,
  those past their expiry that no sweep has released (overdue: ~0 when the grant sweep runs),
  and the holds resolved in the last 24 h per status: the dashboard's "Holds" panel, the
  `pedro_holds_*` gauges and the holds line of `pedro-worker stats` (`stats_line`). Range scans
  of the partial indexes on open and resolved holds.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from .. import clock
from ..logs import get_logger
from ..repo import holds_ops as repo
from ..repo.holds_ops import OpsHold
from ..settings import Settings
from .text import cell, format_age
from .waiting import panel_view, unknown_line

log = get_logger("pedro.ops.holds")

STATUSES = ("held", "captured", "released", "expired")
RESOLVED = STATUSES[1:]
RESOLVED_SHOWN = 5  # resolved holds `user show` lists
RESOLVED_WINDOW = timedelta(hours=24)  # the dashboard's "resolved" figures


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _at(iso: str | None) -> str:
    """An ISO time as `2026-11-25 15:00:07Z` ('-' for None)."""
    if iso is None:
        return "-"
    return datetime.fromisoformat(iso).astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def hold_summary(h: OpsHold, now: datetime) -> dict[str, Any]:
    """One hold, JSON-ready. `overdue`: held past its expiry (the sweep has not released it)."""
    return {
        "hold_id": h.hold_id, "clerk_user_id": h.clerk_user_id, "user_id": h.user_id,
        "credits": h.credits, "status": h.status, "captured": h.captured, "usage_id": h.usage_id,
        "operation_type": h.operation_type, "over_capture": h.over_capture,
        "resolved_by": h.resolved_by, "created_at": _iso(h.created_at),
        "expires_at": _iso(h.expires_at), "resolved_at": _iso(h.resolved_at),
        "overdue": h.status == "held" and h.expires_at <= now,
        "expires_in_s": int((h.expires_at - now).total_seconds()),
    }  # fmt: skip


def _expiry(h: dict[str, Any]) -> str:
    """When it expires, from now: `in 14m59s`, `3m02s ago`, or `OVERDUE 3m02s` (held past it)."""
    left = h["expires_in_s"]
    if h["overdue"]:
        return f"OVERDUE {format_age(-left)}"
    return f"in {format_age(left)}" if left > 0 else f"{format_age(-left)} ago"


def _since(iso: str | None, now: datetime) -> str:
    return "-" if iso is None else f"{format_age((now - datetime.fromisoformat(iso)).total_seconds())} ago"


def _resolution(h: dict[str, Any]) -> str:
    """What a resolved hold came to, in words."""
    if h["status"] == "captured":
        what = f"captured: {h['captured']} of {h['credits']} credits charged (usage {h['usage_id']})"
    elif h["status"] == "expired":
        what = f"expired: its {h['credits']} credits went back"
    else:
        what = f"released: its {h['credits']} credits went back"
    return f"{what}, {_at(h['resolved_at'])} by {h['resolved_by']}"


def _table(rows: list[dict[str, Any]], now: datetime, indent: str = "") -> list[str]:
    lines = [f"{indent}{'AGE':>7}  {'STATUS':<8}  {'CREDITS':>8}  {'CAPTURED':>8}  {'EXPIRES':<15}  "
             f"{'RESOLVED':<10}  {'BY':<12}  {'USER':<20}  HOLD ID"]  # fmt: skip
    for h in rows:
        age = format_age((now - datetime.fromisoformat(h["created_at"])).total_seconds())
        captured = "-" if h["captured"] is None else h["captured"]
        lines.append(
            f"{indent}{age:>7}  {h['status']:<8}  {h['credits']:>8}  {captured:>8}  {_expiry(h):<15}  "
            f"{_since(h['resolved_at'], now):<10}  {cell(h['resolved_by'], 12):<12}  "
            f"{cell(h['clerk_user_id'], 20):<20}  {cell(h['hold_id'], 200)}"
        )  # fmt: skip
    return lines


# --- holds list / show ------------------------------------------------------------------------


async def list_view(
    conn: asyncpg.Connection, *, clerk_user_id: str | None, status: str | None, limit: int
) -> dict[str, Any]:
    """`holds list`, JSON-ready: the holds newest first and how many match in all."""
    now = clock.now()
    rows, matching = await repo.list_holds(conn, clerk_user_id=clerk_user_id, status=status, limit=limit)
    return {"holds": [hold_summary(h, now) for h in rows], "matching": matching, "now": now.isoformat()}


def list_lines(view: dict[str, Any]) -> list[str]:
    now = datetime.fromisoformat(view["now"])
    lines = _table(view["holds"], now) if view["holds"] else []
    return lines + [f"{len(view['holds'])} of {view['matching']} hold(s) listed"]


def _json(text: str | None) -> Any:
    return None if text is None else json.loads(text)


async def hold_view(conn: asyncpg.Connection, hold_id: str) -> dict[str, Any] | None:
    """`holds show`, JSON-ready: the hold, what it took from which grant, its journal movements
    and, once captured, its "UsageHistory" row (`usage`: None when it is missing). None when there
    is no such hold."""
    h = await repo.get_hold(conn, hold_id)
    if h is None:
        return None
    view = hold_summary(h, clock.now())
    view.update(details=_json(h.details), allocation=_json(h.allocation), taken=_json(h.taken))
    view["movements"] = [
        {"event_id": m.event_id, "kind": m.kind, "delta": m.delta, "reference": m.reference,
         "reason": m.reason, "grants": _json(m.grants), "at": m.created_at.isoformat()}  # fmt: skip
        for m in await repo.list_hold_movements(conn, hold_id)
    ]
    usage = await repo.find_hold_usage(conn, h.usage_id) if h.usage_id is not None else None
    view["usage"] = None if usage is None else {
        "id": usage.usage_id, "operation_type": usage.operation_type,
        "credits_used": usage.credits_used, "at": usage.used_at.replace(tzinfo=UTC).isoformat(),
    }  # fmt: skip
    return view


def _pairs(allocation: list | None) -> str:
    return ", ".join(f"{grant_id} {delta:+}" for grant_id, delta in allocation or []) or "-"


def show_lines(view: dict[str, Any]) -> list[str]:
    """`holds show` as text (the caller masks emails)."""
    h = view
    captured = "" if h["captured"] is None else f", {h['captured']} captured"
    lines = [f"hold       {h['hold_id']}  {h['status']}",
             f"user       {h['clerk_user_id']}  id={h['user_id']}",
             f"credits    {h['credits']} held{captured}  (overCapture {h['over_capture']})",
             f"operation  {h['operation_type'] or '-'}",
             f"created    {_at(h['created_at'])}",
             f"expires    {_at(h['expires_at'])}  ({_expiry(h)})"]  # fmt: skip
    if h["status"] != "held":
        lines.append(f"resolved   {_resolution(h)}")
    elif h["overdue"]:
        lines.append("           past its expiry and not released yet: the grant sweep releases it "
                     "(as expired), or the next transaction over this user")  # fmt: skip
    if h["usage_id"] is not None:
        u = h["usage"]
        used = 'no "UsageHistory" row' if u is None else (
            f"{u['operation_type']}, {u['credits_used']} credits used, {_at(u['at'])}")  # fmt: skip
        lines.append(f"usage      {h['usage_id']}: {used}")
    lines.append(f"took       {_pairs(h['allocation'])}")
    if h["taken"] is not None:
        lines.append(f"usage took {_pairs(h['taken'])}")
    if h["details"] is not None:
        lines.append(f"details    {cell(json.dumps(h['details']), 200)}")
    lines += ["", "movements (oldest first)"]
    if not h["movements"]:
        lines.append("  none")
    else:
        lines.append(f"  {'AT':<20}  {'KIND':<12} {'DELTA':>8}  {'REASON':<32}  {'GRANTS':<40}  EVENT ID")
    for m in h["movements"]:
        lines.append(f"  {_at(m['at']):<20}  {m['kind']:<12} {m['delta']:>+8}  {cell(m['reason'], 32):<32}  "
                     f"{cell(_pairs(m['grants']), 40):<40}  {cell(m['event_id'], 200)}")  # fmt: skip
    return lines


# --- holds release ------------------------------------------------------------------------------


@dataclass
class Released:
    hold: dict[str, Any]  # the hold after the release (hold_summary)
    released: bool  # False: it was resolved already, nothing changed
    balance: dict[str, int] | None  # remaining, held, available after a release (as the API's)


async def release_hold(conn: asyncpg.Connection, hold_id: str, settings: Settings) -> Released | None:
    """Release one hold as ops (`worker.domain.holds.release`, by "ops"): its credits go back, or,
    when it was past its expiry, it is released as expired. A hold already resolved is left as
    it is (not even its user's balance is locked). None when there is no such hold."""
    from ..domain.holds import release

    before = await repo.get_hold(conn, hold_id)
    if before is None:
        return None
    if before.status != "held":
        return Released(hold_summary(before, clock.now()), False, None)
    answer = await release(conn, hold_id, settings, by="ops")
    after = await repo.get_hold(conn, hold_id)
    assert after is not None
    released = not answer.replayed  # replayed: resolved before the balance lock was ours
    log.info("hold_released_by_ops", hold_id=hold_id, status=after.status, released=released)
    b = answer.body.balance
    return Released(hold_summary(after, clock.now()), released,
                    {"remaining": b.remaining, "held": b.held, "available": b.available})  # fmt: skip


def release_line(result: Released) -> str:
    h = result.hold
    if not result.released:
        return f"hold {h['hold_id']} was resolved already, nothing changed: {_resolution(h)}"
    b = result.balance
    assert b is not None
    how = "released" if h["status"] == "released" else "was past its expiry: released as expired"
    return (f"hold {h['hold_id']} {how}: {h['credits']} credits back to {h['clerk_user_id']} "
            f"(status {h['status']}; balance now {b['remaining']}, {b['held']} held, "
            f"{b['available']} available)")  # fmt: skip


# --- one user (`user show`) ----------------------------------------------------------------------


async def user_holds(
    conn: asyncpg.Connection, user_id: str, now: datetime, *, resolved: int = RESOLVED_SHOWN
) -> dict[str, Any]:
    """The user's open holds (the next to expire first) and its last resolved ones, JSON-ready."""
    open_holds = await repo.list_user_open_holds(conn, user_id)
    last, total = await repo.list_user_resolved_holds(conn, user_id, resolved)
    return {
        "open": [hold_summary(h, now) for h in open_holds],
        "held": sum(h.credits for h in open_holds),
        "resolved": [hold_summary(h, now) for h in last],
        "resolved_total": total,
        "now": now.isoformat(),
    }


def text_lines(holds: dict[str, Any]) -> list[str]:
    """The holds section of `user show`."""
    n = len(holds["open"])
    overdue = sum(1 for h in holds["open"] if h["overdue"])
    late = f" ({overdue} past their expiry, not released yet)" if overdue else ""
    lines = ["holds (open, then the last resolved)",
             f"  held now: {holds['held']} credits in {n} open hold(s){late}"]  # fmt: skip
    rows = holds["open"] + holds["resolved"]
    if not rows:
        return lines + ["  none"]
    lines += _table(rows, datetime.fromisoformat(holds["now"]), indent="  ")
    older = holds["resolved_total"] - len(holds["resolved"])
    if older > 0:
        lines.append(f"  ({older} older resolved hold(s) not shown)")
    return lines


# --- every user (dashboard, /metrics) --------------------------------------------------------


async def holds_overview(conn: asyncpg.Connection, now: datetime) -> dict[str, Any]:
    """Open holds, the overdue among them, and the holds resolved in the last 24 h per status
    (every status present, 0 when none). JSON-ready."""
    o = await repo.summarize_open_holds(conn, now)
    resolved = {s: {"holds": 0, "credits": 0, "charged": 0} for s in RESOLVED}
    for r in await repo.count_resolved_holds(conn, now - RESOLVED_WINDOW):
        resolved[r.status] = {"holds": r.holds, "credits": r.credits, "charged": r.charged}
    since = o.overdue_since
    return {
        "open": {"holds": o.holds, "credits": o.credits},
        "overdue": {"holds": o.overdue, "credits": o.overdue_credits,
                    "oldest_s": None if since is None else max(int((now - since).total_seconds()), 0)},
        "resolved_24h": resolved,
    }  # fmt: skip


async def holds_view(settings: Settings) -> dict[str, Any] | None:
    """`holds_overview` for the dashboard and `/metrics` (waiting.panel_view: None without a
    DATABASE_URL, {"error": …} when PostgreSQL does not answer in time)."""
    return await panel_view(settings, lambda conn: holds_overview(conn, clock.now()), "holds_read_failed")


def stats_line(view: dict[str, Any] | None) -> str:
    """The holds line of `pedro-worker stats` (from `holds_view`)."""
    if (unknown := unknown_line("holds", view)) is not None:
        return unknown
    o, d = view["open"], view["overdue"]
    late = f", the oldest {format_age(d['oldest_s'] or 0)} past its expiry" if d["holds"] else ""
    return f"holds: {o['holds']} open ({o['credits']} credits held), {d['holds']} overdue{late}"
