"""Ops on notifications to the app (the outbox `worker.notification` and its deliveries,
docs/notifications.md).

- `list_view` / `notification_view`: `pedro-worker notifications list|show`
  (notifications_cli.py): deliveries newest first; one notification with its data and its
  delivery to each endpoint, and whether that endpoint is still configured.
- `redeliver`: deliveries (failed, or delivered and wanted again) back to pending, due now,
  attempts from 0, with the same webhook id: the receiver dedupes on it. A pending delivery is
  the dispatcher's and is left as it is; one to an endpoint no longer configured is refused
  (nothing could deliver it). Logged per delivery as `notification_redelivered`, with who.
- `user_notifications` / `text_lines`: one user's latest notifications and their deliveries, as
  `pedro-worker user show` prints them.
- `notifications_overview` / `notifications_view`: pending deliveries and the oldest pending
  notification's age (the lag), deliveries failed for good and the latest of them, deliveries
  delivered in the last 24 h per type, the endpoints configured (name, host: never the URL's
  path or the secret): the dashboard's "Notifications" panel, the `pedro_notifications_*`
  gauges and the notifications line of `pedro-worker stats` (`stats_line`). Reads the partial
  indexes of pending and of finished deliveries only.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import asyncpg

from .. import clock
from ..errors import ConfigError
from ..logs import get_logger, scrub
from ..notify.config import TYPES, Endpoint
from ..repo import notifications_ops as repo
from ..repo.notifications_ops import Delivery, Listed, Notification
from ..settings import Settings
from .text import cell, format_age
from .waiting import panel_view, unknown_line

log = get_logger("pedro.ops.notifications")

STATUSES = ("pending", "delivered", "failed")
COUNT_UP_TO = 10_000  # `notifications list` counts matches up to this many
USER_SHOWN = 5  # notifications `user show` lists
FAILURES_SHOWN = 5  # latest failures on the dashboard
WINDOW = timedelta(hours=24)  # the dashboard's "delivered" and "failed" figures
LAG_ALERT_S = 300  # the dashboard shows the lag in red above this


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _age(since: datetime | None, now: datetime) -> int | None:
    return None if since is None else max(int((now - since).total_seconds()), 0)


def _at(iso: str | None) -> str:
    """An ISO time as `2026-11-25 15:00:07Z` ('-' for None)."""
    if iso is None:
        return "-"
    return datetime.fromisoformat(iso).astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def host_of(url: str) -> str:
    """The host (and port) of an endpoint's URL: never its credentials, path or query."""
    netloc = urlsplit(url).netloc.rsplit("@", 1)[-1]
    return netloc or "?"


def configured_endpoints(settings: Settings) -> dict[str, Endpoint]:
    """The endpoints notifications go to, by name (raises ConfigError on a half-set endpoint)."""
    return {e.name: e for e in settings.notify_targets}


def delivery_summary(d: Delivery, now: datetime) -> dict[str, Any]:
    """One delivery, JSON-ready (its error masked: a receiver's answer may quote an email)."""
    return {
        "endpoint": d.endpoint, "status": d.status, "attempts": d.attempts, "in_flight": d.in_flight,
        "next_at": _iso(d.next_at) if d.status == "pending" else None,
        "next_in_s": int((d.next_at - now).total_seconds()) if d.status == "pending" else None,
        "last_attempt_at": _iso(d.last_attempt_at), "last_status": d.last_status,
        "last_error": None if d.last_error is None else scrub(d.last_error),
        "delivered_at": _iso(d.delivered_at), "failed_at": _iso(d.failed_at),
    }  # fmt: skip


def notification_summary(n: Notification, now: datetime) -> dict[str, Any]:
    """One notification, JSON-ready, without its data. Its user is masked: a `usage.rejected`'s
    comes from the rejected payload as it was, whatever it holds."""
    user = None if n.clerk_user_id is None else scrub(n.clerk_user_id)
    return {"seq": n.seq, "webhook_id": n.webhook_id, "type": n.type, "clerk_user_id": user,
            "created_at": n.created_at.isoformat(), "age_s": _age(n.created_at, now)}


_NO_DELIVERY = dict.fromkeys(("endpoint", "status", "attempts", "in_flight", "next_at", "next_in_s",
                              "last_attempt_at", "last_status", "last_error", "delivered_at", "failed_at"))


def listed_summary(item: Listed, now: datetime) -> dict[str, Any]:
    """A notification and one delivery flattened (endpoint and status None: no endpoint took it)."""
    d = item.delivery
    delivery = _NO_DELIVERY if d is None else delivery_summary(d, now)
    return notification_summary(item.notification, now) | delivery


