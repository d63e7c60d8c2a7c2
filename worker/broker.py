"""The dramatiq broker and its middleware.

Order matters: `AsyncIO` starts the worker's event loop; `DatabasePool` (after it) creates the
asyncpg pool on that loop and checks the schema before anything is consumed; `DeadLetterReason`
(before `Retries`, so its after-hook runs once Retries has decided) writes why a message died
into the dead letter itself.
"""

from __future__ import annotations

import asyncio
import os
import ssl
import threading
import time

import asyncpg
import dramatiq
import dramatiq.errors
import redis
from dramatiq.asyncio import EventLoopThread, get_event_loop_thread, set_event_loop_thread
from dramatiq.brokers.redis import RedisBroker
from dramatiq.middleware import (
    AgeLimit,
    AsyncIO,
    CurrentMessage,
    Middleware,
    MiddlewareError,
    Retries,
    ShutdownNotifications,
    TimeLimit,
)

from . import db
from .codec import MessageEncoder
from .errors import DATABASE_OUTAGES, ConfigError, Rejected, RetryLater, WorkerError
from .gc_tuning import GarbageCollection
from .grant_sweep import GrantSweep
from .ledger.coalesce import Coalescer
from .logs import get_logger
from .ops.recorder import OpsStats
from .redis_client import ReplicaWait, redis_client
from .schema_check import check_schema
from .settings import Settings, mask_url
from .settle import Settler
from .waiting import Releaser
from .wakeup import WakingRedisBroker

log = get_logger("pedro.broker")

# Messages decode with msgspec (a third of a replay's CPU with json.loads); see worker/codec.py.
dramatiq.set_encoder(MessageEncoder())

QUEUES = ("usage", "billing", "users", "storage")


class Runtime:
    """What actors need in a worker process: its pool (on the worker's loop) and settings."""

    pool: asyncpg.Pool | None = None
    settings: Settings | None = None
    broker: dramatiq.Broker | None = None
    coalescer: Coalescer | None = None
    settler: Settler | None = None  # acknowledges usage messages after their commit
    releaser: Releaser | None = None  # sends waiting events back once released (worker/waiting.py)
    _sweep_stop: asyncio.Event | None = None
    _sweep_tasks: list[asyncio.Task[None]] = []


def runtime() -> tuple[Coalescer, Settings]:
    if Runtime.coalescer is None or Runtime.settings is None:
        raise RuntimeError("no database pool: is the DatabasePool middleware installed?")
    return Runtime.coalescer, Runtime.settings


def current_broker() -> dramatiq.Broker:
    """The broker of the running worker (to enqueue follow-up messages)."""
    if Runtime.broker is None:
        raise RuntimeError("no worker is running in this process")
    return Runtime.broker


class KillableAsyncIO(AsyncIO):
    """dramatiq's AsyncIO middleware, with its event loop in a daemon thread.

    dramatiq takes a second SIGTERM (or Ctrl-C) as "kill now" and exits the worker process's
    main thread; the stock loop thread is not a daemon, so the interpreter waited for it forever
    and the process hung. Now it exits at once, like a SIGKILL: open transactions roll back and
    unacknowledged messages are redelivered. A single SIGTERM still stops gracefully — the loop
    is stopped in `after_worker_shutdown`, after the pool is closed.
    """

    def before_worker_boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        event_loop_thread = EventLoopThread(self.logger)
        event_loop_thread.daemon = True
        event_loop_thread.start(timeout=1.0)
        set_event_loop_thread(event_loop_thread)


