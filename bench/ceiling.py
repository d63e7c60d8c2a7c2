"""(k) The write ceiling: the rows (c) writes, handed to PostgreSQL as cheaply as it takes them.

A physical yardstick for (c), measured in the same run: no queue, no validation, no decisions,
no lookups. Each batch of `--batch-size` events (the size of (b)'s batches and of (c)'s messages)
is one transaction on one of `processes × micro_batch_concurrency` connections (bench/lanes.py;
`--ceiling-connections` per process instead): as many transactions in flight as (c)'s fleet has,
one per worker process by default. Each
writes what (c)'s plan writes for a `usage.recorded` on users with one live grant each
(worker/ledger/decide.py, write_ledger):

    COPY worker.event_log       (event_id, event_type, payload_hash, clerk_user_id, raw_hash)
    COPY "UsageHistory"         (id, userId, creditBalanceId, operationType, creditsUsed, details, timestamp)
    COPY worker.journal         (event_id, user_id, kind, delta, refund_of, reference, reason, grants)
    COPY worker.balance_opening (user_id, opening)   the users whose first event is in this batch
    one UPDATE                  "CreditBalance" and each user's `legacy/…` grant by the batch's
                                deltas, summed per user (a CTE: one statement, one round trip)
    COMMIT

COPY is asyncpg's binary `copy_records_to_table`; the columns left out (`processed_at`,
`created_at`, `opened_at`) take their defaults, as in write_ledger's inserts. The rows are built
in the lane processes before the clock starts (from the events and the seeded users). The update
comes last, so a balance row stays locked only for it and the commit; every lane takes the rows
in the same order, and a deadlock is retried all the same (counted). Afterwards the usual
product checks (bench/verify.py, grants included) must pass: the same rows as (c)'s, or the run
fails.

Not (b)'s 2 × 8 lanes: sixteen transactions at once, without the worker's lock statement first,
share balance rows through the foreign-key checks of "UsageHistory" (`FOR KEY SHARE`) while
others update them, and PostgreSQL spent 131-143 µs of CPU per event instead of 55-59 (uniform,
11-12k events/s against 27k with one connection per process). Updating first instead holds the
locks through the COPYs: 15-17k/s (docs/performance.md, "The HTTP path (h), (i), the write
ceiling (k)…").
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from typing import Any

import asyncpg

from worker import codec

from .workload import START_CREDITS

USAGE = "usage.recorded"
_USERS = 'SELECT "clerkUserId", "userId", id FROM "CreditBalance"'
# $1 "CreditBalance".id text[] (sorted), $2 "User".id text[] (the same order), $3 delta int[]
_UPDATE = """
WITH d AS (SELECT * FROM unnest($1::text[], $2::text[], $3::int[]) AS d(balance_id, user_id, delta)),
balances AS (
    UPDATE "CreditBalance" cb
    SET "creditsRemaining" = cb."creditsRemaining" + d.delta,
        "updatedAt" = CURRENT_TIMESTAMP, "lastSyncedAt" = CURRENT_TIMESTAMP
    FROM d WHERE cb.id = d.balance_id
)
UPDATE worker.credit_grant g SET remaining = g.remaining + d.delta
FROM d WHERE g.grant_id = 'legacy/' || d.user_id
"""
_TABLES = (
    ("event_log", "worker", ("event_id", "event_type", "payload_hash", "clerk_user_id", "raw_hash")),
    ("UsageHistory", "public", ("id", "userId", "creditBalanceId", "operationType", "creditsUsed", "details",
                                "timestamp")),
    ("journal", "worker", ("event_id", "user_id", "kind", "delta", "refund_of", "reference", "reason", "grants")),
    ("balance_opening", "worker", ("user_id", "opening")),
)  # fmt: skip


def deal_openings(batches: list[list[dict[str, Any]]]) -> list[tuple[list[dict[str, Any]], list[str]]]:
    """Each batch with the Clerk ids whose opening it writes: those whose first event it holds."""
    seen: set[str] = set()
    out = []
    for batch in batches:
        first = sorted({e["clerkUserId"] for e in batch} - seen)
        seen.update(first)
        out.append((batch, first))
    return out


def _naive_utc(iso: str) -> datetime:
    return datetime.fromisoformat(iso).astimezone(UTC).replace(tzinfo=None)


def batch_rows(batch: list[dict[str, Any]], opening_users: list[str], users: dict[str, tuple[str, str]]) -> tuple:
    """The rows of one batch, table by table (_TABLES), and its balance and grant update.
    `users`: Clerk id -> ("User".id, "CreditBalance".id)."""
    log, usage, journal = [], [], []
    deltas: Counter = Counter()
    for e in batch:
        user_id, balance_id = users[e["clerkUserId"]]
        credits, op = e["credits"], e["operationType"]
        digest = codec.payload_hash(e)
        log.append((e["id"], USAGE, digest, e["clerkUserId"], digest))
        usage.append((e["id"], user_id, balance_id, op, credits, codec.compact(e["details"]).decode(),
                      _naive_utc(e["occurredAt"])))  # fmt: skip
        journal.append((e["id"], user_id, "usage", -credits, None, e["id"], op,
                        f'[["legacy/{user_id}",{-credits}]]'))  # fmt: skip
        deltas[balance_id, user_id] -= credits
    openings = [(users[c][0], START_CREDITS) for c in opening_users]
    ordered = sorted(deltas.items())
    update = ([b for (b, _), _ in ordered], [u for (_, u), _ in ordered], [d for _, d in ordered])
    return (log, usage, journal, openings), update


async def prepare_lanes(conns: list[asyncpg.Connection], lanes: list[list[tuple]]) -> list[list[tuple]]:
    """Before the clock: asyncpg's binary jsonb codec on every connection (the project's is text,
    which binary COPY cannot carry), and each lane's batches as rows."""
    for conn in conns:
        await conn.reset_type_codec("jsonb", schema="pg_catalog")
    users = {r[0]: (r[1], r[2]) for r in await conns[0].fetch(_USERS)}
    return [[batch_rows(batch, first, users) for batch, first in lane] for lane in lanes]


async def copy_lane(conn: asyncpg.Connection, batches: list[tuple], settings: Any) -> Counter:
    """Each batch in its transaction (module docstring); outcomes: applied events, deadlocks retried."""
    counts: Counter = Counter()
    for tables, update in batches:
        while True:
            try:
                async with conn.transaction():
                    for (table, schema, columns), records in zip(_TABLES, tables):
                        if records:
                            await conn.copy_records_to_table(table, schema_name=schema, columns=columns,
                                                             records=records)  # fmt: skip
                    await conn.execute(_UPDATE, *update)
            except asyncpg.DeadlockDetectedError:
                counts["deadlock_retried"] += 1
                continue
            counts["applied"] += len(tables[1])
            break
    return counts
