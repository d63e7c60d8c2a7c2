"""Micro-batching: concurrent messages of one worker process share one transaction.

Each worker thread blocks on its own message while the actor awaits `Coalescer.apply` on the
process's event loop. Submissions that arrive within `linger_ms` of each other (or until
`max_events`) are applied together by one `apply_usage_batch` call, and each caller gets back
the outcomes of its own events only after that transaction committed — so every message is
acknowledged after, and only after, its own events are durable.

If a shared transaction fails, each submission is retried on its own, so one message that
breaks its batch cannot take its neighbours down with it.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Sequence
from typing import Any

import asyncpg
import structlog

from ..logs import get_logger
from ..settings import Settings
from .apply import BatchResult, apply_usage_batch

log = get_logger("pedro.coalesce")


class Coalescer:
    def __init__(self, pool: asyncpg.Pool, settings: Settings) -> None:
        self.pool = pool
        self.settings = settings
        self.linger = settings.micro_batch_linger_ms / 1000
        self.max_events = settings.micro_batch_max_events
        self._pending: list[tuple[Sequence[Any], asyncio.Future[BatchResult]]] = []
        self._message_ids: list[str | None] = []
        self._pending_events = 0
        self._timer: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def apply(self, events: Sequence[Any], *, message_id: str | None = None) -> BatchResult:
        future: asyncio.Future[BatchResult] = asyncio.get_running_loop().create_future()
        self._pending.append((events, future))
        self._message_ids.append(message_id)
        self._pending_events += len(events)
        if self._pending_events >= self.max_events or self.linger <= 0:
            self._flush()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self.linger, self._flush)
        return await future

    def _flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        batch, self._pending, self._pending_events = self._pending, [], 0
        message_ids, self._message_ids = self._message_ids, []
        if batch:
            # the task's log lines name every message of the batch, not the first submitter's
            context = contextvars.copy_context()
            context.run(structlog.contextvars.bind_contextvars, message_id=None, message_ids=message_ids)
            task = asyncio.get_running_loop().create_task(self._run(batch), context=context)
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _apply(self, events: Sequence[Any]) -> BatchResult:
        async with self.pool.acquire() as conn:
            return await apply_usage_batch(conn, events, self.settings)

    async def _run(self, batch: list[tuple[Sequence[Any], asyncio.Future[BatchResult]]]) -> None:
        if len(batch) == 1:
            events, future = batch[0]
            await self._settle(future, self._apply(events))
            return
        combined = [event for events, _ in batch for event in events]
        try:
            result = await self._apply(combined)
        except Exception as exc:
            log.warning("coalesced_batch_failed", messages=len(batch), error=type(exc).__name__)
            await asyncio.gather(*(self._settle(f, self._apply(events)) for events, f in batch))
            return
        start = 0
        for events, future in batch:
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