def _last(d: dict[str, Any]) -> str:
    """The last attempt's answer: `HTTP 503`, `no answer in 15 s`, `HTTP 204`, or '-'."""
    status, error = d["last_status"], d["last_error"]
    if error:
        return error if status is None or str(status) in error else f"HTTP {status}: {error}"
    return "-" if status is None else f"HTTP {status}"


def _next(d: dict[str, Any]) -> str:
    """When a pending delivery is tried next: `in 4m59s`, `due 12s ago`, `in flight`; '-' otherwise."""
    if d["status"] != "pending":
        return "-"
    if d["in_flight"]:
        return "in flight"
    left = d["next_in_s"]
    if left > 0:
        return f"in {format_age(left)}"
    return "due" if left == 0 else f"due {format_age(-left)} ago"


def _state(d: dict[str, Any]) -> str:
    """A delivery in a few words, for `user show`."""
    if d["status"] == "delivered":
        return f"{d['endpoint']} delivered"
    if d["status"] == "failed":
        return f"{d['endpoint']} FAILED after {d['attempts']} ({cell(_last(d), 40)})"
    if not d["attempts"]:
        return f"{d['endpoint']} pending" + (" (in flight)" if d["in_flight"] else "")
    return f"{d['endpoint']} retrying: {d['attempts']} tried ({cell(_last(d), 40)}), next {_next(d)}"


# --- notifications list / show ------------------------------------------------------------------


async def list_view(
    conn: asyncpg.Connection, *, status: str | None, notice_type: str | None, clerk_user_id: str | None,
    endpoint: str | None, limit: int,
) -> dict[str, Any]:  # fmt: skip
    """`notifications list`, JSON-ready: the deliveries newest first and how many match (counted
    up to COUNT_UP_TO: `more` when there are more)."""
    now = clock.now()
    rows, matching = await repo.list_notifications(
        conn, status=status, notice_type=notice_type, clerk_user_id=clerk_user_id, endpoint=endpoint,
        limit=limit, count_up_to=COUNT_UP_TO + 1,
    )  # fmt: skip
    return {"deliveries": [listed_summary(r, now) for r in rows], "matching": min(matching, COUNT_UP_TO),
            "more": matching > COUNT_UP_TO, "now": now.isoformat()}  # fmt: skip


def _table(rows: Iterable[dict[str, Any]], indent: str = "") -> list[str]:
    lines = [f"{indent}{'SEQ':>8}  {'AGE':>7}  {'TYPE':<18}  {'USER':<20}  {'ENDPOINT':<12}  {'STATUS':<9}  "
             f"{'TRIES':>5}  {'NEXT':<16}  LAST"]  # fmt: skip
    for d in rows:
        sent = d["status"] is not None  # None: no endpoint took it
        lines.append(
            f"{indent}{d['seq']:>8}  {format_age(d['age_s']):>7}  {cell(d['type'], 18):<18}  "
            f"{cell(d['clerk_user_id'], 20):<20}  {cell(d['endpoint'], 12):<12}  {d['status'] or '-':<9}  "
            f"{d['attempts'] if sent else '-':>5}  {_next(d) if sent else '-':<16}  "
            f"{cell(_last(d) if sent else 'no endpoint takes its type', 80)}"
        )  # fmt: skip
    return lines


def list_lines(view: dict[str, Any]) -> list[str]:
    lines = _table(view["deliveries"]) if view["deliveries"] else []
    matching = f"{view['matching']}+" if view["more"] else str(view["matching"])
    return lines + [f"{len(view['deliveries'])} of {matching} delivery(ies) listed"]


async def notification_view(conn: asyncpg.Connection, ref: str, settings: Settings) -> dict[str, Any] | None:
    """`notifications show`, JSON-ready: the notification (by seq, webhook id or key), its data
    and each delivery, with whether its endpoint is configured (and the host it goes to). None
    when there is no such notification."""
    n = await repo.get_notification(conn, ref)
    if n is None:
        return None
    now = clock.now()
    endpoints = configured_endpoints(settings)
    view = notification_summary(n, now) | {"key": n.key, "data": json.loads(n.data or "null")}
    view["deliveries"] = []
    for d in await repo.list_deliveries(conn, n.seq):
        e = endpoints.get(d.endpoint)
        view["deliveries"].append(delivery_summary(d, now) | {
            "configured": e is not None, "host": None if e is None else host_of(e.url)})  # fmt: skip
    return view


def _delivery_lines(d: dict[str, Any]) -> list[str]:
    where = f"configured: {d['host']}" if d["configured"] else "NOT CONFIGURED any more: nothing delivers it"
    if d["status"] == "delivered":
        what = f"delivered after {d['attempts']} attempt(s)"
    elif d["status"] == "failed":
        what = f"FAILED after {d['attempts']} attempt(s)"
    else:
        what = f"pending, {d['attempts']} attempt(s) so far"
    return [f"  {d['endpoint']}  {what}  ({where})",
            f"    last attempt  {_at(d['last_attempt_at'])}  {cell(_last(d), 200)}",
            f"    next attempt  {_next(d)}",
            f"    delivered     {_at(d['delivered_at'])}",
            f"    failed        {_at(d['failed_at'])}"]  # fmt: skip


