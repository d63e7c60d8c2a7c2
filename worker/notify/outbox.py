"""Write notices to the outbox in the caller's transaction: they commit with the change that
causes them, or not at all. Nothing is written while no endpoint is set (settings.notify_targets).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import asyncpg
import msgspec

from ..ledger.decide import Account, Plan
from ..repo import notifications as repo
from ..settings import Settings
from . import notices as rules
from .notices import Notice

_encode = msgspec.json.Encoder().encode


async def record(conn: asyncpg.Connection, settings: Settings, notices: Sequence[Notice]) -> int:
    """Write these notices (skipping keys already written), each with a delivery per endpoint
    that takes its type. Returns how many were new."""
    targets = settings.notify_targets
    if not notices or not targets:
        return 0
    once: dict[str, Notice] = {}
    for n in notices:  # a key twice in one call (an invalid event sent twice in a message): the first
        once.setdefault(n.key, n)
    rows = [(n.key, n.webhook_id, n.type, n.clerk_user_id, _encode(n.data).decode()) for n in once.values()]
    deliveries = rules.for_endpoints(list(once.values()), {e.name: e for e in targets})
    return await repo.insert_notifications(conn, rows, deliveries)


async def record_plan(
    conn: asyncpg.Connection, settings: Settings, plan: Plan, accounts: Iterable[Account],
    rejections: Sequence[tuple] = (),
) -> int:
    """The notices of a ledger plan (and of the usage rejections it stores), written with it.
    `accounts`: the balances the plan changes, as they were before it."""
    if not settings.notify_targets:
        return 0
    notices = rules.from_plan(plan, accounts, settings.notify_low_thresholds)
    if rejections:
        notices += rules.rejected(rejections)
    return await record(conn, settings, notices)
