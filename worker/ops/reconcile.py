"""Reconcile, page by page: every tracked balance == opening + Σ journal movements (drift kind
`balance`); every balance == Σ remaining of its live grants (`grants`); every grant == its opening
+ what the journal moved in or out of it (`grant`); every hold == its journal movements (`hold`:
held, `hold/<id>` of -credits alone; captured, with `capture/<id>` netting -captured and its
"UsageHistory" row; released or expired, with `release/<id>` netting 0). Balances the worker has
not touched yet (no grant, no opening) are listed apart, not as drift; so are holds still held
more than `OVERDUE_AFTER` past their expiry (`hold_overdue`: the grant sweep has not released
them — is it running?).

`pedro-worker reconcile` shows a progress bar and ends with a summary; the web process runs the
same check in the background every `ops_reconcile_interval_s` (one instance at a time, through
a Redis lock). Both store their last result in Redis for the dashboard and `/metrics`.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import asyncpg
import redis

from .. import clock, db
from ..logs import get_logger
from ..repo.reconcile import (
    WITHOUT_GRANTS,
    Drift,
    count_grant_checked_users,
    count_holds,
    count_tracked_balances,
    find_overdue_holds,
    iter_balance_drift,
    iter_grant_drift,
    iter_hold_drift,
)
from ..redis_client import redis_client
from ..settings import Settings
from .keys import Keys

log = get_logger("pedro.ops.reconcile")

OVERDUE_AFTER = timedelta(minutes=5)  # a hold held this long past its expiry is reported


@dataclass
class ReconcileReport:
    checked: int = 0  # balances checked against their journal
    grants_checked: int = 0  # users whose balance and grants were checked
    holds_checked: int = 0  # holds checked against their journal
    drift: list[Drift] = field(default_factory=list)  # every kind
    without_grants: list[Drift] = field(default_factory=list)
    overdue_holds: list[Drift] = field(default_factory=list)  # not drift
    seconds: float = 0.0

    def drift_kinds(self) -> dict[str, int]:
        return dict(Counter(d.kind for d in self.drift))

    def summary(self, source: str) -> dict[str, Any]:
        return {
            "checked": self.checked,
            "drift": len(self.drift),
            "drift_kinds": self.drift_kinds(),
            "grants_checked": self.grants_checked,
            "without_grants": len(self.without_grants),
            "holds_checked": self.holds_checked,
            "holds_overdue": len(self.overdue_holds),
            "seconds": round(self.seconds, 3),
            "at_ms": int(time.time() * 1000),
            "source": source,
        }


async def reconcile(
    conn: asyncpg.Connection,
    *,
    page_size: int = 5_000,
    on_progress: Callable[[int], None] | None = None,
) -> ReconcileReport:
    started = time.monotonic()
    report = ReconcileReport()
    async for checked, drift in iter_balance_drift(conn, page_size):
        report.checked += checked
        report.drift += drift
        if on_progress is not None:
            on_progress(checked)
    async for checked, found in iter_grant_drift(conn, page_size):
        report.grants_checked += checked
        for d in found:
            (report.without_grants if d.kind == WITHOUT_GRANTS else report.drift).append(d)
        if on_progress is not None:
            on_progress(checked)
    async for checked, found in iter_hold_drift(conn, page_size):
        report.holds_checked += checked
        report.drift += found
        if on_progress is not None and checked:
            on_progress(checked)
    report.overdue_holds = await find_overdue_holds(conn, clock.now(), OVERDUE_AFTER)
    report.seconds = time.monotonic() - started
    return report


def store(client: redis.Redis, namespace: str, report: ReconcileReport, source: str) -> None:
    client.set(Keys(namespace).reconcile, json.dumps(report.summary(source)))


async def run_command(settings: Settings, *, as_json: bool, page_size: int = 5_000) -> bool:
    """`pedro-worker reconcile`: prints drift and a summary. True when there is drift."""
    from .progress import progress

    conn = await db.connect(settings.require_database_url())
    try:
        total = (await count_tracked_balances(conn) + await count_grant_checked_users(conn)
                 + await count_holds(conn))  # fmt: skip
        with progress(total=total, desc="reconcile", unit="row") as bar:
            report = await reconcile(conn, page_size=page_size, on_progress=bar.update)
    finally:
        await conn.close()
    if settings.redis_url is not None or settings.redis_sentinels:
        try:
            store(
                redis_client(settings, socket_timeout=5),
                settings.redis_namespace,
                report,
                "cli",
            )
        except redis.RedisError as exc:
            log.warning("reconcile_not_recorded", error=type(exc).__name__)
    if as_json:
        print(
            json.dumps(
                {
                    "checked": report.checked,
                    "grants_checked": report.grants_checked,
                    "holds_checked": report.holds_checked,
                    "drift": [d.__dict__ for d in report.drift],
                    "without_grants": [d.__dict__ for d in report.without_grants],
                    "overdue_holds": [d.__dict__ for d in report.overdue_holds],
                    "seconds": round(report.seconds, 3),
                }
            )
        )
    else:
        for d in report.drift:
            print(_drift_line(d))
        for d in report.overdue_holds:
            print(_drift_line(d, "OVERDUE"))
        print(_summary_line(report))
    return bool(report.drift)


def _drift_line(d: Drift, what: str = "DRIFT") -> str:
    line = (f"{what} user={d.user_id} clerkUserId={d.clerk_user_id} expected={d.expected} "
            f"actual={d.actual} kind={d.kind}")  # fmt: skip
    if d.grant_id is not None:
        line += f" grant={d.grant_id}"
    if d.hold_id is not None:
        line += f" hold={d.hold_id}"
    return line if d.detail is None else f"{line}: {d.detail}"


def _summary_line(report: ReconcileReport) -> str:
    kinds = ", ".join(f"{kind} {n}" for kind, n in sorted(report.drift_kinds().items()))
    line = f"reconcile: {report.checked} balances checked, {len(report.drift)} with drift"
    line += f" ({kinds})" if kinds else ""
    line += f"; grants of {report.grants_checked} users checked"
    if report.without_grants:
        line += f", {len(report.without_grants)} balances without grants (not touched yet)"
    line += f"; {report.holds_checked} holds checked"
    if report.overdue_holds:
        line += (f", {len(report.overdue_holds)} held over {int(OVERDUE_AFTER.total_seconds() // 60)} min "
                 "past their expiry (not drift: the grant sweep has not released them)")  # fmt: skip
    return f"{line} ({report.seconds:.1f}s)"


class BackgroundReconcile:
    """Keeps the dashboard's drift figure fresh without blocking a request."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.interval_s = settings.ops_reconcile_interval_s
        self._task: asyncio.Task[None] | None = None

    def maybe_start(self, client: redis.Redis, last: dict[str, Any] | None) -> None:
        """Start a run when the last result is older than the interval and no one else runs."""
        if self.interval_s <= 0 or self.settings.database_url is None:
            return
        if self._task is not None and not self._task.done():
            return
        if last and time.time() * 1000 - last.get("at_ms", 0) < self.interval_s * 1000:
            return
        if not client.set(
            Keys(self.settings.redis_namespace).reconcile_lock, "1", nx=True, ex=self.interval_s
        ):
            return
        self._task = asyncio.get_running_loop().create_task(self._run(client))

    async def _run(self, client: redis.Redis) -> None:
        try:
            conn = await db.connect(self.settings.require_database_url())
            try:
                report = await reconcile(conn)
            finally:
                await conn.close()
            await asyncio.to_thread(
                store, client, self.settings.redis_namespace, report, "dashboard"
            )
            log.info(
                "reconcile_done",
                checked=report.checked,
                drift=len(report.drift),
                drift_kinds=report.drift_kinds(),
                without_grants=len(report.without_grants),
                seconds=round(report.seconds, 2),
            )
        except Exception as exc:
            log.warning("reconcile_failed", error=type(exc).__name__)