def show_lines(view: dict[str, Any]) -> list[str]:
    """`notifications show` as text (the caller masks emails)."""
    n = view
    lines = [f"notification {n['seq']}  {n['type']}",
             f"key          {n['key']}",
             f"webhook id   {n['webhook_id']}",
             f"user         {n['clerk_user_id'] or '-'}",
             f"created      {_at(n['created_at'])}  ({format_age(n['age_s'])} ago)",
             "data"]  # fmt: skip
    lines += ["  " + line for line in json.dumps(n["data"], indent=2, ensure_ascii=False).splitlines()]
    lines += ["", "deliveries"]
    if not n["deliveries"]:
        lines.append("  none: no endpoint took its type when it was written")
    for d in n["deliveries"]:
        lines += _delivery_lines(d)
    return lines


# --- notifications redeliver -------------------------------------------------------------------


@dataclass
class Redelivery:
    """What a redelivery would send again, and what it leaves."""

    targets: list[Listed] = field(default_factory=list)  # failed or delivered: to send again
    pending: list[Listed] = field(default_factory=list)  # the dispatcher's: left as they are
    unconfigured: list[Listed] = field(default_factory=list)  # endpoint gone: refused


def plan_redelivery(items: Iterable[Listed], configured: Iterable[str]) -> Redelivery:
    """Sort deliveries into those to send again, the pending ones (left to the dispatcher) and
    those to endpoints not in `configured` (refused)."""
    names = set(configured)
    plan = Redelivery()
    for item in items:
        assert item.delivery is not None
        if item.delivery.status == "pending":
            plan.pending.append(item)
        elif item.delivery.endpoint not in names:
            plan.unconfigured.append(item)
        else:
            plan.targets.append(item)
    return plan


async def deliveries_of(
    conn: asyncpg.Connection, ref: str, endpoint: str | None
) -> tuple[Notification, list[Listed]] | None:
    """A notification (by seq, webhook id or key) and its deliveries (only `endpoint`'s when
    given). None when there is no such notification."""
    n = await repo.get_notification(conn, ref)
    if n is None:
        return None
    found = [Listed(n, d) for d in await repo.list_deliveries(conn, n.seq) if endpoint in (None, d.endpoint)]
    return n, found


async def failed_deliveries(
    conn: asyncpg.Connection, *, endpoint: str | None, since: datetime | None
) -> list[Listed]:
    """Every failed delivery (to `endpoint`, last tried since `since`), oldest first."""
    return await repo.list_failed_deliveries(conn, endpoint=endpoint, since=since)


async def redeliver(conn: asyncpg.Connection, targets: Sequence[Listed], *, by: str) -> list[Listed]:
    """Send these deliveries again: pending, due now, attempts from 0, the same webhook id; the
    dispatcher is woken at commit. One that became pending meanwhile (another operator) is left.
    Returns those sent again."""
    by_key = {(t.notification.seq, t.delivery.endpoint): t for t in targets if t.delivery is not None}
    done = [by_key[k] for k in await repo.redeliver(conn, list(by_key))]
    for t in done:
        assert t.delivery is not None
        log.info("notification_redelivered", seq=t.notification.seq, webhook_id=t.notification.webhook_id,
                 type=t.notification.type, endpoint=t.delivery.endpoint, was=t.delivery.status,
                 attempts=t.delivery.attempts, by=by)  # fmt: skip
    return done


def describe(item: Listed) -> str:
    """`42 credits.low for user_x to app (failed after 8 attempts)`."""
    n, d = item.notification, item.delivery
    assert d is not None
    return (f"{n.seq} {n.type} for {scrub(n.clerk_user_id or '-')} to {d.endpoint} "
            f"({d.status} after {d.attempts} attempt(s))")  # fmt: skip


def per_endpoint(items: Iterable[Listed]) -> str:
    """`app: 10, audit: 2`."""
    counts: dict[str, int] = {}
    for i in items:
        assert i.delivery is not None
        counts[i.delivery.endpoint] = counts.get(i.delivery.endpoint, 0) + 1
    return ", ".join(f"{e}: {n}" for e, n in sorted(counts.items()))


# --- one user (`user show`) ----------------------------------------------------------------------


