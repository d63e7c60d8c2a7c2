"""The chaos run's check of the outbox: a crash neither loses nor invents a notification.

Every journal movement that notifies (docs/ledger.md, Notifications) has its notification, and
every movement notification names a movement that committed; every hold released at its expiry
has its hold.expired; every notification has a delivery for the run's endpoint; and each
credits.low reports a real crossing of its threshold.
"""

from __future__ import annotations

import asyncpg

# (notification type, the journal rows that make it), as worker/notify/notices.py decides
_MOVEMENTS = (
    ("credits.granted", "(j.kind IN ('grant', 'grant_start', 'starter', 'grant_restore', 'adjustment') AND j.delta > 0)"),
    ("credits.reversed", "(j.kind = 'grant_reversal' AND j.delta < 0)"),
    ("credits.expired", "(j.kind = 'grant_expiry' AND j.delta < 0)"),
)


async def check_notifications(conn: asyncpg.Connection, endpoints: int = 1) -> tuple[dict[str, int], list[str]]:
    """(notifications written by type, findings)."""
    findings: list[str] = []
    for notice_type, rows in _MOVEMENTS:
        lost = await conn.fetch(
            f"SELECT j.event_id FROM worker.journal j WHERE {rows} AND NOT EXISTS "
            f"(SELECT 1 FROM worker.notification n WHERE n.key = '{notice_type}/' || j.event_id) LIMIT 5")
        findings += [f"{notice_type} missing for movement {r['event_id']}" for r in lost]
        invented = await conn.fetch(
            f"SELECT n.key FROM worker.notification n WHERE n.type = '{notice_type}' AND NOT EXISTS "
            f"(SELECT 1 FROM worker.journal j WHERE '{notice_type}/' || j.event_id = n.key AND {rows}) LIMIT 5")
        findings += [f"{r['key']} names no such movement" for r in invented]
    holds = await conn.fetch(
        "SELECT h.hold_id FROM worker.credit_hold h WHERE h.status = 'expired' AND NOT EXISTS "
        "(SELECT 1 FROM worker.notification n WHERE n.key = 'hold.expired/' || h.hold_id) LIMIT 5")
    findings += [f"hold.expired missing for hold {r['hold_id']}" for r in holds]
    holds = await conn.fetch(
        "SELECT n.key FROM worker.notification n WHERE n.type = 'hold.expired' AND NOT EXISTS "
        "(SELECT 1 FROM worker.credit_hold h WHERE 'hold.expired/' || h.hold_id = n.key AND h.status = 'expired') LIMIT 5")
    findings += [f"{r['key']}: the hold did not expire" for r in holds]
    undelivered = await conn.fetchval(
        "SELECT count(*) FROM worker.notification n WHERE "
        "(SELECT count(*) FROM worker.notification_delivery d WHERE d.seq = n.seq) <> $1", endpoints)
    if undelivered:
        findings.append(f"{undelivered} notifications without exactly {endpoints} delivery row(s)")
    crossings = await conn.fetch(
        "SELECT key FROM worker.notification WHERE type = 'credits.low' AND NOT "
        "((data->>'previousBalance')::int > (data->>'threshold')::int "
        " AND (data->>'threshold')::int >= (data->>'balance')::int) LIMIT 5")
    findings += [f"{r['key']} crossed nothing" for r in crossings]
    counts = {r["type"]: r["n"] for r in await conn.fetch(
        "SELECT type, count(*) AS n FROM worker.notification GROUP BY type ORDER BY type")}  # fmt: skip
    return counts, findings
