"""Acknowledge a message after its commit, without a worker thread waiting for that commit.

dramatiq acknowledges a message when its actor returns, so an actor that waits for a shared
transaction (ledger/coalesce.py) holds a worker thread for the whole wait. With 8 threads a
process then has at most 8 messages in a group, and most of a single-event message's time was
threads waiting and waking (docs/performance.md). Here the usage actor only *submits* its
events and returns; the message is acknowledged later, by this module's thread, once the
transaction that carries them has committed:

    actor (event loop): submit events -> `Settler.defer(message, future, settle)` -> return
    worker thread:      dramatiq calls consumer.ack -> `hand_off` passes the message on
    settler thread:     commit known and ack handed off -> `settle(message, result)`
                        (ops counters, waiting events sent back) -> after_process_message
                        -> ack, or nack if the middleware gave up on it

What the guarantees rest on:

* **Nothing is acknowledged before its commit.** The real ack is only sent by the settler, after
  the future has a result. A process that dies meanwhile leaves the message unacknowledged in
  Redis, and the broker redelivers it (idempotency keys make that a duplicate, not a re-apply).
* **Failures are retried as before.** A failed transaction, or events that must wait
  (`RetryLater`), go through the same `after_process_message` hooks a failing actor goes
  through (DurableRetries, DeadLetterReason, OpsStats): retried with backoff, or dead-lettered
  with a reason. `OpsStats` counts a deferred message once, when it is settled.
* **Bounded.** Messages waiting here still count as outstanding for the consumer, so a process
  holds at most `prefetch` of them; a stalled database stops the fetching, not the memory.
* **Shutdown drains.** A stopping worker waits for the coalescer's transactions
  (`Coalescer.idle`) and then for their acks (`Settler.wait_idle`) before its pool closes
  (`DatabasePool.after_worker_shutdown`).
* **One failure stays one.** A message that cannot be settled (a bug, not an outage) is logged
  and left unacknowledged, its prefetch slot freed (`abandon`); the others go on.
"""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

import dramatiq
from dramatiq.errors import BrokerConnectionError

from .logs import get_logger

log = get_logger("pedro.settle")

HAND_OFF = "_pedro_hand_off"  # attribute of a deferred MessageProxy: where its ack goes
_ACK_RETRY_S = 1.0  # dramatiq's own pause before retrying an ack after a connection error

Settle = Callable[[Any, Any], None]


def hand_off(message: Any, consumer: Any) -> bool:
    """Called by the consumer's ack/nack: True if the message is deferred (and now handed to its
    settler, which acknowledges it later through `consumer.ack_many` / `consumer.nack_now`)."""
    handler = getattr(message, HAND_OFF, None)
    if handler is None:
        return False
    handler(consumer)
    return True


def is_deferred(message: Any) -> bool:
    return getattr(message, HAND_OFF, None) is not None


class Settler:
    """One per worker process: pairs each deferred message's commit with its ack, and settles."""

    def __init__(self, broker: dramatiq.Broker) -> None:
        self.broker = broker
        self._inbox: queue.SimpleQueue[tuple[str, Any, Any] | None] = queue.SimpleQueue()
        self._halves: dict[int, dict[str, Any]] = {}
        self._pending = 0
        self._idle = threading.Condition()
        self._thread = threading.Thread(target=self._run, name="pedro-settler", daemon=True)
        self._thread.start()

    # --- the two halves -----------------------------------------------------------------------

    def defer(self, message: Any, future: asyncio.Future, settle: Settle) -> None:
        """On the event loop: `message` is acknowledged once `future` is done, after `settle`."""
        with self._idle:
            self._pending += 1
        setattr(message, HAND_OFF, lambda consumer: self._inbox.put(("ack", message, consumer)))
        future.add_done_callback(lambda f: self._inbox.put(("done", message, (f, settle))))

    # --- the settler thread -------------------------------------------------------------------

    def _run(self) -> None:
        stopping = False
        while not stopping:
            ready, stopping = self._collect()
            try:
                self._settle_all(ready)
            finally:
                with self._idle:
                    self._pending -= len(ready)
                    self._idle.notify_all()

    def _collect(self) -> tuple[list[tuple[Any, dict[str, Any]]], bool]:
        """Wait for the next item, then take all that arrived: the messages whose two halves
        (commit done, ack handed off) are now both here, and whether `stop` was called."""
        ready = []
        item = self._inbox.get()
        while True:
            if item is None:
                return ready, True
            kind, message, value = item
            halves = self._halves.setdefault(id(message), {})
            halves[kind] = value
            if len(halves) == 2:
                del self._halves[id(message)]
                ready.append((message, halves))
            try:
                item = self._inbox.get_nowait()
            except queue.Empty:
                return ready, False

    def _settle_all(self, ready: list[tuple[Any, dict[str, Any]]]) -> None:
        acks: dict[Any, list[Any]] = {}
        for message, halves in ready:
            future, settle = halves["done"]
            consumer = halves["ack"]
            try:
                self._settle(message, future, settle)
                if message.failed:
                    self._post_process(message, consumer)
                else:
                    acks.setdefault(consumer, []).append(message)
            except Exception:  # a bug, not an outage: leave it unacknowledged, keep the rest going
                log.exception("settle_failed", message_id=message.message_id)
                consumer.abandon(message)
        for consumer, messages in acks.items():  # one round trip per consumer, not per message
            try:
                self._retrying(lambda: consumer.ack_many(messages), messages[0])
            except Exception:  # ack_many has freed their slots: redelivered when this worker restarts
                log.exception("ack_failed", messages=len(messages))

    def _settle(self, message: Any, future: asyncio.Future, settle: Settle) -> None:
        exception: BaseException | None = None
        try:
            if future.cancelled():
                raise asyncio.CancelledError()
            error = future.exception()
            if error is not None:
                raise error
            settle(message, future.result())
        except BaseException as exc:  # what the actor would have raised
            exception = exc
            message.stuff_exception(exc)
        delattr(message, HAND_OFF)
        self.broker.emit_after("process_message", message, result=None, exception=exception)
        message.clear_exception()

    def _post_process(self, message: Any, consumer: Any) -> None:
        """A message the middleware gave up on: dead-lettered, as dramatiq's consumer does."""
        def nack() -> None:
            self.broker.emit_before("nack", message)
            consumer.nack_now(message)
            self.broker.emit_after("nack", message)

        self._retrying(nack, message)

    @staticmethod
    def _retrying(call: Callable[[], None], message: Any) -> None:
        """Through a Redis outage, like dramatiq's ConsumerThread.post_process_message."""
        while True:
            try:
                call()
                return
            except BrokerConnectionError as exc:
                log.warning("ack_waiting_for_redis", message_id=message.message_id, error=str(exc))
                time.sleep(_ACK_RETRY_S)

    # --- shutdown -----------------------------------------------------------------------------

    def wait_idle(self, timeout: float) -> bool:
        """Wait until every deferred message was settled; False on timeout."""
        deadline = time.monotonic() + timeout
        with self._idle:
            while self._pending:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._idle.wait(left)
        return True

    def stop(self) -> None:
        self._inbox.put(None)
        self._thread.join(5)
