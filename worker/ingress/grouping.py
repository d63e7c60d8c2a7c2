"""Concurrent requests share one Redis round trip: group enqueueing in the ingress.

`POST /v1/events` and the webhooks hand their valid events to `EnqueueGroups.enqueue`, which
returns once Redis has them, or raises what the round trip raised. While one group is on its
way to Redis, the events of the requests that arrive meanwhile gather, and go together as soon
as it is back: one pipeline and one message per queue for all of them, instead of one of each
per request. The round trip runs on the event loop through an asyncio Redis client of the same
settings (worker/redis_client.py), not in a thread: a thread's answer waits for the GIL behind
the busy event loop, up to the 5 ms switch interval. Nothing waits for company: an idle ingress
sends a lone event at once, and the busier it is, the larger its groups (the worker's coalescer
does the same with transactions: worker/ledger/coalesce.py); a busy one sends a group at most
every `ingress_group_linger_ms`. A group holds at most `max_events` events; a request larger
than that goes alone.

What happens to each caller's events is what happened to its group: every request of a group
Redis acknowledged is answered 202 — its events are in Redis before the answer — and if the
round trip failed, every request of that group gets the error (503) and none is acknowledged;
the app sends them again, and a duplicate changes nothing (the worker keys every event by its id).
A message of a group holds events of several requests: the worker decides each event on its own,
so one request's refused event never touches its neighbours' (the same as a batch POST).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Mapping, Sequence
from typing import Any

import redis.asyncio

from ..logs import get_logger
from ..publisher import Publisher, queue_for
from ..redis_client import async_redis_client
from ..settings import Settings

log = get_logger("pedro.ingress.groups")

_Waiter = tuple[Sequence[Mapping[str, Any]], "asyncio.Future[None]"]


class EnqueueGroups:
    def __init__(
        self, publisher: Publisher, settings: Settings, client: redis.asyncio.Redis | None = None
    ) -> None:
        self.publisher = publisher
        self.max_events = settings.ingress_max_batch
        self.linger = settings.ingress_group_linger_ms / 1000
        timeout = settings.ingress_redis_timeout_ms / 1000
        self.client = client or async_redis_client(settings, socket_timeout=timeout)
        self._waiting: deque[_Waiter] = deque()
        self._waiting_events = 0
        self._busy = False  # a group is on its way to Redis, or due (the timer)
        self._timer: asyncio.TimerHandle | None = None
        self._last_sent = -1e9
        self.groups = self.requests = self.events = 0  # round trips, and what they carried

    async def enqueue(self, events: Sequence[Mapping[str, Any]]) -> None:
        """Return once Redis acknowledged `events` (in this request's group). An event with no
        queue fails its own request here (ValidationRejected), never its group."""
        for event in events:
            queue_for(event)
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.append((events, future))
        self._waiting_events += len(events)
        if not self._busy:
            self._schedule()
        elif self._timer is not None and self._waiting_events >= self.max_events:
            self._timer.cancel()  # a full group goes now
            self._send_next()
        await future

    def _schedule(self) -> None:
        """Send what waits now, or — when the last group left less than `linger` ago (a busy
        ingress) — at that group's time + linger, so that company can gather meanwhile."""
        if not self._waiting:
            self._busy = False
            return
        self._busy = True
        loop = asyncio.get_running_loop()
        due = self._last_sent + self.linger
        if due <= loop.time() or self._waiting_events >= self.max_events:
            self._send_next()
        else:
            self._timer = loop.call_at(due, self._send_next)

    def _take(self) -> list[_Waiter]:
        group, count = [], 0
        while self._waiting and (not group or count + len(self._waiting[0][0]) <= self.max_events):
            waiter = self._waiting.popleft()
            group.append(waiter)
            count += len(waiter[0])
        self._waiting_events -= count
        return group

    def _send_next(self) -> None:
        self._timer = None
        loop = asyncio.get_running_loop()
        self._last_sent = loop.time()
        task = loop.create_task(self._send(self._take()))
        task.add_done_callback(lambda _task: self._schedule())

    async def _send(self, group: list[_Waiter]) -> None:
        events = [event for waiter_events, _ in group for event in waiter_events]
        self.groups += 1
        self.requests += len(group)
        self.events += len(events)
        try:
            await self.publisher.publish_many_async(self.client, events)
        except BaseException as exc:  # noqa: BLE001 — each waiter gets it; cancellation included
            for _, future in group:
                if not future.done():
                    future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
        else:
            for _, future in group:
                if not future.done():  # a caller that went away (cancelled) needs no answer
                    future.set_result(None)

    async def aclose(self) -> None:
        """At shutdown: how well the requests were grouped, and the client closed."""
        if self._timer is not None:
            self._timer.cancel()
        log.info("enqueue_groups", groups=self.groups, requests=self.requests, events=self.events)
        await self.client.aclose()