class Prefetch(Middleware):
    """`worker_prefetch` as the worker's queue prefetch (dramatiq reads only its environment
    variable otherwise); set before the worker creates its consumers."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def before_worker_boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        worker.queue_prefetch = self.settings.worker_prefetch


class WorkerBootError(MiddlewareError):
    """The worker must not boot (no pool, incompatible schema)."""


def refuse_an_untrusted_redis(broker: dramatiq.Broker) -> None:
    """A Redis whose TLS certificate fails verification is a configuration error, not an outage:
    the worker must not boot (its consumers would log it every 3 s and consume nothing). Any other
    Redis error at boot is an outage: the consumers retry until it answers."""
    if not isinstance(broker, RedisBroker):
        return
    try:
        broker.client.ping()
    except redis.ConnectionError as exc:
        causes, error = [], exc
        while error is not None and len(causes) < 10:
            causes.append(error)
            error = error.__cause__ or error.__context__
        if any(isinstance(e, ssl.SSLCertVerificationError) for e in causes) or "certificate verify failed" in str(exc):
            raise ConfigError(f"Redis's TLS certificate was refused: {exc}", reason="redis_certificate_refused") from exc


class DatabasePool(Middleware):
    """One asyncpg pool per worker process, on the AsyncIO middleware's loop.

    A worker that cannot create its pool, or finds an incompatible schema, must not boot: we
    stop the loop thread, log why, and exit non-zero.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    async def _open(self) -> asyncpg.Pool:
        pool = await db.create_pool(self.settings)
        try:
            async with pool.acquire() as conn:
                await check_schema(conn)
        except BaseException:
            await pool.close()
            raise
        return pool

    def before_worker_boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        loop_thread = get_event_loop_thread()
        assert loop_thread is not None, "DatabasePool must come after AsyncIO"
        try:
            refuse_an_untrusted_redis(broker)
            Runtime.pool = loop_thread.run_coroutine(self._open())
            Runtime.settings = self.settings
            Runtime.broker = broker
            Runtime.coalescer = Coalescer(Runtime.pool, self.settings)
            loop_thread.run_coroutine(self._read_operation_types(Runtime.pool, Runtime.coalescer))
            # Only our consumer hands a deferred ack over (worker/wakeup.py); under any other
            # broker the actor waits for its commit, so nothing is acknowledged before it.
            if isinstance(broker, WakingRedisBroker):
                Runtime.settler = Settler(broker)
            # A failed enqueue rolls the release back: the sweep sends it later (no waiting on Redis
            # while the waiting rows are locked).
            Runtime.releaser = Releaser(Runtime.pool, broker, self.settings)
            loop_thread.run_coroutine(self._start_sweep())
        except BaseException as exc:
            detail = exc.detail if isinstance(exc, WorkerError) else f"{type(exc).__name__}: {exc}"
            log.critical(
                "worker_boot_failed",
                reason=getattr(exc, "reason", "database_unavailable"),
                detail=detail,
                database=mask_url(self.settings.database_url.get_secret_value())
                if self.settings.database_url
                else "",
            )
            # dramatiq lets only MiddlewareError out of a boot hook; the loop stops first, so
            # nothing runs on it while the process exits.
            loop_thread.stop()
            loop_thread.join(5)
            raise WorkerBootError(detail) from exc
        log.info("worker_pool_ready", pid=os.getpid(), thread=threading.current_thread().name)

    @staticmethod
    async def _read_operation_types(pool: asyncpg.Pool, coalescer: Coalescer) -> None:
        """The database's "OperationType" labels, read at boot (refreshed by the coalescer)."""
        async with pool.acquire() as conn:
            await coalescer.labels.current(conn, ())

    async def _start_sweep(self) -> None:
        """The waiting sweep (worker/waiting.py) and the grant sweep (worker/grant_sweep.py) run
        on the worker's loop until shutdown."""
        assert Runtime.releaser is not None and Runtime.pool is not None
        Runtime._sweep_stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        Runtime._sweep_tasks = [
            loop.create_task(Runtime.releaser.run(Runtime._sweep_stop)),
            loop.create_task(GrantSweep(Runtime.pool, self.settings).run(Runtime._sweep_stop)),
        ]

    async def _stop_sweep(self) -> None:
        if Runtime._sweep_stop is not None:
            Runtime._sweep_stop.set()
            await asyncio.wait_for(asyncio.gather(*Runtime._sweep_tasks), 10)

    def after_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        loop_thread = get_event_loop_thread()
        if loop_thread is not None:
            loop_thread.run_coroutine(self._stop_sweep())
        if Runtime.coalescer is not None and loop_thread is not None:
            loop_thread.run_coroutine(Runtime.coalescer.idle())  # the submitted events commit
        if Runtime.settler is not None:
            if not Runtime.settler.wait_idle(timeout=30):  # and their messages are acknowledged
                log.warning("worker_shutdown_unsettled", detail="left unacknowledged: redelivered later")
            Runtime.settler.stop()
        if Runtime.pool is not None and loop_thread is not None:
            loop_thread.run_coroutine(Runtime.pool.close())
        Runtime.pool = Runtime.coalescer = Runtime.settler = Runtime.releaser = Runtime._sweep_stop = None


# Replace a message's stored body only if it is still there (it is: we hold it unacked).
_UPDATE_STORED_MESSAGE = """
if redis.call("hexists", KEYS[1], ARGV[1]) == 1 then
    return redis.call("hset", KEYS[1], ARGV[1], ARGV[2])
end
return -1
"""


class DeadLetterReason(Middleware):
    """Store `dead_letter_reason` in a failed message's options, so ops see why it died.

    The Redis broker's nack moves the body stored at enqueue time to the dead-letter set, not the
    in-memory message, so we rewrite the stored body (with the reason) just before the nack.
    """

    def after_process_message(self, broker, message, *, result=None, exception=None):
        if exception is None or not message.failed:
            return
        if isinstance(exception, WorkerError):
            reason = exception.reason
            detail = exception.detail
        else:
            reason, detail = "error", f"{type(exception).__name__}: {exception}"
        if isinstance(exception, RetryLater):
            reason = ",".join(exception.reasons)
        message.options["dead_letter_reason"] = reason
        message.options["dead_letter_detail"] = detail[:2000]
        redis_id = message.options.get("redis_message_id")
        if isinstance(broker, RedisBroker) and redis_id:
            stored = f"{broker.namespace}:{message.queue_name}.msgs"
            broker.client.eval(_UPDATE_STORED_MESSAGE, 1, stored, redis_id, message.encode())
        log.error(
            "message_dead_lettered",
            message_id=message.message_id,
            queue=message.queue_name,
            actor=message.actor_name,
            reason=reason,
        )


