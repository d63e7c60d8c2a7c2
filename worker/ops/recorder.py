"""Worker-side stats: message and ledger counters, kept in Redis for the dashboard and /metrics.

One `OpsStats` middleware per worker process counts in memory (a lock and a dict, a few µs per
message) and a daemon thread adds the counts to Redis every `ops_stats_flush_ms` in one
pipeline: `HINCRBY` on the never-reset totals (what Prometheus scrapes as counters) and on a
10-second bucket (what the dashboard draws as rates). Every worker process of every host writes
to the same keys, so one scrape of the web process sees the whole cluster — no per-process
exposition server, no multiprocess files, and nothing lost when a worker restarts.

The same thread registers the process (host, pid, threads) next to the broker's own heartbeat,
so the dashboard can list live workers. A Redis outage only delays the counts: they stay in
memory and go out with the next successful flush.
"""

from __future__ import annotations

import functools
import json
import os
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterable
from typing import Any, Protocol

import dramatiq
import redis
from dramatiq.brokers.redis import RedisBroker
from dramatiq.middleware import Middleware

from ..logs import get_logger
from ..settle import is_deferred
from ..settings import Settings
from .keys import (
    BATCH_SIZE_BUCKETS,
    DURATION_BUCKETS_MS,
    LATENCY_BUCKETS_MS,
    RATE_TTL_S,
    Keys,
    bucket_of,
    canonical_queue,
)

log = get_logger("pedro.ops.recorder")

SEP = "|"


@functools.lru_cache(maxsize=4096)  # a few dozen distinct names, built for every message
def field(*parts: object) -> str:
    """A counter's field name: its kind and labels joined by `|` (labels never contain one)."""
    return SEP.join(str(p).replace(SEP, "/") for p in parts)


def bucket_label(value: float, bounds: tuple[int, ...]) -> str:
    for bound in bounds:
        if value <= bound:
            return str(bound)
    return "+Inf"


class _Outcome(Protocol):
    status: str
    reason: str | None


