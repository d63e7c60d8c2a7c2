"""What the worker writes reads back cleanly through a real Prisma Client (Prisma 7, node).

The app reads `"CreditBalance"` and `"UsageHistory"` with its Prisma Client: the rows the worker
writes with raw SQL must come back with the right values and types (ids, enum, Json, DateTime in
UTC), and the relations between them must hold. The client is generated from sql/schema.prisma
by tests/prisma_client/ (installed once per machine, see tests/integration/prisma_client.py) and
connects as the database owner, as the app does.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from tests.integration.helpers import make_user, refund, usage
from tests.integration.prisma_client import node_database_url
from worker.ledger.apply import apply_usage_batch
from worker.ledger.decide import APPLIED

# 09:00:00.123456 at -03:00 (São Paulo) is 12:00:00.123 UTC in a timestamp(3) column.
OCCURRED = datetime(2026, 11, 1, 9, 0, 0, 123456, tzinfo=timezone(timedelta(hours=-3)))
OCCURRED_UTC_MS = datetime(2026, 11, 1, 12, 0, 0, 123000, tzinfo=UTC)
DETAILS = {
    "model": "gpt-image-1",
    "tokens": {"input": 1200, "output": 34},
    "tags": ["chat", "ação ✓"],
    "ratio": 0.25,
    "cached": False,
    "nothing": None,
}


def as_utc(value: datetime) -> datetime:
    """asyncpg gives the timestamp(3) columns as naive datetimes; they hold UTC."""
    assert value.tzinfo is None
    return value.replace(tzinfo=UTC)


async def test_a_usage_reads_back_through_prisma_client(conn, settings, admin_database_url, prisma_reader):
    user_id = await make_user(conn, "prisma_reader_u1", credits=100)
    event = usage("prisma_reader_u1", id="chat-prisma-1", credits=7, op="AI_IMAGE_GENERATION",
                  at=OCCURRED, details=DETAILS)  # fmt: skip
    result = await apply_usage_batch(conn, [event], settings)
    assert [o.status for o in result.outcomes] == [APPLIED]

    # One node process for all the reads (each costs ~0.6 s): the balance, the usage row, the
    # relations the app follows, and Prisma-side filters on the DateTime, enum and Json columns.
    [balance], [row], [user], matches = prisma_reader.read_many(admin_database_url, [
        {"model": "creditBalance", "where": {"clerkUserId": "prisma_reader_u1"}},
        {"model": "usageHistory", "where": {"userId": user_id}},
        {"model": "user", "where": {"clerkId": "prisma_reader_u1"},
         "include": {"creditBalance": True, "usageHistory": True}},
        {"model": "usageHistory", "where": {
            "timestamp": {"gte": OCCURRED_UTC_MS, "lt": OCCURRED_UTC_MS + timedelta(milliseconds=1)},
            "operationType": "AI_IMAGE_GENERATION",
            "details": {"path": ["tokens", "input"], "equals": 1200},
        }},
    ])  # fmt: skip

    db_balance = await conn.fetchrow('SELECT * FROM "CreditBalance" WHERE "userId" = $1', user_id)
    assert balance["creditsRemaining"] == 93
    assert balance["userId"] == user_id and balance["id"] == db_balance["id"]
    for column in ("lastSyncedAt", "createdAt", "updatedAt"):
        assert balance[column] == as_utc(db_balance[column]), column
        assert balance[column].tzinfo is not None and balance[column].utcoffset() == timedelta(0)
    assert balance["updatedAt"] >= balance["createdAt"]

    assert row == {
        "id": "chat-prisma-1",
        "userId": user_id,
        "creditBalanceId": balance["id"],
        "operationType": "AI_IMAGE_GENERATION",
        "creditsUsed": 7,
        "details": DETAILS,
        "timestamp": OCCURRED_UTC_MS,
    }
    assert user["id"] == user_id and user["isActive"] is True
    assert user["creditBalance"] == balance
    assert user["usageHistory"] == [row]
    assert matches == [row]


async def test_a_refund_reads_back_as_a_negative_row_pointing_at_its_usage(
    conn, settings, admin_database_url, prisma_reader
):
    user_id = await make_user(conn, "prisma_reader_u2", credits=10)
    used = usage("prisma_reader_u2", id="chat-prisma-2", credits=4, details={"model": "m"})
    give_back = refund("prisma_reader_u2", of="chat-prisma-2", id="refund-prisma-2")
    result = await apply_usage_batch(conn, [used, give_back], settings)
    assert [o.status for o in result.outcomes] == [APPLIED, APPLIED]

    rows, [balance] = prisma_reader.read_many(admin_database_url, [
        {"model": "usageHistory", "where": {"userId": user_id}, "orderBy": {"creditsUsed": "desc"}},
        {"model": "creditBalance", "where": {"userId": user_id}},
    ])  # fmt: skip
    assert [(r["id"], r["creditsUsed"], r["operationType"], r["details"]) for r in rows] == [
        ("chat-prisma-2", 4, "AI_TEXT_CHAT", {"model": "m"}),
        ("refund-prisma-2", -4, "AI_TEXT_CHAT", {"refundOf": "chat-prisma-2"}),
    ]
    assert all(isinstance(r["timestamp"], datetime) and r["timestamp"].tzinfo for r in rows)
    assert balance["creditsRemaining"] == 10


@pytest.mark.parametrize(("url", "expected"), [
    ("postgresql://postgres@127.0.0.1:5432/db", "postgresql://postgres@127.0.0.1:5432/db"),
    ("postgresql://u:p%40ss@db.example:6543/db?sslmode=require",
     "postgresql://u:p%40ss@db.example:6543/db?sslmode=require"),
    ("postgresql://u@/db?host=/run/pg", "postgresql://u@localhost/db?host=/run/pg"),
    ("postgresql://u@:5433/db?host=/run/pg", "postgresql://u@localhost:5433/db?host=/run/pg"),
    ("postgresql://u@%2Frun%2Fpg:5433/db", "postgresql://u@localhost:5433/db?host=/run/pg"),
])  # fmt: skip
def test_database_urls_are_rewritten_so_node_postgres_reads_them_as_libpq_does(url, expected):
    """libpq takes a unix-socket directory as `?host=` with an empty host, or as the host itself;
    node-postgres parses URLs with WHATWG `URL` (no empty host before a port) and takes only
    `?host=` as a socket directory."""
    assert node_database_url(url) == expected
