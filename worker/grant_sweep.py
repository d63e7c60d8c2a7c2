"""The grant sweep: expires grants and starts allowances on time, in every worker process, one
sweep at a time among all processes and hosts.

Why an advisory lock in PostgreSQL rather than a periodic message or a leader in Redis: the
sweep's work is a PostgreSQL transaction anyway, and a transaction-level lock
(`pg_try_advisory_xact_lock`) is held exactly as long as that transaction — a process killed
mid-sweep loses it with its connection, and the next process's turn (every
`PEDRO_GRANT_SWEEP_MS`, 10 s by default) simply does the work, with nothing to expire or renew.
No extra part to run (no cron, no beat process), and no second instance to elect. Exactly once
does not rest on the lock: a grant's state is read under its user's balance lock, and its
`expire/<grant id>` or `start/<grant id>` journal key can be written once (domain/expiry.py).

Between sweeps, nothing reads a wrong balance from the worker: a debit never takes from a grant
past its expiry (grants.Grant.usable), whether or not the sweep has run. `"CreditBalance"`
itself catches up at the next sweep, which wakes when the next grant is due (and at least every
`PEDRO_GRANT_SWEEP_MS`): moments after the expiry, the time a sweep takes.
"""

from __future__ import annotations

import asyncio

import asyncpg

from . import clock
from .errors import DATABASE_OUTAGES
from .domain.expiry import lock_due, settle_due
from .logs import get_logger
from .repo import grants as repo
from .settings import Settings

log = get_logger("pedro.grants")

USERS_PER_TRANSACTION = 200


async def sweep_due(conn: asyncpg.Connection, settings: Settings) -> tuple[int, int, int, bool]:
    """One transaction: (grants expired, grants started, holds released, more may be due). Skips
    (0, 0, 0, False) if another process is sweeping."""
    async with conn.transaction():
        if not await repo.try_grant_sweep_lock(conn):
            return 0, 0, 0, False
        now = clock.now()
        due, accounts = await lock_due(conn, now, USERS_PER_TRANSACTION)
        if not accounts:
            return 0, 0, 0, False
        expired, started, released = await settle_due(conn, accounts, now, settings)
    return expired, started, released, due == USERS_PER_TRANSACTION


class GrantSweep:
    def __init__(self, pool: asyncpg.Pool, settings: Settings) -> None:
        self.pool = pool
        self.settings = settings

    async def sweep(self) -> tuple[int, int, int]:
        """Everything due now, a transaction per USERS_PER_TRANSACTION users: (grants expired,
        grants started, holds released)."""
        expired = started = released = 0
        more = True
        while more:
            async with self.pool.acquire() as conn:
                e, s, r, more = await sweep_due(conn, self.settings)
            expired, started, released = expired + e, started + s, released + r
        if expired or started or released:
            log.info("grants_swept", expired=expired, started=started, holds_released=released)
        return expired, started, released

    async def pause(self) -> float:
        """Seconds until the next sweep: until the next grant is due, if that comes before the
        interval ends (so an expiry lands in `"CreditBalance"` within moments, not an interval);
        the whole interval if nothing is due before, or something due was left (a held balance)."""
        interval = self.settings.grant_sweep_ms / 1000
        async with self.pool.acquire() as conn:
            due = await repo.next_grant_due(conn)
        if due is None:
            return interval
        wait = (due - clock.now()).total_seconds()
        return interval if wait <= 0 else min(interval, wait + 0.05)

    async def run(self, stop: asyncio.Event) -> None:
        """Sweep until `stop` is set (a worker process's task), at least every `grant_sweep_ms`
        and as soon as a grant is due. Every process wakes; one sweeps, the others skip."""
        while not stop.is_set():
            pause = self.settings.grant_sweep_ms / 1000
            try:
                await self.sweep()
                pause = await self.pause()
            # a lost connection, a failover (no read-write host yet), a deadlock: the next turn
            except (asyncpg.PostgresError, *DATABASE_OUTAGES) as exc:
                log.warning("grant_sweep_failed", error=type(exc).__name__, detail=str(exc)[:200])
            except Exception:  # a bug: logged, and the next sweep tries again
                log.exception("grant_sweep_crashed")
            try:
                await asyncio.wait_for(stop.wait(), pause)
            except TimeoutError:
                pass