# Errors that say "a server is unreachable, restarting or failing over", not "this message is
# wrong" (PostgreSQL's, including a multi-host URL finding no read-write host yet: worker/errors.py).
INFRASTRUCTURE_ERRORS: tuple[type[BaseException], ...] = (
    *DATABASE_OUTAGES,
    redis.ConnectionError,
    redis.TimeoutError,
)


class _EnqueueThroughOutages:
    """The broker, except that `enqueue` waits out a Redis outage instead of failing.

    dramatiq's `Retries` re-enqueues a failed message and the worker then acknowledges the
    original, retrying the acknowledgement until Redis answers again. If Redis is down when the
    retry copy is enqueued, `Retries` fails, the error is logged and swallowed, and the original
    is still acknowledged once Redis is back: the message is gone. (The chaos run found this: a
    Redis kill -9 landed between a billing message's commit and its retry, and 5 waiting events
    were lost.) Waiting here — as dramatiq already does for acknowledgements — keeps the original
    unacknowledged until its copy is stored; a worker killed meanwhile leaves it in Redis, to be
    redelivered.
    """

    def __init__(self, broker: dramatiq.Broker, pause_s: float = 0.5) -> None:
        self._broker = broker
        self._pause_s = pause_s

    def __getattr__(self, name: str):
        return getattr(self._broker, name)

    def enqueue(self, message: dramatiq.Message, *, delay: int | None = None) -> dramatiq.Message:
        attempt = 0
        while True:
            try:
                return self._broker.enqueue(message, delay=delay)
            except (redis.ConnectionError, redis.TimeoutError, dramatiq.errors.BrokerConnectionError) as exc:
                if attempt % 60 == 0:  # once, then every ~30 s: an outage is not a flood of lines
                    log.warning("retry_enqueue_waiting_for_redis", message_id=message.message_id,
                                error=type(exc).__name__, attempts=attempt + 1)  # fmt: skip
                attempt += 1
                time.sleep(self._pause_s)


class DurableRetries(Retries):
    """`Retries` whose retry copy is stored before the original can be acknowledged."""

    def after_process_message(self, broker, message, *, result=None, exception=None):
        super().after_process_message(_EnqueueThroughOutages(broker), message, result=result, exception=exception)


def retry_policy(settings: Settings):
    """dramatiq `retry_when`: outages get `infra_max_retries`, everything else `max_retries`."""

    def retry_when(retries: int, exception: BaseException) -> bool:
        if isinstance(exception, Rejected):
            return False
        if isinstance(exception, INFRASTRUCTURE_ERRORS):
            return retries < settings.infra_max_retries
        return retries < settings.max_retries

    return retry_when


def build_broker(
    settings: Settings, *, worker: bool = True, socket_timeout: float | None = None
) -> RedisBroker:
    """The broker the publisher and the worker share. `worker=False` skips the DB pool.
    `socket_timeout` (seconds) bounds Redis connects and reads (the ingress's quick 503)."""
    middleware: list[Middleware] = [
        AgeLimit(),
        TimeLimit(time_limit=300_000),
        ShutdownNotifications(),
        CurrentMessage(),
        DeadLetterReason(),
        OpsStats(settings),  # before Retries too: it counts retried vs. dead-lettered
        DurableRetries(
            max_retries=settings.max_retries,
            min_backoff=settings.min_backoff_ms,
            max_backoff=settings.max_backoff_ms,
            retry_when=retry_policy(settings),
        ),
        KillableAsyncIO(),
    ]
    if worker:
        middleware += [Prefetch(settings), DatabasePool(settings), GarbageCollection()]
    broker = WakingRedisBroker(
        client=redis_client(
            settings, socket_timeout=socket_timeout, socket_connect_timeout=socket_timeout
        ),
        namespace=settings.redis_namespace,
        middleware=middleware,
        heartbeat_timeout=settings.heartbeat_timeout_ms,
        maintenance_chance=settings.maintenance_chance,
        dead_message_ttl=settings.dead_message_ttl_ms,
        prefetch_events=settings.worker_prefetch_events,
        fetch_linger_ms=settings.worker_fetch_linger_ms,
    )
    broker.replica_wait = ReplicaWait.of(settings)  # the publisher's WAIT (worker/publisher.py)
    for queue in QUEUES:
        broker.declare_queue(queue)
    from .actors import register_actors

    register_actors(broker)
    return broker
