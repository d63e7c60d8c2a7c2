"""Consumers that are woken by a publish, instead of polling an empty queue with back-off.

dramatiq's Redis consumer polls: when a fetch finds nothing it sleeps, 5-10 ms, then 10-20 ms,
and so on up to the worker timeout (1 s under `dramatiq`'s CLI). A quiet worker was therefore
the slow one: at 5 events/s the median publish -> commit latency was 58 ms and p99 227 ms
(docs/performance.md), and at one event a second it approaches a second. It also sleeps that way
when it is *full* (`prefetch` messages outstanding), so a short stall of the worker grew into a
sleep of up to a second after the stall had ended.

Here the sleep on an empty queue is a `BLPOP` on the queue's wake list, with the same back-off
as its timeout; every publish pushes a token onto that list (`wake`, in the publisher's
pipeline or after `WakingRedisBroker.enqueue`), so an idle consumer fetches at once. A full
consumer waits for the next acknowledgement instead of backing off. Tokens only shorten a
sleep: a message published without one (by another client) is still fetched by the polling.

While the queue is shallow (its last fetch found fewer messages than it had room for), the
consumer fetches at most every `fetch_linger_ms` (`PEDRO_WORKER_FETCH_LINGER_MS`): messages that
arrive one at a time are fetched, handed out and applied together instead of each costing a
fetch, a wake and most of a transaction; an idle consumer (no fetch that recent) fetches at once,
and a deep queue is never held back (its fetches are full).

The same consumer also: hands the ack of a usage message whose commit is still pending to the
settler (worker/settle.py), which acknowledges it later, in one pipelined round trip with
others (`ack_many`); and holds at most `prefetch_events` events besides dramatiq's message
prefetch, so a deep prefetch of single-event messages is not as deep in batch messages.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import dramatiq
import redis
from dramatiq.broker import MessageProxy
from dramatiq.brokers.redis import RedisBroker, _RedisConsumer
from dramatiq.common import compute_backoff, current_millis
from dramatiq.errors import ConnectionClosed
from dramatiq.message import Message
from redis.exceptions import NoScriptError

from .ops.keys import Keys
from .settle import hand_off

# Until a fetch has shown the queue's message sizes, assume batch messages (the publisher's
# default size): the first fetch of a fresh consumer stays within the events bound either way.
_FIRST_GUESS_EVENTS = 500
WAKE_TOKENS_KEPT = 64  # a burst of publishes while every consumer is busy leaves at most this many


def wake_key(namespace: str, queue_name: str) -> str:
    return Keys(namespace).wake(queue_name)


def wake(client: Any, namespace: str, queue_name: str) -> None:
    """Push a wake token for the queue's consumers (`client` may be a pipeline)."""
    key = wake_key(namespace, queue_name)
    client.lpush(key, 1)
    client.ltrim(key, 0, WAKE_TOKENS_KEPT - 1)


