"""The exact ledger totals (worker.outcome_count, migration 0013) for `stats`, the dashboard and
`/metrics`.

The worker processes also count outcomes in memory and flush them to Redis every
`ops_stats_flush_ms` (ops/recorder.py): that is what the rate charts draw, and a SIGKILL loses
up to a flush interval of it. The totals — applied, duplicate, rejected, waiting — are instead
added to `worker.outcome_count` by the very transaction that decides the events, so they equal
what PostgreSQL committed, whatever crashed. They replace the Redis totals wherever PostgreSQL
answers; `ledger.totals` says which source a view used. (`retry` is no outcome: an event sent
back with backoff is counted when it is finally decided; its Redis count stays.)
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from ..repo.outcome_counts import outcome_totals
from ..settings import Settings
from .waiting import panel_view

EXACT = ("applied", "duplicate", "rejected", "waiting")


async def outcomes_view(settings: Settings) -> dict[str, Any] | None:
    """{"totals": {(queue, status, reason): n}}; None without a DATABASE_URL, {"error": …} when
    PostgreSQL does not answer in time (waiting.panel_view)."""

    async def read(conn) -> dict[str, Any]:
        return {"totals": await outcome_totals(conn)}

    return await panel_view(settings, read, "outcome_totals_read_failed")


def usable(view: dict[str, Any] | None) -> dict[tuple[str, str, str], int] | None:
    return view["totals"] if view is not None and "error" not in view else None


def apply_exact_totals(view: dict[str, Any], outcomes: dict[str, Any] | None) -> None:
    """Replace the overview's ledger totals (ops/stats.py `overview`, counted in Redis) with the
    exact ones when PostgreSQL answered."""
    totals = usable(outcomes)
    ledger = view["ledger"]
    if totals is None:
        ledger["totals"] = "redis"  # approximate: up to a flush interval per killed process is missing
        return
    by_status: dict[str, int] = defaultdict(int)
    by_reason: dict[str, dict[str, int]] = {"rejected": defaultdict(int), "waiting": defaultdict(int)}
    for (_queue, status, reason), n in totals.items():
        by_status[status] += n
        if status in by_reason:
            by_reason[status][reason] += n
    ledger["applied"] = by_status["applied"]
    ledger["duplicate"] = by_status["duplicate"]
    ledger["rejected"] = by_status["rejected"]
    ledger["rejected_by_reason"] = _ranked(by_reason["rejected"])
    ledger["waited_by_reason"] = _ranked(by_reason["waiting"])
    ledger["totals"] = "postgresql"


def _ranked(counts: dict[str, int]) -> dict[str, int]:
    return dict(sorted(counts.items(), key=lambda kv: -kv[1]))
