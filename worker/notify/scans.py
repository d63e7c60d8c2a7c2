"""Notifications of what happens by the clock, not by a ledger change: a grant about to expire
(credits.expiring, `notify_expiring_days` ahead) and an event waiting too long (event.waiting,
after `notify_waiting_after_s`). The dispatcher (`pedro-worker notify`) runs `scan` every few
seconds; each row is marked noticed in the transaction that writes its notification, so each
is notified once, and a crash in between leaves both undone.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import asyncpg

from ..repo import notifications as repo
from ..settings import Settings
from . import notices as rules
from .outbox import record

BATCH = 500  # rows per transaction


async def scan(conn: asyncpg.Connection, settings: Settings, now: datetime) -> int:
    """Write the clock's notifications that are due; returns how many were written."""
    if not settings.notify_targets:
        return 0
    written = 0
    horizon = now + timedelta(days=settings.notify_expiring_days)
    cutoff = now - timedelta(seconds=settings.notify_waiting_after_s)
    while True:
        async with conn.transaction():
            grants = await repo.notice_expiring_grants(conn, horizon, BATCH, now)
            waits = await repo.notice_long_waiting(conn, cutoff, BATCH, now)
            notices = [rules.expiring(g.grant_id, g.user_id, g.clerk_user_id, g.source, g.remaining, g.expires_at)
                       for g in grants if g.remaining > 0]  # fmt: skip
            notices += [rules.waited(w.event_id, w.queue, w.event_type, w.clerk_user_id, w.reason, w.waits_for,
                                     w.detail, w.first_waited_at) for w in waits]  # fmt: skip
            written += await record(conn, settings, notices)
        if len(grants) < BATCH and len(waits) < BATCH:
            return written
