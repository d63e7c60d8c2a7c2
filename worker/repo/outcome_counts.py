"""Exact outcome totals (`sql/queries/outcome_counts.sql`, migration 0013): each transaction that
decides events adds its counts in that transaction, so the totals are what was committed."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

import asyncpg

from .. import db
from ..ledger.decide import RETRY, Outcome

_WITH_REASON = frozenset({"rejected", "waiting"})  # as the ops counters label them (ops/recorder.py)


def tally(outcomes: Iterable[Outcome]) -> list[tuple[str, str, int]]:
    """(status, reason, n), sorted — every writer then takes the rows' locks in one order. A
    `retry` is no outcome (the event comes back), so it is not counted."""
    counts = Counter(
        (o.status, (o.reason or "") if o.status in _WITH_REASON else "") for o in outcomes if o.status != RETRY
    )
    return sorted((status, reason, n) for (status, reason), n in counts.items())


async def count_outcomes(conn: asyncpg.Connection, queue: str, outcomes: Iterable[Outcome]) -> None:
    """Add these outcomes to the totals, in the caller's transaction (its last statement: the
    counter rows are then locked only for the commit)."""
    rows = tally(outcomes)
    if rows:
        statuses, reasons, counts = zip(*rows, strict=True)
        await db.execute(conn, "count_outcomes", queue, list(statuses), list(reasons), list(counts))


async def outcome_totals(conn: asyncpg.Connection) -> dict[tuple[str, str, str], int]:
    """{(queue, status, reason): n}, summed over the shards."""
    return {(r["queue"], r["status"], r["reason"]): r["n"] for r in await db.fetch(conn, "outcome_totals")}