class WakeableConsumer(_RedisConsumer):
    """dramatiq's Redis consumer (dramatiq 2.x, `_RedisConsumer.__next__`), with its two sleeps
    replaced: on an empty queue it blocks on the wake list; when full, on the next ack."""

    def __init__(self, broker: RedisBroker, queue_name: str, prefetch: int, timeout: int) -> None:
        super().__init__(broker, queue_name, prefetch, timeout)
        self._wake_key = wake_key(broker.namespace, queue_name)
        self._slot_freed = threading.Event()
        self._blocking_wait = True  # False once the server refused a fractional BLPOP timeout
        # Events held (fetched, not yet acknowledged), bounded as well as messages: a deep
        # message prefetch makes large groups of single-event messages, and must not mean
        # `prefetch` batch messages of a thousand events each in memory. Delay queues hold
        # messages until their eta, not work: they keep dramatiq's message count only.
        self._max_events = None if queue_name.endswith(".DQ") else getattr(broker, "prefetch_events", None)
        self._sizes: dict[str, int] = {}  # message id -> events, while held
        self._sizes_lock = threading.Lock()  # taken by the consumer, released by other threads
        self.outstanding_events = 0
        self._typical_size = _FIRST_GUESS_EVENTS  # events per message in the last fetch
        self._fetched = self._fetched_events = 0
        # while the queue is shallow, fetch at most every `fetch_linger_ms` (module docstring)
        self._linger = (getattr(broker, "fetch_linger_ms", 0) or 0) / 1000
        self._shallow_at: float | None = None  # when the last fetch found the queue shallow

    def ack(self, message: MessageProxy) -> None:
        if not hand_off(message, self):  # a deferred message is acknowledged after its commit
            self.ack_now(message)

    def nack(self, message: MessageProxy) -> None:
        if not hand_off(message, self):
            self.nack_now(message)

    def ack_now(self, message: MessageProxy) -> None:
        try:
            super().ack(message)
        finally:
            self._release(message)

    def ack_many(self, messages: list[MessageProxy]) -> None:
        """Acknowledge several messages in one round trip: dramatiq's `ack` command, pipelined
        (the arguments are those of `RedisBroker._dispatch`, dramatiq 2.x)."""
        broker = self.broker
        try:
            dispatch = broker.scripts["dispatch"]
            command = ["ack", current_millis(), self.queue_name, broker.broker_id,
                       broker.heartbeat_timeout, broker.dead_message_ttl, 0, broker._max_unpack_size()]  # fmt: skip
            # EVALSHA alone, not the Script object: in a pipeline that one first asks the server
            # whether it has the script (SCRIPT EXISTS), a second round trip per ack batch
            for attempt in range(2):
                pipe = broker.client.pipeline(transaction=False)
                for message in messages:
                    pipe.evalsha(dispatch.sha, 1, broker.namespace, *command, message.options["redis_message_id"])
                results = pipe.execute(raise_on_error=False)
                errors = [r for r in results if isinstance(r, Exception)]
                if not errors:
                    break
                if attempt or not all(isinstance(e, NoScriptError) for e in errors):
                    raise errors[0]
                # the server lost its scripts (a restart, a failover): load it, ack them all again
                # (an ack is idempotent: a message already acknowledged is simply not there)
                dispatch.sha = broker.client.script_load(dispatch.script)
        except redis.ConnectionError as e:
            raise ConnectionClosed(e) from None
        finally:
            for message in messages:
                self._forget(message)

    def nack_now(self, message: MessageProxy) -> None:
        try:
            super().nack(message)
        finally:
            self._release(message)

    def requeue(self, messages: Any) -> None:
        messages = list(messages)
        try:
            super().requeue(messages)
        finally:
            for message in messages:
                self._release(message)

    def abandon(self, message: MessageProxy) -> None:
        """Neither ack nor nack (a message that could not be settled): its prefetch slot is freed,
        and it stays in Redis, unacknowledged, until this worker is gone and it is redelivered —
        what dramatiq does with a message whose ack failed for an unknown reason."""
        self._forget(message)

    def _forget(self, message: MessageProxy) -> None:
        """No longer held by this consumer (what dramatiq's ack and nack do after their call)."""
        self.queued_message_ids.discard(message.message_id)
        self._release(message)

    def _release(self, message: MessageProxy) -> None:
        with self._sizes_lock:
            self.outstanding_events -= self._sizes.pop(message.message_id, 0)
        self._slot_freed.set()

    def __next__(self) -> MessageProxy | None:
        try:
            if self.message_cache:
                self.misses = 0
                return self._take(self.message_cache.pop(0))
            self._slot_freed.clear()  # before the check: an ack from now on ends the wait below
            room = self._room()
            if room <= 0:
                self._slot_freed.wait(self.timeout / 1000)
                return None
            if self._shallow_at is not None:
                wait = self._shallow_at + self._linger - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
            self.message_cache = self.broker.do_fetch(self.queue_name, room)
            shallow = self._linger and len(self.message_cache) < room
            self._shallow_at = time.monotonic() if shallow else None
            if self.message_cache:
                return self.__next__()
            self.misses, backoff_ms = compute_backoff(self.misses, max_backoff=self.timeout)
            self._idle(backoff_ms / 1000)
            return None
        except redis.ConnectionError as e:
            raise ConnectionClosed(e) from None

    def _take(self, data: bytes | None) -> MessageProxy | None:
        if data is None:  # dramatiq warns about these (its issue #266) and skips them
            self.logger.warning("Found 'None' message in message cache for queue %r.",
                                self.queue_name)
            return None
        message = Message.decode(data)
        self.queued_message_ids.add(message.message_id)
        if self._max_events is not None:
            events = message.args[0] if message.args else None
            size = len(events) if isinstance(events, list) and events else 1
            with self._sizes_lock:
                self._sizes[message.message_id] = size
                self.outstanding_events += size
            self._fetched += 1
            self._fetched_events += size
            if not self.message_cache:  # the last of a fetch: what the next fetch expects
                self._typical_size = max(1, self._fetched_events // self._fetched)
                self._fetched = self._fetched_events = 0
        return MessageProxy(message)

    def _room(self) -> int:
        """How many messages the next fetch may take: dramatiq's prefetch, and as many as fit
        in the events left, at the size the last fetch's messages had."""
        room = self.prefetch - self.outstanding_message_count
        if self._max_events is not None:
            events_left = self._max_events - self.outstanding_events
            room = min(room, events_left // self._typical_size if events_left > 0 else 0)
            if room <= 0 and not self._sizes:  # one message however large, never none
                room = 1
        return room

    def _idle(self, seconds: float) -> None:
        seconds = max(seconds, 0.001)  # a BLPOP timeout of 0 would block for good
        if self._blocking_wait:
            try:
                self.broker.client.blpop([self._wake_key], timeout=seconds)
                return
            except redis.TimeoutError:  # a socket timeout shorter than the wait: as good as a wake
                return
            except redis.ResponseError:  # e.g. Redis < 6 takes whole seconds only
                self.logger.warning("BLPOP on %r refused: polling %r as dramatiq does.",
                                    self._wake_key, self.queue_name)
                self._blocking_wait = False
        time.sleep(seconds)


class WakingRedisBroker(RedisBroker):
    """RedisBroker whose consumers are woken by publishes (see the module docstring), and hold
    at most `prefetch_events` events per queue besides dramatiq's message prefetch."""

    def __init__(self, *args: Any, prefetch_events: int | None = None, fetch_linger_ms: float = 0,
                 **kwargs: Any) -> None:  # fmt: skip
        super().__init__(*args, **kwargs)
        self.prefetch_events = prefetch_events
        self.fetch_linger_ms = fetch_linger_ms

    @property
    def consumer_class(self) -> type[_RedisConsumer]:
        return WakeableConsumer

    def enqueue(self, message: dramatiq.Message, *, delay: int | None = None) -> dramatiq.Message:
        enqueued = super().enqueue(message, delay=delay)
        if not enqueued.queue_name.endswith(".DQ"):  # a delayed message waits for its eta anyway
            try:
                pipe = self.client.pipeline(transaction=False)
                wake(pipe, self.namespace, enqueued.queue_name)
                pipe.execute()
            except redis.RedisError:
                # The message is stored: failing now would have the caller enqueue it again. A
                # missing token only leaves the consumers to their polling.
                self.logger.debug("No wake token for %r.", enqueued.queue_name, exc_info=True)
        return enqueued
