"""The dispatcher (`pedro-worker notify`): delivers the outbox's notifications to the endpoints,
signed per Standard Webhooks, at least once, in order per user.

A delivery is claimed, sent, and its outcome recorded, each claim and outcome one short
autocommit statement (sql/queries/notify_dispatch.sql): no transaction is open across an HTTP
call, and the ledger never waits on a receiver (this is a process of its own). A claim is a
lease: a dispatcher killed mid-delivery leaves its claim to end, and the delivery goes again,
with the same webhook-id and the same body. Several dispatchers may run at once: a lane
(endpoint, user) has at most one delivery in flight, its oldest pending one.

The loop wakes when a notification is written (LISTEN pedro_notifications, sent at the
writer's commit), when one of its deliveries ends (the lane's next one is due), and every
`notify_poll_ms` (retries falling due). Every SCAN_EVERY_S it also writes the notifications
that the clock causes (worker/notify/scans.py).
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import NamedTuple

import asyncpg
import httpx
import msgspec
from standardwebhooks.webhooks import Webhook

from .. import clock, db
from ..errors import DATABASE_OUTAGES, ConfigError
from ..logs import get_logger, scrub
from ..repo import notify_dispatch as repo
from ..repo.notify_dispatch import Claim
from ..settings import Settings
from . import scans
from .config import Endpoint

log = get_logger("pedro.notify")

CHANNEL = "pedro_notifications"  # sql/queries/notifications.sql notifies it at commit
LEASE_MARGIN_S = 5.0  # a claim's lease: the request's deadline, plus this to record the outcome
SCAN_EVERY_S = 10.0
LISTEN_CONNECT_S = 10.0
IDLE_CLAIM_GAP = 4  # caught up, the next claim waits this many times the last claim's duration
MAX_ANSWER_BYTES = 64 * 1024  # what is read of an answer (then dropped): enough to reuse the connection

_encode = msgspec.json.Encoder().encode


def body_of(claim: Claim) -> bytes:
    """The request body, compact JSON built from the row alone: every attempt sends the same
    bytes (data's key order is JSONB's, which is fixed)."""
    return _encode({"type": claim.type, "timestamp": iso_utc(claim.created_at), "data": claim.data})


def iso_utc(at: datetime) -> str:
    """`2026-11-25T15:00:00.123Z`: what JavaScript's Date.toISOString() writes and parses."""
    return at.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def retry_delay(attempts: int, schedule: Sequence[float]) -> float | None:
    """Seconds before the next attempt after failed attempt number `attempts` (the first is
    immediate; the schedule is the wait before each retry), or None: that was the last."""
    return schedule[attempts - 1] if attempts <= len(schedule) else None


