"""Micro-batching: concurrent messages of one worker process share one transaction.

Each worker thread blocks on its own message while the actor awaits `Coalescer.apply` on the
process's event loop. Submissions are applied together by one `apply_usage_batch` call, and
each caller gets back the outcomes of its own events only after that transaction committed —
so every message is acknowledged after, and only after, its own events are durable.

When to apply ("smart batching"):

* at most `micro_batch_concurrency` transactions of this process are in flight; what arrives
  meanwhile waits and goes in the next one, as soon as one ends: the busier the worker, the
  larger its transactions, and the fewer of them hold balance locks at once (concurrent batches
  over the same users wait on each other's row locks: docs/performance.md);
* otherwise the first submission waits at most `micro_batch_linger_ms` for company, unless the
  group is already half of `micro_batch_max_events` (a batch message is a batch already);
* no transaction takes more than `micro_batch_max_events` events (a larger message goes alone).

If a shared transaction fails, each submission is retried on its own, so one message that
breaks its batch cannot take its neighbours down with it — unless PostgreSQL is unreachable or
failing over (errors.DATABASE_OUTAGES): that fails every submission alike, and each goes back to
its message's retries with backoff (the settler), none acknowledged.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Sequence
from typing import Any

import asyncpg
import structlog

from ..errors import DATABASE_OUTAGES
from ..logs import get_logger
from ..settings import Settings
from .apply import BatchResult, OpenedUsers, apply_usage_batch
from .operation_types import OperationTypes

log = get_logger("pedro.coalesce")


_Submission = tuple[Sequence[Any], "asyncio.Future[BatchResult]", str | None]


class Coalescer:
    def __init__(self, pool: asyncpg.Pool, settings: Settings) -> None:
        self.pool = pool
        self.settings = settings
        self.linger = settings.micro_batch_linger_ms / 1000
        self.max_events = settings.micro_batch_max_events
        self.concurrency = settings.micro_batch_concurrency
        self.opened = OpenedUsers()  # one pool, one database
        self.labels = OperationTypes()  # that database's "OperationType" labels
        self._pending: list[_Submission] = []
        self._pending_events = 0
        self._running = 0
        self._timer: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def apply(self, events: Sequence[Any], *, message_id: str | None = None) -> BatchResult:
        return await self.submit(events, message_id=message_id)

    def submit(self, events: Sequence[Any], *, message_id: str | None = None) -> asyncio.Future[BatchResult]:
        """On the loop: the future of the events' outcomes, set once their transaction committed."""
        future: asyncio.Future[BatchResult] = asyncio.get_running_loop().create_future()
        self._pending.append((events, future, message_id))
        self._pending_events += len(events)
        if self._running >= self.concurrency:
            pass  # the next transaction to end starts the next group
        elif self._pending_events * 2 >= self.max_events or self.linger <= 0:
            self._flush()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self.linger, self._flush)
        return future

    async def idle(self) -> None:
        """Wait until nothing is pending or in flight (a worker shutting down)."""
        while self._pending or self._tasks:
            await asyncio.sleep(0.005)  # a timer or the transaction in flight starts the next group

    def _flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        while self._pending and self._running < self.concurrency:
            self._start(self._take())

    def _take(self) -> list[_Submission]:
        """The oldest submissions, up to max_events (at least one, however large)."""
        size, n = 0, 0
        for events, _, _ in self._pending:
            if n and size + len(events) > self.max_events:
                break
            size, n = size + len(events), n + 1
        group, self._pending = self._pending[:n], self._pending[n:]
        self._pending_events -= size
        return group

    def _start(self, group: list[_Submission]) -> None:
        # the task's log lines name every message of the batch, not the first submitter's
        context = contextvars.copy_context()
        context.run(structlog.contextvars.bind_contextvars, message_id=None,
                    message_ids=[message_id for _, _, message_id in group])  # fmt: skip
        task = asyncio.get_running_loop().create_task(self._run(group), context=context)
        self._running += 1
        self._tasks.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._running -= 1
        self._flush()  # what waited during this transaction has waited long enough

    async def _apply(self, events: Sequence[Any]) -> BatchResult:
        try:
            async with self.pool.acquire() as conn:
                return await apply_usage_batch(conn, events, self.settings, opened=self.opened, labels=self.labels)
        except DATABASE_OUTAGES as exc:
            # one line per failed transaction: its messages go back to their retries, with backoff
            log.warning("usage_batch_outage", events=len(events), error=type(exc).__name__, detail=str(exc)[:200])
            # The pool may reconnect to another server: a promoted standby. An asynchronous one
            # can lack recent commits, openings this process saw committed among them; skipping
            # those would leave balances without their opening (reconcile's drift).
            self.opened = OpenedUsers()
            raise

    async def _run(self, group: list[_Submission]) -> None:
        if len(group) == 1:
            events, future, _ = group[0]
            await self._settle(future, self._apply(events))
            return
        combined = [event for events, _, _ in group for event in events]
        try:
            result = await self._apply(combined)
        except DATABASE_OUTAGES as exc:  # alone, each would only meet the same outage (logged by _apply)
            for _, future, _ in group:
                if not future.done():
                    future.set_exception(exc)
            return
        except Exception as exc:
            log.warning("coalesced_batch_failed", messages=len(group), error=type(exc).__name__)
            await asyncio.gather(*(self._settle(f, self._apply(events)) for events, f, _ in group))
            return
        start = 0
        for events, future, _ in group:
            end = start + len(events)
            if not future.done():
                future.set_result(BatchResult(result.outcomes[start:end]))
            start = end

    @staticmethod
    async def _settle(future: asyncio.Future[BatchResult], work: Any) -> None:
        try:
            result = await work
        except Exception as exc:
            if not future.done():
                future.set_exception(exc)
            return
        if not future.done():
            future.set_result(result)
