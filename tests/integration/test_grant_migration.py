"""Migration 0010 (credit grants) on a populated database: every balance becomes one grant, the
app's rows stay as they were, and reconcile finds nothing (balances vs journal, balances vs
grants, grants vs journal)."""

from __future__ import annotations

import asyncpg

from worker import db
from worker.migrate import APP_TABLES, discover, migrate
from worker.ops.reconcile import reconcile

GRANTS = "0010"

# A database as 0009 left it, written as the app and the worker did: users with positive, zero
# and negative balances, some touched by the worker (opening + journal), some never.
POPULATE = """
INSERT INTO "User" ("id", "clerkId", "updatedAt")
SELECT 'u' || lpad(i::text, 4, '0'), 'user_m' || i, CURRENT_TIMESTAMP FROM generate_series(1, 60) i;
INSERT INTO "CreditBalance" ("id", "userId", "clerkUserId", "creditsRemaining", "updatedAt")
SELECT 'cb' || i, 'u' || lpad(i::text, 4, '0'), 'user_m' || i, (i % 9 - 4) * 10, CURRENT_TIMESTAMP
FROM generate_series(1, 60) i;
-- touched users (i % 4 <> 0): opening = balance + 5 + 7, then a usage of 5 and an adjustment of -7
INSERT INTO worker.balance_opening (user_id, opening)
SELECT 'u' || lpad(i::text, 4, '0'), (i % 9 - 4) * 10 + 12
FROM generate_series(1, 60) i WHERE i % 4 <> 0;
INSERT INTO "UsageHistory" ("id", "userId", "creditBalanceId", "operationType", "creditsUsed")
SELECT 'use-' || i, 'u' || lpad(i::text, 4, '0'), 'cb' || i, 'AI_TEXT_CHAT', 5
FROM generate_series(1, 60) i WHERE i % 4 <> 0;
INSERT INTO worker.journal (event_id, user_id, kind, delta, reference, reason)
SELECT 'use-' || i, 'u' || lpad(i::text, 4, '0'), 'usage', -5, 'use-' || i, 'AI_TEXT_CHAT'
FROM generate_series(1, 60) i WHERE i % 4 <> 0;
INSERT INTO worker.journal (event_id, user_id, kind, delta, reason)
SELECT 'adj-' || i, 'u' || lpad(i::text, 4, '0'), 'adjustment', -7, 'test'
FROM generate_series(1, 60) i WHERE i % 4 <> 0;
"""

JOURNAL = "SELECT event_id, user_id, kind, delta, reference, reason FROM worker.journal ORDER BY 1"


async def app_rows(conn: asyncpg.Connection) -> dict[str, list[str]]:
    return {
        table: [r[0] for r in await conn.fetch(f'SELECT t::text FROM "{table}" t ORDER BY 1')]
        for table in APP_TABLES
    }


async def test_0010_turns_every_balance_into_one_grant(empty_database_url):
    conn = await db.connect(empty_database_url)
    try:
        migrations = discover()
        before = [m for m in migrations if m.version[:4] < GRANTS]
        [grants] = [m for m in migrations if m.version[:4] == GRANTS]
        await migrate(conn, with_app_schema=True, migrations=before)
        await conn.execute(POPULATE)
        app = await app_rows(conn)
        journal = await conn.fetch(JOURNAL)
        balances = {r[0]: r[1] for r in await conn.fetch(
            'SELECT "userId", "creditsRemaining" FROM "CreditBalance"')}  # fmt: skip
        assert {b > 0 for b in balances.values()} == {True, False}
        assert min(balances.values()) < 0 and 0 in balances.values()

        report = await migrate(conn, migrations=[*before, grants])
        assert report.applied == [grants.version]

        rows = await conn.fetch("SELECT * FROM worker.credit_grant ORDER BY user_id")
        assert [r["user_id"] for r in rows] == sorted(u for u, b in balances.items() if b != 0)
        for r in rows:
            b = balances[r["user_id"]]
            kind = "legacy" if b > 0 else "overdraft"
            assert r["grant_id"] == f"{kind}/{r['user_id']}" and r["source"] == kind
            assert r["remaining"] == r["opening"] == b and r["state"] == "live"
            assert r["amount"] == max(b, 0) and r["expires_at"] is None and r["ended_at"] is None
            assert r["priority"] == (10 if b > 0 else 2_147_483_647)
        assert await app_rows(conn) == app
        assert await conn.fetch(JOURNAL) == journal
        assert await conn.fetchval("SELECT count(grants) FROM worker.journal") == 0

        await migrate(conn, migrations=migrations)  # the later ones too: reconcile reads worker.credit_hold (0011)
        result = await reconcile(conn, page_size=7)
        assert result.drift == [] and result.without_grants == []
        assert result.checked == 45 and result.grants_checked == 60
    finally:
        await conn.close()
