"""(a) The naive reference: one ORM-style transaction per event, as the app would write it.

    BEGIN; SELECT … FOR UPDATE; UPDATE "CreditBalance"; INSERT "UsageHistory"; COMMIT

Five round trips and one commit flush per event. The event id is the "UsageHistory" id, so a
redelivered event fails on the primary key instead of debiting twice. This is a yardstick
written for the bench, not product code.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import asyncpg

SELECT_BALANCE_FOR_UPDATE = """
SELECT id, "userId", "creditsRemaining" FROM "CreditBalance" WHERE "clerkUserId" = $1 FOR UPDATE
"""
UPDATE_BALANCE = """
UPDATE "CreditBalance" SET "creditsRemaining" = $2, "updatedAt" = CURRENT_TIMESTAMP WHERE id = $1
"""
INSERT_USAGE = """
INSERT INTO "UsageHistory" ("id", "userId", "creditBalanceId", "operationType", "creditsUsed", "details", "timestamp")
VALUES ($1, $2, $3, $4::"OperationType", $5, $6::jsonb, $7)
"""


class InsufficientCredits(Exception):
    pass


async def apply_one(conn: asyncpg.Connection, event: dict[str, Any]) -> None:
    occurred = datetime.fromisoformat(event["occurredAt"]).astimezone(UTC).replace(tzinfo=None)
    async with conn.transaction():
        row = await conn.fetchrow(SELECT_BALANCE_FOR_UPDATE, event["clerkUserId"])
        if row is None:
            raise LookupError(f"no balance for {event['clerkUserId']}")
        credits = event["credits"]
        if row["creditsRemaining"] < credits:
            raise InsufficientCredits(event["id"])
        await conn.execute(UPDATE_BALANCE, row["id"], row["creditsRemaining"] - credits)
        await conn.execute(
            INSERT_USAGE, event["id"], row["userId"], row["id"], event["operationType"], credits,
            json.dumps(event["details"], separators=(",", ":")), occurred,
        )  # fmt: skip