class OpsStats(Middleware):
    """Count processed / failed / retried / dead-lettered messages and ledger outcomes.

    Place it before `Retries` in the middleware list: after-hooks run in reverse order, so it
    sees whether Retries re-enqueued the message or gave up on it.
    """

    def __init__(self, settings: Settings) -> None:
        self.flush_interval = max(settings.ops_stats_flush_ms, 50) / 1000
        self._lock = threading.Lock()
        self._totals: Counter[str] = Counter()
        self._rates: Counter[str] = Counter()
        self._started: dict[str, float] = {}
        self._processed = 0
        self._broker: RedisBroker | None = None
        self._worker_info: dict[str, Any] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._failing = False

    # --- counting ---------------------------------------------------------------------------

    def _count(
        self, totals: Iterable[tuple[str, int]], rates: Iterable[tuple[str, int]] = ()
    ) -> None:
        with self._lock:
            for name, n in totals:
                self._totals[name] += n
            for name, n in rates:
                self._rates[name] += n

    def _histogram(self, name: str, labels: tuple[str, ...], value: float, bounds: tuple[int, ...]):
        return [
            (field("h", name, *labels, bucket_label(value, bounds)), 1),
            (field("h", name, *labels, "sum"), int(value)),
            (field("h", name, *labels, "count"), 1),
        ]

    def before_process_message(self, broker, message) -> None:
        self._started[message.message_id] = time.monotonic()

    def after_process_message(self, broker, message, *, result=None, exception=None) -> None:
        if is_deferred(message):  # counted when it is settled, after its commit (worker/settle.py)
            return
        queue, actor = canonical_queue(message.queue_name), message.actor_name
        started = self._started.pop(message.message_id, None)
        duration_ms = (time.monotonic() - started) * 1000 if started is not None else 0.0
        totals = [(field("messages", queue, actor), 1)]
        rates = [(field("processed", queue), 1)]
        if exception is not None:
            totals.append((field("errors", queue, actor), 1))
            rates.append((field("failed", queue), 1))
            if not message.failed:  # Retries sent it back with a backoff
                totals.append((field("retries", queue, actor), 1))
                rates.append((field("retried", queue), 1))
        totals += self._histogram("duration_ms", (queue, actor), duration_ms, DURATION_BUCKETS_MS)
        self._count(totals, rates)
        with self._lock:
            self._processed += 1

    after_skip_message = after_process_message

    def after_nack(self, broker, message) -> None:
        queue = canonical_queue(message.queue_name)
        reason = message.options.get("dead_letter_reason") or "unknown"
        args = message.args
        events = len(args[0]) if args and isinstance(args[0], list) else 0
        self._count(
            [
                (field("dead", queue, message.actor_name, reason), 1),
                (field("dead_events", queue, reason), events),
            ],
            [(field("dead", queue), 1)],
        )

    def observe_batch(self, queue: str, outcomes: Iterable[_Outcome], published_at_ms: Any) -> None:
        """Ledger outcomes of one message's events, once its transaction committed."""
        kinds = Counter(
            (o.status, (o.reason or "") if o.status in ("rejected", "retry", "waiting") else "") for o in outcomes
        )
        totals = [(field("events", queue, status, reason), n) for (status, reason), n in kinds.items()]
        rates = [(status, n) for (status, _), n in kinds.items() if status != "retry"]
        size = sum(kinds.values())
        decided = bool(rates)
        totals += self._histogram("batch_size", (queue,), size, BATCH_SIZE_BUCKETS)
        if (
            decided
            and isinstance(published_at_ms, int | float)
            and not isinstance(published_at_ms, bool)
        ):
            latency = max(time.time() * 1000 - published_at_ms, 0)
            totals += self._histogram("latency_ms", (queue,), latency, LATENCY_BUCKETS_MS)
        self._count(totals, rates)

    # --- flushing ---------------------------------------------------------------------------

    def after_worker_boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        if not isinstance(broker, RedisBroker):
            return
        self._broker = broker
        self._worker_info = {
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "threads": getattr(worker, "worker_threads", None),
            "queues": sorted(getattr(worker, "queues", None) or broker.get_declared_queues()),
            "started_ms": int(time.time() * 1000),
        }
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="pedro-ops-stats", daemon=True)
        self._thread.start()

    def before_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None

    def after_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        """Counts of the last messages, and the process leaves the worker list."""
        self.flush()
        if self._broker is not None:
            try:
                self._broker.client.hdel(
                    Keys(self._broker.namespace).workers, self._broker.broker_id
                )
            except redis.RedisError:
                pass

    def _loop(self) -> None:
        while not self._stop.wait(self.flush_interval):
            self.flush()

    def flush(self) -> bool:
        """Add the counts gathered since the last flush to Redis. False if Redis refused."""
        broker = self._broker
        if broker is None:
            return False
        with self._lock:
            totals, self._totals = self._totals, Counter()
            rates, self._rates = self._rates, Counter()
            processed = self._processed
        keys = Keys(broker.namespace)
        now = time.time()
        info = {**self._worker_info, "seen_ms": int(now * 1000), "processed": processed}
        pipe = broker.client.pipeline(transaction=False)
        for name, n in totals.items():
            if n:
                pipe.hincrby(keys.totals, name, n)
        if rates:
            bucket = keys.rate(bucket_of(now))
            for name, n in rates.items():
                pipe.hincrby(bucket, name, n)
            pipe.expire(bucket, RATE_TTL_S)
        pipe.hset(keys.workers, broker.broker_id, json.dumps(info))
        try:
            pipe.execute()
        except redis.RedisError as exc:
            self._count(totals.items(), rates.items())  # keep them for the next flush
            if not self._failing:
                log.warning("ops_stats_flush_failed", error=type(exc).__name__)
            self._failing = True
            return False
        self._failing = False
        return True


def stats_of(broker: dramatiq.Broker) -> OpsStats | None:
    for middleware in broker.middleware:
        if isinstance(middleware, OpsStats):
            return middleware
    return None


def observe_batch(
    broker: dramatiq.Broker, queue: str, outcomes: Iterable[_Outcome], message: Any
) -> None:
    """Record a committed batch's outcomes (called by actors; no-op without `OpsStats`)."""
    stats = stats_of(broker)
    if stats is not None:
        published_at = message.options.get("published_at_ms") if message is not None else None
        stats.observe_batch(queue, outcomes, published_at)