class Outcome(NamedTuple):
    status: int | None  # the receiver's HTTP status; None: no answer
    error: str | None  # short, for ops: never a secret, a body or the endpoint's URL

    @property
    def delivered(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


class Sender:
    """Signs and posts one delivery: 2xx is delivered; any other status, a timeout or a
    connection error is a failed attempt. Redirects are not followed (a failed attempt)."""

    def __init__(self, endpoints: Sequence[Endpoint], timeout_s: float, concurrency: int) -> None:
        self.timeout_s = timeout_s
        self._signers: dict[str, Webhook] = {}
        for endpoint in endpoints:
            try:
                self._signers[endpoint.name] = Webhook(endpoint.secret.get_secret_value())
            except Exception:  # binascii.Error, an empty key: never show the secret
                raise ConfigError(f"notification endpoint {endpoint.name!r}: the secret is not whsec_<base64>") from None
        self._limits = httpx.Limits(max_connections=concurrency)
        self._client: httpx.AsyncClient | None = None

    def open(self) -> None:
        """The HTTP client, made on the loop that sends."""
        self._client = httpx.AsyncClient(timeout=self.timeout_s, follow_redirects=False, limits=self._limits)

    async def send(self, endpoint: Endpoint, claim: Claim) -> Outcome:
        body = body_of(claim)
        now = clock.now()
        headers = {
            "webhook-id": claim.webhook_id,
            "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": self._signers[endpoint.name].sign(claim.webhook_id, now, body.decode()),
            "content-type": "application/json",
        }
        assert self._client is not None
        try:
            async with asyncio.timeout(self.timeout_s):  # the whole exchange, not each read
                async with self._client.stream("POST", endpoint.url, content=body, headers=headers) as answer:
                    read = 0
                    async for chunk in answer.aiter_raw():
                        read += len(chunk)
                        if read > MAX_ANSWER_BYTES:
                            break
                    status = answer.status_code
        except TimeoutError:
            return Outcome(None, f"no answer in {self.timeout_s:g} s")
        except httpx.HTTPError as exc:
            detail = scrub(str(exc).replace(endpoint.url, "<url>"))[:160]
            return Outcome(None, f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__)
        return Outcome(status, None if 200 <= status < 300 else f"HTTP {status}")

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()


class Dispatcher:
    """Delivers due notifications until `stop()`: up to `notify_concurrency` at once."""

    def __init__(self, settings: Settings) -> None:
        # httpx logs each request line with its URL, and an endpoint's URL may carry a token
        logging.getLogger("httpx").setLevel(logging.WARNING)
        self.settings = settings
        self.endpoints = {e.name: e for e in settings.notify_targets}
        self.lease_s = settings.notify_timeout_s + LEASE_MARGIN_S
        self._stop = asyncio.Event()
        self._wake = asyncio.Event()
        self._tasks: set[asyncio.Task] = set()
        self._pool: asyncpg.Pool | None = None
        self._listener: asyncpg.Connection | None = None
        self._listening = True  # as last logged
        self._sender = Sender(list(self.endpoints.values()), settings.notify_timeout_s, settings.notify_concurrency)

    def stop(self) -> None:
        """Stop claiming; deliveries in flight finish (within their lease) or are abandoned, to
        be delivered again when their lease ends. Call it on the dispatcher's event loop."""
        self._stop.set()
        self._wake.set()

    async def run(self) -> None:
        if not self.endpoints:
            log.warning("notify_no_endpoints", detail="no notification endpoint is set: nothing to deliver")
        self._sender.open()
        try:
            self._pool = await db.create_pool(self.settings)
            scanner = asyncio.create_task(self._scan_loop(), name="notify-scan")
            try:
                log.info("notify_started", endpoints=sorted(self.endpoints),
                         concurrency=self.settings.notify_concurrency)  # fmt: skip
                await self._dispatch_loop()
            finally:
                self._stop.set()
                await self._finish_in_flight()
                await scanner  # it ends after the scan it is in
        finally:
            if self._listener is not None:
                await self._listener.close()
            await self._sender.close()
            if self._pool is not None:
                await self._pool.close()
        log.info("notify_stopped")

    async def _dispatch_loop(self) -> None:
        names = sorted(self.endpoints)
        concurrency = self.settings.notify_concurrency
        while not self._stop.is_set():
            await self._listen()
            self._wake.clear()  # before the claim: a wake-up during it is not lost
            free = concurrency - len(self._tasks)
            claimed: list[Claim] = []
            started = time.monotonic()
            if free > 0 and names:
                try:
                    async with self._pool_conn() as conn:
                        claimed = await repo.claim_deliveries(conn, names, free, self.lease_s)
                except (asyncpg.PostgresError, *DATABASE_OUTAGES) as exc:  # an outage, a failover: polled again
                    log.warning("notify_claim_failed", error=type(exc).__name__, detail=scrub(str(exc))[:200])
                except Exception:  # a bug: logged, and the next turn tries again
                    log.exception("notify_claim_crashed")
            for claim in claimed:
                task = asyncio.create_task(self._deliver(claim))
                self._tasks.add(task)
                task.add_done_callback(self._delivery_ended)
            if claimed and len(claimed) == free:
                continue  # more may be due: claim again once a slot is free
            # Caught up. A claim reads the head of every pending lane: with a large backlog (an
            # endpoint down for hours) it costs tens of ms, and every write wakes the loop; a
            # pause of a few claims' time keeps idle claiming to a fraction of a database core.
            gap = IDLE_CLAIM_GAP * (time.monotonic() - started)
            if gap > 0.005:
                await self._sleep(self._stop, gap)
            await self._sleep(self._wake, self.settings.notify_poll_ms / 1000)

    def _delivery_ended(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        self._wake.set()  # a slot is free, and the lane's next delivery may be due

    async def _deliver(self, claim: Claim) -> None:
        try:
            outcome = await self._sender.send(self.endpoints[claim.endpoint], claim)
        except Exception as exc:  # a bug, or an error httpx does not wrap: a failed attempt all the same
            log.exception("notification_send_crashed", endpoint=claim.endpoint, webhook_id=claim.webhook_id)
            outcome = Outcome(None, type(exc).__name__)
        try:
            await self._record(claim, outcome)
        except (asyncpg.PostgresError, *DATABASE_OUTAGES) as exc:
            # it stays in flight until its lease ends, then goes again (at least once)
            log.warning("notification_outcome_lost", endpoint=claim.endpoint, webhook_id=claim.webhook_id,
                        attempt=claim.attempts, status=outcome.status, error=type(exc).__name__)  # fmt: skip
        except Exception:
            log.exception("notification_outcome_crashed", endpoint=claim.endpoint, webhook_id=claim.webhook_id)

    async def _record(self, claim: Claim, outcome: Outcome) -> None:
        fields = {"endpoint": claim.endpoint, "webhook_id": claim.webhook_id, "type": claim.type,
                  "attempt": claim.attempts, "status": outcome.status}  # fmt: skip
        async with self._pool_conn() as conn:
            if outcome.delivered:
                held, hastened = await repo.mark_delivered(conn, claim, outcome.status)
                log.info("notification_delivered", **fields)
                if hastened:
                    log.info("notify_endpoint_recovered", endpoint=claim.endpoint, made_due=hastened)
                    self._wake.set()
            else:
                delay = retry_delay(claim.attempts, self.settings.notify_retry_schedule_s)
                if delay is None:
                    held = await repo.mark_failed(conn, claim, outcome.status, outcome.error)
                    log.warning("notification_failed", **fields, error=outcome.error)
                else:
                    held = await repo.schedule_retry(conn, claim, outcome.status, outcome.error, delay)
                    log.info("notification_retry_scheduled", **fields, error=outcome.error, retry_in_s=delay)
        if not held:  # its lease ended before this outcome: another claim has it
            log.warning("notification_claim_lost", **fields)

    async def _scan_loop(self) -> None:
        """The clock's notifications (grants about to expire, events waiting too long)."""
        while not self._stop.is_set():
            try:
                async with self._pool_conn() as conn:
                    written = await scans.scan(conn, self.settings, clock.now())
                if written:
                    log.info("notifications_scanned", written=written)
                    self._wake.set()
            except (asyncpg.PostgresError, *DATABASE_OUTAGES) as exc:
                log.warning("notify_scan_failed", error=type(exc).__name__, detail=scrub(str(exc))[:200])
            except Exception:  # a bug: logged, and the next scan tries again
                log.exception("notify_scan_crashed")
            await self._sleep(self._stop, SCAN_EVERY_S)

    async def _listen(self) -> None:
        """A dedicated connection LISTENs (a pooled one would lose it on release); when it is
        lost, the loop polls until it is back. Behind a transaction-mode pooler it LISTENs on
        PEDRO_DIRECT_DATABASE_URL, or never (db.listen_url): the loop polls."""
        if self._listener is not None and not self._listener.is_closed():
            return
        self._listener = None
        url = db.listen_url(self.settings)
        if url is None:
            if self._listening:
                log.info("notify_polling", detail="behind a transaction pooler without PEDRO_DIRECT_DATABASE_URL: "
                         f"no LISTEN, polled every {self.settings.notify_poll_ms} ms")  # fmt: skip
            self._listening = False
            return
        listener = None
        try:
            async with asyncio.timeout(LISTEN_CONNECT_S):
                listener = await db.connect(url, pooler=False)  # a session of its own: no pooler between
                await listener.add_listener(CHANNEL, self._notified)
        # no host up, or none read-write yet (a failover: TargetServerAttributeNotMatched, which is
        # not a PostgresError and used to end the dispatcher): poll, and LISTEN again next turn
        except (asyncpg.PostgresError, *DATABASE_OUTAGES) as exc:
            if listener is not None:
                listener.terminate()
            if self._listening:
                log.warning("notify_listen_failed", error=type(exc).__name__, detail="polling until it is back")
            self._listening = False
            return
        self._listener = listener
        if not self._listening:
            log.info("notify_listening")
        self._listening = True

    def _notified(self, *_: object) -> None:
        self._wake.set()

    async def _finish_in_flight(self) -> None:
        """Deliveries in flight end within their lease (each request has its deadline); any
        left then is abandoned, and delivered again when its lease ends."""
        if not self._tasks:
            return
        log.info("notify_stopping", in_flight=len(self._tasks))
        _, left = await asyncio.wait(set(self._tasks), timeout=self.lease_s)
        for task in left:
            task.cancel()
        if left:
            await asyncio.wait(left)
            log.warning("notify_abandoned", deliveries=len(left))

    def _pool_conn(self):
        assert self._pool is not None
        return self._pool.acquire()

    @staticmethod
    async def _sleep(event: asyncio.Event, seconds: float) -> None:
        try:
            await asyncio.wait_for(event.wait(), seconds)
        except TimeoutError:
            pass


async def _serve(settings: Settings) -> int:
    dispatcher = Dispatcher(settings)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, dispatcher.stop)
    try:
        await dispatcher.run()
    except (asyncpg.PostgresError, *DATABASE_OUTAGES) as exc:  # no pool: the database is unreachable
        log.error("notify_cannot_start", error=type(exc).__name__, detail=scrub(str(exc))[:200])
        return 1
    return 0


def run_notify(settings: Settings) -> int:
    """`pedro-worker notify`: deliver until SIGTERM or SIGINT. Returns the exit code."""
    settings.require_database_url()
    return asyncio.run(_serve(settings))


class DispatcherThread:
    """`pedro-worker dev`: the dispatcher on a thread with its own event loop, stopped on exit."""

    def __init__(self, settings: Settings) -> None:
        self.dispatcher = Dispatcher(settings)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._main, name="pedro-notify", daemon=True)

    def _main(self) -> None:
        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            self._ready.set()
            await self.dispatcher.run()

        try:
            asyncio.run(main())
        except Exception:
            log.exception("notify_crashed")

    def __enter__(self) -> DispatcherThread:
        self._thread.start()
        self._ready.wait(5)
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            if self._loop is not None:
                self._loop.call_soon_threadsafe(self.dispatcher.stop)
        except RuntimeError:  # its loop has ended already
            pass
        self._thread.join(self.dispatcher.lease_s + 5)
