"""Durable waiting: events that cannot apply *yet* wait in PostgreSQL until what they wait for
happens, then go back to their queue in event-time order.

    a family finds an event must wait (unknown user, refund before its usage, unknown operation
    type, no cost, no blob size) -> `stored` in `worker.waiting`, in the transaction that found
    it (usage) or right after it rolled back (users, billing, storage) -> the message is
    acknowledged: nothing waits in Redis, where retries run out and dead letters expire.

    what it waits for happens -> `Releaser.release` locks the waiting rows (SKIP LOCKED: two
    releasers never send one row twice at once), enqueues them on their queue, ordered by event
    time, marks them `released`, and commits -> the queue applies them as any event.

What releases what (`waits_for`):

| key | released when | by |
|---|---|---|
| `user:<clerk user id>` | the user has a "CreditBalance" | its `user.created`/`user.updated` at once; the sweep |
| `usage:<usage id>` | that usage was decided | the sweep |
| `operation_type:<label>` | the app's "OperationType" enum has the label | the sweep |
| `cost:<label>` | a cost resolves for the label (featureCosts or the defaults) | the sweep |
| `blob:<object id>` | `waiting_retry_ms` after it last waited (the size is asked for again) | the sweep |
| `plan:<ref>` | a "Plan" with credits has `id` or `asaasId` = ref (a paid payment's plan) | the sweep |
| `subscription:<id>` | the subscription names a plan (or a "Plan".asaasId is its id) | its SUBSCRIPTION_* event at once; the sweep |
| `customer:<id>` | an event tied the Asaas customer to a Clerk user | that event at once; the sweep |
| `payment:<id>` | never by itself: a payment no event ties to a user | `pedro-worker billing regrant` |

Exactly once rests on `worker.event_log`, as everywhere: a released event is applied through its
queue's normal path, so a release sent twice (a crash between the enqueue and the commit, a row
released whose message Redis then lost, re-sent after `waiting_resend_ms`) is a duplicate the
second time. A released event that must wait again is stored again (same row, `waiting`). Rows
whose event has been decided are closed (`applied`) by the sweep. Nothing here expires by time.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

import asyncpg
import dramatiq

from . import clock
from .errors import DATABASE_OUTAGES
from .ledger.cost import CostError, feature_cost
from .ledger.decide import WAITING, Outcome
from .logs import get_logger
from .publisher import build_message
from .repo import billing as billing_repo
from .repo import ledger as ledger_repo
from .repo import subscriptions as subscriptions_repo
from .repo import waiting as repo
from .repo.waiting import WaitingRow
from .settings import Settings

log = get_logger("pedro.waiting")

RELEASE_CHUNK = 2_000  # events per released message (and per locking round)


def _occurred_at(raw: Any) -> datetime | None:
    if not isinstance(raw, dict):
        return None
    for name in ("occurredAt", "updatedAt", "createdAt", "deletedAt"):
        value = raw.get(name)
        if isinstance(value, str):
            try:
                return datetime.fromisoformat(value.replace("Z", "+00:00"))
            except ValueError:
                return None
    return None


def waiting_row(queue: str, raw: Any, outcome: Outcome, payload_hash: str) -> WaitingRow:
    """The `worker.waiting` row of an event whose outcome is WAITING."""
    assert outcome.status == WAITING and outcome.reason and outcome.waits_for
    event_type = raw.get("type") if isinstance(raw, dict) else None
    clerk_user_id = raw.get("clerkUserId") if isinstance(raw, dict) else None
    return WaitingRow(
        outcome.event_id, queue, str(event_type)[:64], json.dumps(raw, separators=(",", ":")),
        payload_hash, clerk_user_id if isinstance(clerk_user_id, str) else None, outcome.reason,
        outcome.waits_for, outcome.detail, _occurred_at(raw),
    )  # fmt: skip


CONFLICT_DETAIL = "an event with this id and a different payload is already waiting"


async def store(
    conn: asyncpg.Connection, queue: str, waiting: Iterable[tuple[Any, Outcome, str]]
) -> set[str]:
    """Store (raw event, WAITING outcome, payload hash) triples, in the caller's transaction.
    Returns the ids NOT stored because another payload already waits under them: the caller
    refuses those as `idempotency_conflict`, as it would if the first one had been decided."""
    rows = [waiting_row(queue, raw, outcome, payload_hash) for raw, outcome, payload_hash in waiting]
    stored = await repo.lock_waiting_hashes(conn, [r.event_id for r in rows])
    conflicts = {r.event_id for r in rows if stored.get(r.event_id, r.payload_hash) != r.payload_hash}
    await repo.wait_events(conn, [r for r in rows if r.event_id not in conflicts], clock.now())
    return conflicts


# --- what is satisfied now ------------------------------------------------------------------


def _split(key: str) -> tuple[str, str]:
    kind, _, value = key.partition(":")
    return kind, value


async def satisfied_keys(
    conn: asyncpg.Connection, keys: Sequence[asyncpg.Record], settings: Settings, now: datetime
) -> list[str]:
    """Which of the open keys (rows of `open_waiting_keys`) are satisfied now."""
    by_kind: dict[str, dict[str, asyncpg.Record]] = {}
    for row in keys:
        kind, value = _split(row["waits_for"])
        by_kind.setdefault(kind, {})[value] = row
    ready: list[str] = []
    if users := by_kind.get("user"):
        ready += [f"user:{u}" for u in await ledger_repo.find_existing_accounts(conn, list(users))]
    if usages := by_kind.get("usage"):
        decided = await ledger_repo.find_decided_events(conn, list(usages))
        ready += [f"usage:{u}" for u in decided]
    if labels := by_kind.get("operation_type"):
        known = set(await repo.operation_type_labels(conn))
        ready += [f"operation_type:{label}" for label in labels if label in known]
    if costs := by_kind.get("cost"):
        configured = await ledger_repo.get_feature_costs(conn)
        for label in costs:
            try:
                if feature_cost(label, configured, settings.default_feature_costs) is not None:
                    ready.append(f"cost:{label}")
            except CostError:
                pass
    if plans := by_kind.get("plan"):
        ready += [f"plan:{ref}" for ref in await billing_repo.plans_with_credits(conn, list(plans))]
    if subs := by_kind.get("subscription"):
        ready += [f"subscription:{s}" for s in await subscriptions_repo.with_plans(conn, list(subs))]
    if customers := by_kind.get("customer"):
        ready += [f"customer:{c}" for c in await billing_repo.known_customers(conn, list(customers))]
    if blobs := by_kind.get("blob"):
        retry_before = now - timedelta(milliseconds=settings.waiting_retry_ms)
        ready += [f"blob:{b}" for b, row in blobs.items() if row["last_waited_at"] <= retry_before]
    return ready


# --- release --------------------------------------------------------------------------------


class Releaser:
    """Sends satisfied waiting events back to their queues (one per worker process, and the
    `pedro-worker waiting release` command)."""

    def __init__(self, pool: asyncpg.Pool, broker: dramatiq.Broker, settings: Settings) -> None:
        self.pool = pool
        self.broker = broker
        self.settings = settings

    def _resend_before(self, now: datetime) -> datetime:
        return now - timedelta(milliseconds=self.settings.waiting_resend_ms)

    async def release(
        self, *, keys: Sequence[str] | None = None, event_ids: Sequence[str] | None = None
    ) -> int:
        """Send the open waiting events for these keys (or these ids) back to their queues, in
        event-time order. Returns how many were sent."""
        if keys is not None and not keys or event_ids is not None and not event_ids:
            return 0
        sent = 0
        while True:
            async with self.pool.acquire() as conn, conn.transaction():
                now = clock.now()
                rows = await repo.lock_releasable(
                    conn, keys=keys, event_ids=event_ids, resend_before=self._resend_before(now),
                    limit=RELEASE_CHUNK,
                )  # fmt: skip
                if not rows:
                    return sent
                # Enqueued before the rows are marked, with the rows locked: a worker that finds
                # one of them waiting again blocks on its row until this commits, then stores it
                # as waiting again. A crash before the commit leaves the rows to be sent again:
                # a duplicate, never a loss.
                await asyncio.to_thread(self._enqueue, rows)
                await repo.mark_released(conn, [r[0] for r in rows], now)
            sent += len(rows)
            log.info("waiting_released", events=len(rows), keys=None if keys is None else len(keys))
            if len(rows) < RELEASE_CHUNK:
                return sent

    def _enqueue(self, rows: Sequence[tuple[str, str, Any]]) -> None:
        by_queue: dict[str, list[Any]] = {}
        for _, queue, event in rows:  # already in release order
            by_queue.setdefault(queue, []).append(event)
        for queue, events in by_queue.items():
            self.broker.enqueue(build_message(queue, events))

    async def sweep(self) -> int:
        """Close the rows whose event was decided, then release every satisfied key. One sweep
        at a time among all processes (an advisory lock): the others skip their turn."""
        async with self.pool.acquire() as conn, conn.transaction():
            if not await repo.try_sweep_lock(conn):
                return 0
            now = clock.now()
            await repo.resolve_decided(conn, now)
            keys = await repo.open_keys(conn, self._resend_before(now))
            ready = await satisfied_keys(conn, keys, self.settings, now) if keys else []
        return await self.release(keys=ready) if ready else 0

    async def run(self, stop: asyncio.Event) -> None:
        """Sweep every `waiting_sweep_ms` until `stop` is set (a worker process's task). A sweep
        reads every open waiting row (0.35 s for 100,000 waiting for users that never come):
        the next one waits at least ten times as long as this one took, so sweeping never takes
        more than a tenth of a connection, however much waits."""
        while not stop.is_set():
            started = time.monotonic()
            try:
                await self.sweep()
            # an outage or a failover (no read-write host yet): the next sweep tries again
            except (asyncpg.PostgresError, *DATABASE_OUTAGES, dramatiq.errors.BrokerError) as exc:
                log.warning("waiting_sweep_failed", error=type(exc).__name__, detail=str(exc)[:200])
            except Exception:  # a bug: logged, and the next sweep tries again
                log.exception("waiting_sweep_crashed")
            interval = max(self.settings.waiting_sweep_ms / 1000, 10 * (time.monotonic() - started))
            try:
                await asyncio.wait_for(stop.wait(), interval)
            except TimeoutError:
                pass

