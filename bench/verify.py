"""Exactly-once checks run after every measurement. Any difference raises ExactlyOnceViolation.

Product paths: "UsageHistory", `worker.journal` and `worker.event_log` each hold exactly one row
per applied event, nothing was rejected, `find_balance_drift` is empty (every balance == opening +
journal), every balance equals the one computed in Python, and every balance equals the start
minus its "UsageHistory" rows; after (c) and (c) with three grants, also reconcile's grant checks
and what each grant must hold after the burn-down. The naive baseline keeps no journal: its
"UsageHistory" is checked the same way.
"""

from __future__ import annotations

from collections.abc import Mapping

from worker import db
from worker.repo.reconcile import find_balance_drift, find_grant_drift
from worker.repo.users import get_balances

from .grants import grant_problems
from .workload import START_CREDITS, Expected

# Balances that differ from the start minus their "UsageHistory" rows. $1 start credits int
_HISTORY_MISMATCH = """
SELECT cb."clerkUserId" AS clerk_user_id, cb."creditsRemaining" AS actual,
       $1::bigint - coalesce(u.used, 0) AS expected
FROM "CreditBalance" cb
LEFT JOIN (SELECT "creditBalanceId", sum("creditsUsed")::bigint AS used
           FROM "UsageHistory" GROUP BY 1) u ON u."creditBalanceId" = cb.id
WHERE cb."creditsRemaining" <> $1::bigint - coalesce(u.used, 0)
ORDER BY 1 LIMIT 5
"""


class ExactlyOnceViolation(Exception):
    def __init__(self, measurement: str, problems: list[str]) -> None:
        self.measurement = measurement
        self.problems = problems
        super().__init__(f"{measurement}: " + "; ".join(problems))


async def _count(conn, table: str) -> int:
    return await conn.fetchval(f"SELECT count(*) FROM {table}")


async def _common(conn, expected: Expected) -> list[str]:
    problems = []
    rows = await _count(conn, '"UsageHistory"')
    if rows != expected.applied:
        problems.append(f'"UsageHistory" has {rows} rows, expected {expected.applied}')
    actual = await get_balances(conn, list(expected.balances))
    wrong = [(c, b, actual.get(c)) for c, b in expected.balances.items() if actual.get(c) != b]
    if wrong:
        sample = ", ".join(f"{c}: expected {b}, actual {a}" for c, b, a in wrong[:5])
        problems.append(f"{len(wrong)} balances differ from the computed ones ({sample})")
    for r in await conn.fetch(_HISTORY_MISMATCH, START_CREDITS):
        problems.append(f'{r["clerk_user_id"]}: balance {r["actual"]} != start - "UsageHistory" {r["expected"]}')
    return problems


async def verify_product(dsn: str, expected: Expected, measurement: str, *, grants: bool = False,
                         grant_remaining: Mapping[tuple[str, str], int] | None = None) -> str:  # fmt: skip
    """`grants`: also reconcile's grant checks (every balance = Σ its live grants, every grant =
    its opening + what the journal moved); `grant_remaining`: what each live grant must hold,
    (clerk id, source) -> remaining (bench/grants.py)."""
    conn = await db.connect(dsn)
    try:
        problems = await _common(conn, expected)
        for table in ("worker.journal", "worker.event_log"):
            n = await _count(conn, table)
            if n != expected.applied:
                problems.append(f"{table} has {n} rows, expected {expected.applied}")
        rejected = await _count(conn, "worker.rejection")
        if rejected:
            reasons = await conn.fetch("SELECT reason, count(*) AS n FROM worker.rejection GROUP BY 1")
            problems.append("rejections: " + ", ".join(f"{r['reason']}×{r['n']}" for r in reasons))
        drift = await find_balance_drift(conn)
        if drift:
            problems.append(f"find_balance_drift: {len(drift)} users, e.g. {drift[0]}")
        if grants or grant_remaining is not None:
            grant_drift = await find_grant_drift(conn)
            if grant_drift:
                problems.append(f"find_grant_drift: {len(grant_drift)} findings, e.g. {grant_drift[0]}")
        if grant_remaining is not None:
            problems += await grant_problems(conn, grant_remaining)
    finally:
        await conn.close()
    if problems:
        raise ExactlyOnceViolation(measurement, problems)
    checked = ", grants" if grant_remaining is not None else (", grants reconciled" if grants else "")
    return f"{expected.applied} rows, {len(expected.balances)} balances, no drift{checked}"


async def verify_baseline(dsn: str, expected: Expected, measurement: str) -> str:
    conn = await db.connect(dsn)
    try:
        problems = await _common(conn, expected)
    finally:
        await conn.close()
    if problems:
        raise ExactlyOnceViolation(measurement, problems)
    return f"{expected.applied} rows, {len(expected.balances)} balances"


async def verify_untouched(dsn: str, measurement: str) -> str:
    """The no-op run must not have written anything."""
    conn = await db.connect(dsn)
    try:
        problems = [
            f"{t} has {n} rows, expected 0"
            for t in ('"UsageHistory"', "worker.journal", "worker.event_log")
            if (n := await _count(conn, t))
        ]
    finally:
        await conn.close()
    if problems:
        raise ExactlyOnceViolation(measurement, problems)
    return "nothing written"
