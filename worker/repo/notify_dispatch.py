"""The dispatcher's queries (`sql/queries/notify_dispatch.sql`): claim deliveries, record outcomes.

Each is one short autocommit statement: no transaction is held across an HTTP call. The outcome
of an attempt is recorded only while the claim that made it still holds the delivery (its
`attempts`): a claim whose lease ended may have been taken again.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, NamedTuple

import asyncpg

from .. import db


class Claim(NamedTuple):
    endpoint: str
    seq: int
    lane: str
    attempts: int  # this attempt's number (1: the first); the claim's token
    webhook_id: str
    type: str
    data: Any
    created_at: datetime


async def claim_deliveries(conn: asyncpg.Connection, endpoints: Sequence[str], limit: int,
                           lease_s: float) -> list[Claim]:  # fmt: skip
    """Up to `limit` due lane heads of these endpoints, in flight for `lease_s` seconds."""
    return [Claim(*r) for r in await db.fetch(conn, "claim_deliveries", list(endpoints), limit, lease_s)]


async def mark_delivered(conn: asyncpg.Connection, claim: Claim, status: int) -> tuple[bool, int]:
    """(recorded: the claim still held it, deliveries of the endpoint made due now)."""
    row = await db.fetchrow(conn, "mark_delivered", claim.endpoint, claim.seq, claim.attempts, status)
    assert row is not None
    return row["delivered"] == 1, row["hastened"]


async def schedule_retry(conn: asyncpg.Connection, claim: Claim, status: int | None, error: str,
                         delay_s: float) -> bool:  # fmt: skip
    """Due again in `delay_s`; False if the claim no longer held it."""
    done = await db.execute(conn, "schedule_retry", claim.endpoint, claim.seq, claim.attempts, status, error, delay_s)
    return done == "UPDATE 1"


async def mark_failed(conn: asyncpg.Connection, claim: Claim, status: int | None, error: str) -> bool:
    """`failed` for good; False if the claim no longer held it."""
    done = await db.execute(conn, "mark_failed", claim.endpoint, claim.seq, claim.attempts, status, error)
    return done == "UPDATE 1"