async def user_notifications(
    conn: asyncpg.Connection, clerk_user_id: str, now: datetime, *, limit: int = USER_SHOWN
) -> dict[str, Any]:
    """The user's latest notifications, newest first, each with its deliveries. JSON-ready."""
    latest, total = await repo.list_user_notifications(conn, clerk_user_id, limit)
    deliveries: dict[int, list[dict[str, Any]]] = {}
    for d in await repo.list_deliveries_of(conn, [n.seq for n in latest]):
        deliveries.setdefault(d.seq, []).append(delivery_summary(d, now))
    shown = [notification_summary(n, now) | {"deliveries": deliveries.get(n.seq, [])} for n in latest]
    return {"latest": shown, "total": total}


def text_lines(view: dict[str, Any], clerk_user_id: str) -> list[str]:
    """The notifications section of `user show`."""
    lines = [f"notifications: {view['total']}" + (" (latest first)" if view["total"] else "")]
    if not view["latest"]:
        return lines
    lines.append(f"  {'SEQ':>8}  {'AGE':>7}  {'TYPE':<18}  DELIVERIES")
    for n in view["latest"]:
        states = " · ".join(_state(d) for d in n["deliveries"]) or "no endpoint takes its type"
        lines.append(f"  {n['seq']:>8}  {format_age(n['age_s']):>7}  {cell(n['type'], 18):<18}  {states}")
    older = view["total"] - len(view["latest"])
    if older > 0:
        lines.append(f"  ({older} older: pedro-worker notifications list --user {clerk_user_id})")
    return lines


# --- every notification (dashboard, /metrics) ------------------------------------------------


async def notifications_overview(
    conn: asyncpg.Connection, now: datetime, endpoints: Sequence[Endpoint]
) -> dict[str, Any]:
    """Pending (with the lag: the oldest pending notification's age), failed (with the latest
    failures) and delivered in the last 24 h per type (every known type present, 0 when none),
    per endpoint too: the configured ones and any other that still has pending or failed
    deliveries. JSON-ready."""
    pending = {p.endpoint: p for p in await repo.summarize_pending(conn, now)}
    failed = {f.endpoint: f for f in await repo.summarize_failed(conn, now - WINDOW)}
    delivered = dict.fromkeys(TYPES, 0) | await repo.count_delivered(conn, now - WINDOW)
    latest = await repo.list_latest_failures(conn, FAILURES_SHOWN)
    oldest = min((p.oldest for p in pending.values() if p.oldest is not None), default=None)
    configured = {e.name: e for e in endpoints}
    rows = []
    for name in sorted(set(configured) | set(pending) | set(failed)):
        e, p, f = configured.get(name), pending.get(name), failed.get(name)
        rows.append({
            "name": name, "configured": e is not None, "host": None if e is None else host_of(e.url),
            "events": None if e is None else list(e.events), "pending": p.pending if p else 0,
            "oldest_s": _age(p.oldest, now) if p else None, "failed": f.failed if f else 0,
        })  # fmt: skip
    return {
        "enabled": bool(configured),
        "endpoints": rows,
        "pending": {"deliveries": sum(p.pending for p in pending.values()),
                    "due": sum(p.due for p in pending.values()),
                    "in_flight": sum(p.in_flight for p in pending.values()), "oldest_s": _age(oldest, now)},
        "failed": {"deliveries": sum(f.failed for f in failed.values()),
                   "last_24h": sum(f.recent for f in failed.values()),
                   "latest": [listed_summary(i, now) for i in latest]},
        "delivered_24h": delivered,
        "lag_alert_s": LAG_ALERT_S,
    }  # fmt: skip


async def notifications_view(settings: Settings) -> dict[str, Any] | None:
    """`notifications_overview` for the dashboard and `/metrics` (waiting.panel_view: None
    without a DATABASE_URL, {"error": …} when PostgreSQL does not answer in time).
    `config_error`: the endpoints' settings are wrong (what the dispatcher refuses to start on)."""
    try:
        endpoints, config_error = settings.notify_targets, None
    except ConfigError as exc:
        endpoints, config_error = [], exc.detail
    view = await panel_view(settings, lambda conn: notifications_overview(conn, clock.now(), endpoints),
                            "notifications_read_failed")  # fmt: skip
    if view is not None and config_error is not None:
        view["config_error"] = config_error
    return view


def stats_line(view: dict[str, Any] | None) -> str:
    """The notifications line of `pedro-worker stats` (from `notifications_view`)."""
    if (unknown := unknown_line("notifications", view)) is not None:
        return unknown
    p, f = view["pending"], view["failed"]
    lag = "" if p["oldest_s"] is None else f", oldest {format_age(p['oldest_s'])}"
    if "config_error" in view:
        off = f" (misconfigured: {view['config_error']})"
    else:
        off = "" if view["enabled"] else " (off: no endpoint configured)"
    return f"notifications: {p['deliveries']} pending{lag}, {f['deliveries']} failed{off}"
