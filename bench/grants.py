"""The bench users' credit grants (worker.credit_grant, issue 18), laid out before a measurement.

Every credit a user holds belongs to a live grant; a debit burns the user's live grants in order
(worker/ledger/grants.py). Two layouts, both inserted with SQL before anything is measured, so
that what (c) measures is the burn-down, never the absorption of a plain balance:

- **one grant** (every measurement's database, from the template): the user's balance is one
  non-expiring `legacy/<user id>` grant, exactly what migration 0010 makes of a balance that
  existed before grants (and what the worker would make of it on first touch).
- **three grants** (path c3): `plan/bench-<user id>/1` (priority 5, expires in 30 days),
  `starter/<clerk id>` (priority 10, never expires) and `pack/bench-<user id>` (priority 20,
  never expires). The plan and the starter grant each hold a third of what the measured events
  take from that user (at least 1 credit), the pack the rest of the balance: so the debits of
  nearly every user run the plan grant dry, then the starter grant, and go on into the pack
  while measured — the expensive case (two or three grants read, moved and written per user,
  allocations of several pairs). Σ remaining = the user's `"CreditBalance"."creditsRemaining"`.

Each grant's `opening` is its remaining: credits no journal movement gave (reconcile's per-grant
check: remaining = opening + what the journal moved).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

import asyncpg

from worker import db

# One legacy grant per balance: migration 0010's statement for balances >= 0.
ONE_GRANT_SQL = """
INSERT INTO worker.credit_grant (grant_id, user_id, source, amount, remaining, opening, priority,
                                 effective_at, reference, state)
SELECT 'legacy/' || cb."userId", cb."userId", 'legacy', cb."creditsRemaining", cb."creditsRemaining",
       cb."creditsRemaining", 10, now(), 'balance before grants', 'live'
FROM "CreditBalance" cb
WHERE cb."creditsRemaining" > 0
ON CONFLICT (grant_id) DO NOTHING
"""

# $1 clerk user ids text[], $2 plan credits int[], $3 starter credits int[] (the pack: the rest)
_THREE_GRANTS_SQL = """
WITH shares AS (
    SELECT cb."userId" AS user_id, cb."clerkUserId" AS clerk_id, cb."creditsRemaining" AS balance,
           s.plan, s.starter
    FROM unnest($1::text[], $2::int[], $3::int[]) AS s(clerk_id, plan, starter)
    JOIN "CreditBalance" cb ON cb."clerkUserId" = s.clerk_id
)
INSERT INTO worker.credit_grant (grant_id, user_id, source, amount, remaining, opening, priority,
                                 effective_at, expires_at, reference, state, period_months)
SELECT g.grant_id, s.user_id, g.source, g.credits, g.credits, g.credits, g.priority,
       now() - interval '1 day', g.expires_at, 'bench', 'live', g.period_months
FROM shares s
CROSS JOIN LATERAL (VALUES
    ('plan/bench-' || s.user_id || '/1', 'plan', s.plan, 5, now() + interval '30 days', 1),
    ('starter/' || s.clerk_id, 'starter', s.starter, 10, NULL::timestamptz, NULL::int),
    ('pack/bench-' || s.user_id, 'pack', s.balance - s.plan - s.starter, 20, NULL::timestamptz, NULL::int)
) AS g(grant_id, source, credits, priority, expires_at, period_months)
"""

# What each live grant holds now, by Clerk user and source.
_LIVE_GRANTS_SQL = """
SELECT cb."clerkUserId" AS clerk_id, g.source, g.remaining
FROM worker.credit_grant g JOIN "CreditBalance" cb ON cb."userId" = g.user_id
WHERE g.state = 'live'
"""

# Movements that took from more than one grant (a debit crossing from one grant to the next).
CROSSINGS_SQL = "SELECT count(*) FROM worker.journal WHERE jsonb_array_length(grants) > 1"

BURN_ORDER = ("plan", "starter", "pack")


def used_by_user(events: Iterable[Mapping[str, Any]]) -> Counter:
    """Credits the events take from each Clerk user."""
    used: Counter = Counter()
    for event in events:
        used[event["clerkUserId"]] += event["credits"]
    return used


def three_grant_shares(clerk_ids: Iterable[str], used: Mapping[str, int]) -> dict[str, tuple[int, int]]:
    """Clerk id -> (plan credits, starter credits): a third each of what the run takes, >= 1."""
    return {c: (max(1, used.get(c, 0) // 3), max(1, used.get(c, 0) // 3)) for c in clerk_ids}


async def lay_out_three_grants(dsn: str, shares: Mapping[str, tuple[int, int]]) -> int:
    """Replace every user's grants by the three-grant layout (module docstring). Returns the
    number of grants inserted."""
    conn = await db.connect(dsn)
    try:
        clerks = sorted(shares)
        async with conn.transaction():
            await conn.execute("DELETE FROM worker.credit_grant")
            status = await conn.execute(
                _THREE_GRANTS_SQL, clerks, [shares[c][0] for c in clerks], [shares[c][1] for c in clerks]
            )
        await conn.execute("VACUUM ANALYZE worker.credit_grant")  # as a settled table would be
    finally:
        await conn.close()
    return int(status.rsplit(" ", 1)[-1])


def expected_three_grants(
    shares: Mapping[str, tuple[int, int]], balances: Mapping[str, int], start: int, used: Mapping[str, int]
) -> dict[tuple[str, str], int]:
    """(clerk id, source) -> remaining after `used`, burnt plan -> starter -> pack."""
    out: dict[tuple[str, str], int] = {}
    for clerk, (plan, starter) in shares.items():
        left = used.get(clerk, 0)
        for source, held in zip(BURN_ORDER, (plan, starter, start - plan - starter)):
            part = min(held, left)
            out[(clerk, source)] = held - part
            left -= part
        assert left == 0 and sum(out[(clerk, s)] for s in BURN_ORDER) == balances[clerk]
    return out


async def grant_problems(conn: asyncpg.Connection, expected: Mapping[tuple[str, str], int]) -> list[str]:
    """Differences between the live grants and `expected` ((clerk id, source) -> remaining)."""
    actual = {(r["clerk_id"], r["source"]): r["remaining"] for r in await conn.fetch(_LIVE_GRANTS_SQL)}
    wrong = [(k, v, actual.get(k)) for k, v in expected.items() if actual.get(k) != v]
    extra = sorted(actual.keys() - expected.keys())
    problems = []
    if wrong:
        sample = ", ".join(f"{c} {s}: expected {v}, actual {a}" for (c, s), v, a in wrong[:5])
        problems.append(f"{len(wrong)} grants differ from the burn order's result ({sample})")
    if extra:
        problems.append(f"{len(extra)} unexpected live grants, e.g. {extra[:3]}")
    return problems


async def count_crossings(dsn: str) -> int:
    conn = await db.connect(dsn)
    try:
        return await conn.fetchval(CROSSINGS_SQL)
    finally:
        await conn.close()
