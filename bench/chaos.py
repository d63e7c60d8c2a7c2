"""`pedro-worker chaos`: crash everything while events flow, then prove nothing was lost or doubled.

A bounded run on embedded servers (PostgreSQL with fsync on; Redis with the append-only file
fsynced on every write, the configuration docs/reliability.md requires):

1. seed users; generate a mixed workload (usage, refunds, adjustments, some invalid events,
   some events sent twice, some out of order — refunds before their usage) and a plan of credit
   holds (bench/chaos_workload.py, `make_holds`);
2. publish it in chunks (batch messages and single-event messages) while worker processes are
   SIGKILLed every few seconds and restarted, Redis is killed (-9) and restarted once,
   PostgreSQL is crashed (immediate stop) and restarted once, the ingress is killed (-9) and
   restarted once, and all workers are down at once for a few seconds (the blackout);
   meanwhile a driver thread places holds over the real ingress (`pedro-worker ingress`, POST
   /v1/holds) and captures them by publishing `usage.recorded` events naming them (so a kill
   lands between hold and capture), captures some over HTTP, releases some, leaves some open,
   and during the blackout places holds with a 2 s ttl that expire before any worker runs
   again (the grant sweep, in every worker process, must release them once they are back);
3. wait until every queue is drained, nothing waits in `worker.waiting` (events that came
   before their user or their usage wait there and are released by it) and no hold is open
   past its expiry, then check: every accepted event is applied or stored as rejected (or
   dead-lettered with a reason), no event is applied twice (every balance equals the balance
   computed from the unique events and the holds' plan, row counts match), every hold resolved
   exactly once as planned (bench/verify.py, `check_chaos_holds`), and reconcile is clean.

With `--pgbouncer` the workers and the ingress reach PostgreSQL through a PgBouncer in transaction
mode (PEDRO_DATABASE_POOLER=transaction, docs/topologies.md); PostgreSQL's crash then happens
behind it. The checks read PostgreSQL directly.

The workload runs under the `allow` overdraft policy, so the expected balances do not depend on
the order in which the crashes let events through.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import random
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import asyncpg
import httpx
import redis
from pydantic import SecretStr

from bench.chaos_workload import (PLAN_CREDITS, PLAN_ID, STARTING_CREDITS, HoldCase, HoldPlan, Workload,
                                  make_holds, make_workload)  # fmt: skip
from bench.fleet import IngressProcess
from bench.notify_checks import check_notifications
from bench.pgbouncer import PgBouncer
from bench.verify import check_chaos_holds
from worker import db
from worker.broker import QUEUES, build_broker
from worker.embedded import EmbeddedPostgres, EmbeddedRedis
from worker.migrate import migrate
from worker.publisher import Publisher, build_message, queue_for
from worker.repo.reconcile import find_balance_drift, find_grant_drift
from worker.repo.users import insert_user_with_balance
from worker.settings import ROOT, Settings


@dataclass
class ChaosConfig:
    events: int = 100_000
    users: int = 500
    workers: int = 3
    threads: int = 8
    chunk: int = 500  # events per publish call
    batch_size: int = 100  # events per batch message
    kill_every_s: float = 3.0
    publish_seconds: float = 120.0  # spread publishing so the crashes land while events flow
    restart_redis: bool = True
    restart_postgres: bool = True
    holds: int = 2_000  # holds placed over the publish window (and a tenth as many in the blackout)
    restart_ingress: bool = True
    blackout: bool = True  # all workers down at once, holds expiring meanwhile
    pgbouncer: bool = False  # workers and ingress reach PostgreSQL through PgBouncer (transaction mode)
    seed: int = 7
    timeout_s: float = 900
    log_dir: Path = field(default_factory=lambda: Path("test-artifacts/chaos"))


CHAOS_PGBOUNCER_POOL = 20  # server connections per (database, user): PgBouncer's default


class WorkerProcess:
    """One `dramatiq worker.app --processes 1` in its own process group, so SIGKILL takes all of it."""

    def __init__(self, env: dict[str, str], threads: int, log: Path) -> None:
        self.env, self.threads, self.log = env, threads, log
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "dramatiq", "worker.app", "--processes", "1", "--threads", str(self.threads)],
                cwd=ROOT, env=self.env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def terminate(self) -> None:
        """Graceful: SIGTERM to dramatiq's main process only (it forwards it to its workers;
        a second SIGTERM would tell them to exit at once)."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)

    def wait(self, timeout_s: float = 30) -> None:
        """After `terminate`: its exit, or SIGKILL after `timeout_s`."""
        if self.proc and self.proc.poll() is None:
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.kill()


@dataclass
class ChaosReport:
    events: int = 0
    unique_valid: int = 0
    invalid: int = 0
    duplicates_sent: int = 0
    messages: int = 0
    worker_kills: int = 0
    redis_restarts: int = 0
    postgres_restarts: int = 0
    publish_retries: int = 0
    seconds: float = 0.0
    ingress_restarts: int = 0
    blackout_down: float | None = None  # epoch seconds: all workers killed …
    blackout_up: float | None = None  # … and started again
    hold_requests: int = 0
    hold_retries: int = 0  # requests sent again: a 5xx or no answer (ingress or PostgreSQL down)
    hold_retry_reasons: dict[str, int] = field(default_factory=dict)
    holds: dict[str, int] = field(default_factory=dict)
    hold_findings: list[str] = field(default_factory=list)
    notifications: dict[str, int] = field(default_factory=dict)  # written, by type
    notification_findings: list[str] = field(default_factory=list)
    applied: int = 0
    rejected: int = 0
    dead_letters: int = 0
    dead_letter_reasons: dict[str, int] = field(default_factory=dict)
    waited: int = 0  # events that waited in worker.waiting at some point
    waited_reasons: dict[str, int] = field(default_factory=dict)
    still_waiting: int = 0
    lost: int = 0
    applied_twice: int = 0
    topology: str = "direct to PostgreSQL"
    wrong_balances: int = 0
    drift: int = 0
    counts: dict[str, tuple[int, int]] = field(default_factory=dict)  # what -> (found, expected)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def blackout_s(self) -> float:
        return (self.blackout_up or 0.0) - (self.blackout_down or 0.0)

    def hold_lines(self) -> list[str]:
        h = self.holds
        if not h and not self.hold_requests and not self.hold_findings:
            return []  # --holds 0
        race = f"; race (ttl 1 s): {h.get('race: captured', 0)} captured, {h.get('race: expired first', 0)} expired first"
        return [
            f"holds placed          {h.get('placed', 0):>9}  (POST /v1/holds on the ingress: {self.hold_requests} requests, "
            f"{self.hold_retries} sent again after a 5xx or no answer: {self.hold_retry_reasons or 'none'})",
            f"  captured via queue  {h.get('captured via queue', 0):>9}  (usage.recorded with holdId{race})",
            f"  captured via HTTP   {h.get('captured via HTTP', 0):>9}",
            f"  released            {h.get('released', 0):>9}",
            f"  expired             {h.get('expired', 0):>9}  ({h.get('expired while no worker ran', 0)} while no worker ran, "
            f"{h.get('left to the sweep', 0)} of them named by nothing afterwards: the sweep's)",
            f"  still held          {h.get('open', 0):>9}  (ttl 1 h, as planned)",
            f"  usages naming one   {h.get('plain usages naming a resolved hold', 0) + h.get('hold_already_captured', 0):>9}  "
            f"({h.get('plain usages naming a resolved hold', 0)} plain: hold released or expired; "
            f"{h.get('hold_already_captured', 0)} rejected hold_already_captured)",
            f"hold findings         {len(self.hold_findings):>9}",
            *(f"    {finding}" for finding in self.hold_findings[:10]),
        ]

    def lines(self) -> list[str]:
        return [
            f"events published      {self.events:>9}  ({self.unique_valid} valid unique, {self.invalid} invalid, "
            f"{self.duplicates_sent} sent twice) in {self.messages} publish calls, all families",
            f"topology              {self.topology}",
            f"chaos                 {self.worker_kills} worker SIGKILLs, {self.redis_restarts} Redis kill -9 + restart, "
            f"{self.postgres_restarts} PostgreSQL crash + restart, {self.ingress_restarts} ingress kill -9 + restart, "
            f"all workers down {self.blackout_s:.1f} s once, {self.publish_retries} publish retries",
            f"drained in            {self.seconds:>9.1f} s",
            f"decided events        {self.applied:>9}  (worker.event_log: applied or refused, once each)",
            *(f"{what:<22}{have:>9}  (expected {want})" for what, (have, want) in self.counts.items()),
            f"rejected (stored)     {self.rejected:>9}",
            f"dead-lettered         {self.dead_letters:>9}  {self.dead_letter_reasons or ''}",
            f"waited, released      {self.waited:>9}  {self.waited_reasons or ''} (worker.waiting)",
            f"still waiting         {self.still_waiting:>9}",
            *self.hold_lines(),
            f"notifications         {sum(self.notifications.values()):>9}  {self.notifications or ''} (the outbox)",
            f"notification findings {len(self.notification_findings):>9}",
            *(f"    {finding}" for finding in self.notification_findings[:10]),
            f"lost                  {self.lost:>9}",
            f"applied twice         {self.applied_twice:>9}",
            f"wrong balances        {self.wrong_balances:>9}",
            f"reconcile drift       {self.drift:>9}",
            "RESULT                " + ("PASS" if self.ok else "FAIL: " + "; ".join(self.problems)),
        ]


_TOKEN = "chaos-" + uuid.uuid4().hex  # the ingress's one API token, for the hold driver
_NOTIFY_SECRET = "whsec_" + base64.b64encode(uuid.uuid4().bytes * 2).decode()


class HoldDriver:
    """Drives the hold plan (bench/chaos_workload.py, `make_holds`) over the real ingress while
    the events flow: places each hold, then captures it by publishing the `usage.recorded` events
    that name it, or over HTTP, or releases it, or leaves it; during the blackout it places the
    expire holds and tells the chaos thread when they are due. A request that gets a 5xx or no
    answer (the ingress killed, PostgreSQL crashed, a busy balance) is sent again as it was —
    the credit API is idempotent — until it answers; any other unexpected answer is noted on the
    hold and reported as a finding."""

    def __init__(self, run: ChaosRun, plan: HoldPlan, url: str, settings: Settings) -> None:
        self.chaos, self.plan = run, plan
        self.http = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {_TOKEN}"}, timeout=10)
        self.broker = build_broker(settings, worker=False)
        self.publisher = Publisher(self.broker, validate=False)
        self.requests = self.retries = 0
        self.retry_reasons: Counter[str] = Counter()
        self.problems: list[str] = []  # the driver's own (a crash, a request never answered)
        self.blackout_handled = False

    def close(self) -> None:
        self.http.close()
        self.broker.close()

    def run(self) -> None:
        try:
            window = self.chaos.cfg.publish_seconds * 0.85
            pace = window / max(1, len(self.plan.cases))
            started = time.monotonic()
            for n, case in enumerate(self.plan.cases):
                while (left := started + n * pace - time.monotonic()) > 0:
                    self._maybe_blackout()
                    time.sleep(min(left, 0.1))
                self._maybe_blackout()
                self.do(case)
            while not self.blackout_handled and not self.chaos.stop_chaos.is_set():
                if self.chaos.blackout_on.wait(0.5) or not self.chaos.cfg.blackout:
                    self._maybe_blackout()
                    self.blackout_handled = True
        except Exception as exc:  # noqa: BLE001 - a crash of the driver is a finding, not a hang
            self.problems.append(f"the hold driver crashed: {exc!r}")
            self.chaos.expire_placed.set()
        finally:
            self.chaos.holds_done.set()

    # --- one hold -----------------------------------------------------------------------------

    def do(self, c: HoldCase) -> None:
        if not self.place(c):
            return
        if c.kind in ("queue", "twin", "race"):
            self.publish(c.captures + (c.captures[:1] if c.twice else []))
        elif c.kind == "contested":  # the usage and the HTTP capture at once
            self.publish(c.captures)
            self.capture(c, usage_ids={c.hold_id, c.captures[0]["id"]})
        elif c.kind == "http":
            self.capture(c, usage_ids={c.hold_id})
            self.publish(c.after)
        elif c.kind == "release":
            answer = self.call("POST", f"/v1/holds/{c.hold_id}/release")
            if answer is not None and (answer.status_code, _status(answer)) != (200, "released"):
                c.notes.append(f"release answered {answer.status_code} {answer.text[:200]}")
            self.publish(c.after)

    def place(self, c: HoldCase) -> bool:
        answer = self.call("POST", "/v1/holds", c.request())
        if answer is None:
            return False
        body = answer.json()
        # A replay (the first request committed, its answer was lost with the ingress) answers
        # the hold as it is now: a 1 s hold may have expired meanwhile.
        replayed = answer.headers.get("idempotent-replayed") == "true"
        if answer.status_code != 201 or body["hold"]["credits"] != c.credits \
                or (body["hold"]["status"] != "held" and not replayed):  # fmt: skip
            c.notes.append(f"place answered {answer.status_code} {answer.text[:200]}")
            return False
        c.placed = True
        c.expires_at = datetime.fromisoformat(body["hold"]["expiresAt"]).timestamp()
        return True

    def capture(self, c: HoldCase, usage_ids: set[str]) -> None:
        answer = self.call("POST", f"/v1/holds/{c.hold_id}/capture", {"credits": c.used} if c.http_credits else None)
        if answer is None:
            return
        hold = answer.json().get("hold", {})
        if answer.status_code != 200 or hold.get("status") != "captured" or hold.get("captured") != c.used \
                or hold.get("usageId") not in usage_ids:  # fmt: skip
            c.notes.append(f"capture answered {answer.status_code} {answer.text[:300]}")

    def late(self, c: HoldCase) -> None:
        """An expire hold, once the workers are back: a capture answers 409 hold_expired, a
        release 200 with the hold expired (whether or not the sweep got to it first)."""
        if c.late_http == "capture":
            answer = self.call("POST", f"/v1/holds/{c.hold_id}/capture", {"credits": 1})
            if answer is not None and (answer.status_code, answer.json().get("error")) != (409, "hold_expired"):
                c.notes.append(f"a capture after its expiry answered {answer.status_code} {answer.text[:200]}")
        elif c.late_http == "release":
            answer = self.call("POST", f"/v1/holds/{c.hold_id}/release")
            if answer is not None and (answer.status_code, _status(answer)) != (200, "expired"):
                c.notes.append(f"a release after its expiry answered {answer.status_code} {answer.text[:200]}")

    # --- the blackout -------------------------------------------------------------------------

    def _maybe_blackout(self) -> None:
        if self.blackout_handled or not self.chaos.blackout_on.is_set():
            return
        self.blackout_handled = True
        expire = [c for c in self.plan.blackout if c.kind == "expire"]
        # One user's expire holds one after the other: placing a hold releases its user's holds
        # that are due (as any transaction over a user does), so a user's next hold placed after
        # the first one's 2 s ttl (the plan deals them round-robin over the quiet users: slow
        # requests, e.g. through PgBouncer, took longer than that) would release it before the
        # sweep could, and the check wants the sweep to.
        for c in sorted(expire, key=lambda c: c.clerk):
            self.place(c)
        self.chaos.expire_by = max((c.expires_at for c in expire if c.expires_at), default=0.0)
        self.chaos.expire_placed.set()
        for c in self.plan.blackout:  # holds whose capture waits for the workers
            if c.kind != "expire":
                self.do(c)
        self.chaos.blackout_over.wait(120)
        for c in expire:  # the workers are back: name some of the expired holds again
            if c.placed:
                self.publish(c.after)
                self.late(c)

    # --- I/O ----------------------------------------------------------------------------------

    def call(self, method: str, path: str, body: dict | None = None) -> httpx.Response | None:
        deadline = time.monotonic() + 120
        while True:
            self.requests += 1
            try:
                answer = self.http.request(method, path, json=body)
                if answer.status_code < 500:
                    return answer
                what = f"{answer.status_code} {_error(answer)}"
            except httpx.HTTPError as exc:
                what = type(exc).__name__
            if time.monotonic() > deadline:
                self.problems.append(f"{method} {path}: no answer within 120 s ({what})")
                return None
            self.retries += 1
            self.retry_reasons[what] += 1
            time.sleep(0.2)

    def publish(self, events: list[dict]) -> None:
        """Each event in its own message, so a twin may go to another worker process."""
        while events:
            try:
                self.publisher.enqueue_pipelined([build_message(queue_for(e), [e]) for e in events])
                return
            except redis.RedisError:
                self.chaos.report.publish_retries += 1
                time.sleep(0.2)


def _error(answer: httpx.Response) -> str:
    try:
        return str(answer.json()["error"])
    except (ValueError, KeyError, TypeError):
        return answer.text[:100]


def _status(answer: httpx.Response) -> str | None:
    try:
        return answer.json()["hold"]["status"]
    except (ValueError, KeyError, TypeError):
        return None


class ChaosRun:
    def __init__(self, cfg: ChaosConfig) -> None:
        self.cfg = cfg
        self.report = ChaosReport()
        self.namespace = f"pedro-chaos-{uuid.uuid4().hex[:8]}"
        self.published = 0
        self.done_publishing = threading.Event()
        self.stop_chaos = threading.Event()
        # the blackout: the chaos thread kills every worker and sets `blackout_on`; the hold driver
        # places holds that expire meanwhile and sets `expire_by` and `expire_placed`; the chaos
        # thread starts the workers once they are past due and sets `blackout_over`
        self.blackout_on = threading.Event()
        self.expire_placed = threading.Event()
        self.blackout_over = threading.Event()
        self.expire_by = 0.0
        self.holds_done = threading.Event()

    # --- phases ----------------------------------------------------------------------------------

    def run(self) -> ChaosReport:
        cfg = self.cfg
        cfg.log_dir.mkdir(parents=True, exist_ok=True)
        workload = make_workload(events=cfg.events, users=cfg.users, chunk=cfg.chunk, seed=cfg.seed)
        self.plan = make_holds(holds=cfg.holds, users=workload.stable_users, seed=cfg.seed) if cfg.holds else None
        if self.plan is None:
            self.holds_done.set()
        r = self.report
        r.events = workload.events + workload.duplicates_sent
        r.unique_valid, r.invalid = len(workload.decided_keys), len(workload.invalid_ids)
        r.duplicates_sent, r.messages = workload.duplicates_sent, len(workload.chunks)

        with EmbeddedPostgres() as pg, EmbeddedRedis(appendfsync="always") as rd, ExitStack() as stack:
            self.pg, self.rd = pg, rd
            worker_db = {"DATABASE_URL": pg.url}
            if cfg.pgbouncer:  # docs/topologies.md: DATABASE_URL through the pooler, the direct URL beside it
                bouncer = stack.enter_context(PgBouncer(pg.url, pool_size=CHAOS_PGBOUNCER_POOL))
                worker_db = {"DATABASE_URL": bouncer.url_for(pg.url), "PEDRO_DATABASE_POOLER": "transaction",
                             "PEDRO_DIRECT_DATABASE_URL": pg.url}  # fmt: skip
                r.topology = (f"workers and ingress through PgBouncer {bouncer.version()} (transaction mode, "
                              f"{CHAOS_PGBOUNCER_POOL} server connections), PEDRO_DATABASE_POOLER=transaction")
            asyncio.run(self._prepare(pg.url, workload.seeded_users))
            # Events that come before what they depend on (a user's first usage up to ~45k events,
            # ~50 s, before its user.created) wait in worker.waiting and are released by it;
            # retries are left for held rows and outages.
            retries = 30
            settings = Settings(
                database_url=SecretStr(pg.url), redis_url=SecretStr(rd.url), redis_namespace=self.namespace,
                overdraft_policy="allow", min_backoff_ms=200, max_backoff_ms=2_000, max_retries=retries,
                heartbeat_timeout_ms=4_000, maintenance_chance=200_000,
            )  # fmt: skip
            env = {**os.environ, **worker_db, "REDIS_URL": rd.url,
                   "PEDRO_REDIS_NAMESPACE": self.namespace, "PEDRO_OVERDRAFT_POLICY": "allow",
                   "PEDRO_MIN_BACKOFF_MS": "200", "PEDRO_MAX_BACKOFF_MS": "2000", "PEDRO_MAX_RETRIES": str(retries),
                   "PEDRO_HEARTBEAT_TIMEOUT_MS": "4000", "PEDRO_MAINTENANCE_CHANCE": "200000",
                   "PEDRO_WAITING_SWEEP_MS": "500", "PEDRO_WAITING_RESEND_MS": "30000",
                   "PEDRO_GRANT_SWEEP_MS": "500", "PEDRO_LOG_LEVEL": "WARNING",
                   # notifications on (nothing delivers them here): the outbox is checked for
                   # what the crashes may have lost or invented (bench/notify_checks.py)
                   "PEDRO_NOTIFY_URL": "http://127.0.0.1:9/unused", "PEDRO_NOTIFY_SECRET": _NOTIFY_SECRET,
                   "PEDRO_NOTIFY_LOW_THRESHOLDS": "50,10%"}  # fmt: skip
            self.workers = [WorkerProcess(env, cfg.threads, cfg.log_dir / f"worker-{n}.log") for n in range(cfg.workers)]
            self.started = time.monotonic()
            logging.getLogger("httpx").setLevel(logging.WARNING)  # not a line per hold request
            self.ingress = IngressProcess(env, cfg.log_dir / "ingress.log", _TOKEN) if self.plan else None
            driver = None
            if self.ingress is not None and self.plan is not None:
                self.ingress.start()
                driver = HoldDriver(self, self.plan, self.ingress.url, settings)
            for w in self.workers:
                w.start()
            started = time.monotonic()
            chaos = threading.Thread(target=self._chaos, name="chaos", daemon=True)
            chaos.start()
            holds = threading.Thread(target=driver.run, name="holds", daemon=True) if driver else None
            if holds is not None:
                holds.start()
            try:
                self._publish(settings, workload)
                self._wait_drained(settings, started)
            finally:
                r.seconds = time.monotonic() - started
                self.stop_chaos.set()
                chaos.join(60)
                if holds is not None:
                    holds.join(60)
                    r.hold_requests, r.hold_retries = driver.requests, driver.retries
                    r.hold_retry_reasons = dict(driver.retry_reasons)
                    r.hold_findings = list(driver.problems)
                    driver.close()
                self._say("drained; stopping workers and the ingress")
                for w in self.workers:  # all at once: each takes a few seconds to finish
                    w.terminate()
                for w in self.workers:
                    w.wait()
                self._say("workers stopped")
                if self.ingress is not None:
                    self.ingress.stop()
            self._say("verifying")
            asyncio.run(self._verify(pg.url, settings, workload))
        return r

    async def _prepare(self, url: str, clerks: list[str]) -> None:
        conn = await db.connect(url)
        try:
            await migrate(conn, with_app_schema=True)
            for clerk in clerks:
                await insert_user_with_balance(conn, clerk, credits=STARTING_CREDITS)
            await conn.execute(
                'INSERT INTO "Plan" (id, name, credits, "updatedAt") VALUES ($1, $2, $3, CURRENT_TIMESTAMP)',
                PLAN_ID, "Chaos plan", PLAN_CREDITS,
            )  # fmt: skip
        finally:
            await conn.close()

    def _publish(self, settings: Settings, workload: Workload) -> None:
        broker = build_broker(settings, worker=False)
        publisher = Publisher(broker, batch_size=self.cfg.batch_size, validate=False)
        try:
            pace = self.cfg.publish_seconds / max(1, len(workload.chunks))
            started = time.monotonic()
            for n, chunk in enumerate(workload.chunks):
                time.sleep(max(0.0, started + n * pace - time.monotonic()))
                while True:
                    try:
                        if n % 4 == 3:  # every fourth chunk as single-event messages
                            publisher.enqueue_pipelined([build_message(queue_for(e), [e]) for e in chunk])
                        else:
                            publisher.publish_many(chunk)
                        break
                    except redis.RedisError:
                        # not accepted: publish again (a partial pipeline is harmless, events are idempotent)
                        self.report.publish_retries += 1
                        time.sleep(0.2)
                self.published = n + 1
        finally:
            self.done_publishing.set()
            broker.close()

    def _chaos(self) -> None:
        cfg, r = self.cfg, self.report
        total = max(1, r.messages)
        redis_done = not cfg.restart_redis
        pg_done = not cfg.restart_postgres
        ingress_done = not (cfg.restart_ingress and self.ingress is not None)
        blackout_done = not cfg.blackout
        if blackout_done:
            self.blackout_over.set()
        rng = random.Random(cfg.seed + 1)
        while not self.stop_chaos.wait(cfg.kill_every_s):
            victim = rng.choice(self.workers)
            victim.kill()
            r.worker_kills += 1
            victim.start()
            progress = self.published / total
            if not ingress_done and progress >= 0.45:
                self._say("kill -9 the ingress")
                assert self.ingress is not None
                self.ingress.kill()
                time.sleep(0.5)
                self.ingress.start()
                r.ingress_restarts += 1
                ingress_done = True
                self._say("ingress back")
            if not blackout_done and pg_done and progress >= 0.75:
                self._blackout()
                blackout_done = True
            if not redis_done and progress >= 0.3:
                self._say("kill -9 Redis")
                self.rd.stop(kill=True)
                time.sleep(1.0)
                self.rd.start()
                r.redis_restarts += 1
                redis_done = True
                self._say("Redis back")
            if not pg_done and progress >= 0.6:
                self._say("crash PostgreSQL (immediate stop)")
                self.pg.stop("immediate")
                time.sleep(1.0)
                self.pg.start()
                r.postgres_restarts += 1
                pg_done = True
                self._say("PostgreSQL back")

    def _blackout(self) -> None:
        """Every worker down (SIGKILL) until the holds placed meanwhile are past their expiry
        (at least 3 s): nothing can release them but the workers' sweep once they are back."""
        r = self.report
        self._say("all workers down (SIGKILL)")
        for w in self.workers:
            w.kill()
        r.worker_kills += len(self.workers)
        r.blackout_down = time.time()
        self.blackout_on.set()
        if not self.expire_placed.wait(60):
            self._say("no expiring holds placed in the blackout (the hold driver is stuck?)")
        until = max(r.blackout_down + 3.0, self.expire_by + 1.5)
        time.sleep(max(0.0, until - time.time()))
        r.blackout_up = time.time()
        for w in self.workers:
            w.start()
        self.blackout_over.set()
        self._say(f"workers back after {r.blackout_up - r.blackout_down:.1f} s")

    def _say(self, what: str) -> None:
        print(f"  … {time.monotonic() - self.started:5.0f}s  {what}", flush=True)

    def _wait_drained(self, settings: Settings, started: float) -> None:
        client = redis.Redis.from_url(settings.require_redis_url())
        keys = [f"{self.namespace}:{q}.msgs" for q in QUEUES] + [f"{self.namespace}:{q}.DQ.msgs" for q in QUEUES]
        last_report = 0.0
        drained_at = 0.0  # when nothing was queued or waiting any more (holds may still be due)
        while True:
            elapsed = time.monotonic() - started
            if elapsed > self.cfg.timeout_s:
                self.report.problems.append(f"not drained within {self.cfg.timeout_s:.0f}s")
                return
            try:
                pending = sum(client.hlen(k) for k in keys)
            except redis.RedisError:
                pending = -1
            if self.done_publishing.is_set() and pending == 0 and self.holds_done.is_set() and self.blackout_over.is_set():
                waiting = self._open_waiting()
                if waiting == 0:
                    due = self._due_holds()
                    drained_at = drained_at or elapsed
                    if due == 0 or elapsed - drained_at > 30:
                        return  # a hold left open past its expiry is the verifier's finding
                    pending = f"0 queued, 0 waiting, {due} holds past their expiry still open,"
                else:
                    pending = f"0 queued, {waiting} waiting or released,"
            if elapsed - last_report >= 5:
                last_report = elapsed
                self._say(f"published {self.published}/{self.report.messages} chunks, "
                          f"{pending if not isinstance(pending, int) or pending >= 0 else 'redis down:'} messages pending, "
                          f"{self.report.worker_kills} worker kills")  # fmt: skip
            time.sleep(0.5)

    def _open_waiting(self) -> int | str:
        """Events waiting or released and not yet decided (the sweep closes decided ones)."""
        return self._count("SELECT count(*) FROM worker.waiting WHERE state IN ('waiting', 'released')")

    def _due_holds(self) -> int | str:
        """Holds open past their expiry (the grant sweep releases them moments after)."""
        return self._count("SELECT count(*) FROM worker.credit_hold WHERE status = 'held' AND expires_at <= now()")

    def _count(self, sql: str) -> int | str:
        async def count() -> int:
            conn = await db.connect(self.pg.url)
            try:
                return await conn.fetchval(sql)
            finally:
                await conn.close()

        try:
            return asyncio.run(count())
        except (OSError, asyncpg.PostgresError) as exc:
            return f"({type(exc).__name__})"

    async def _verify(self, url: str, settings: Settings, workload: Workload) -> None:
        r, want = self.report, workload.expected
        plan: list[HoldCase] = self.plan.all if self.plan else []
        client = redis.Redis.from_url(settings.require_redis_url())
        dead_ids: set[str] = set()
        reasons: Counter[str] = Counter()
        for q in QUEUES:
            for raw in client.hvals(f"{self.namespace}:{q}.XQ.msgs"):
                message = json.loads(raw)
                reasons[message["options"].get("dead_letter_reason", "?")] += 1
                dead_ids.update(e.get("id") for e in message["args"][0] if isinstance(e, dict))
        r.dead_letters, r.dead_letter_reasons = sum(reasons.values()), dict(reasons)

        conn = await db.connect(url)
        try:
            decided = {row["event_id"] for row in await conn.fetch("SELECT event_id FROM worker.event_log")}
            rejected = {row["event_id"] for row in await conn.fetch("SELECT event_id FROM worker.rejection")}
            have = {
                "usage rows": await conn.fetchval('SELECT count(*) FROM "UsageHistory"'),
                "journal movements": await conn.fetchval("SELECT count(*) FROM worker.journal"),
                "users": await conn.fetchval('SELECT count(*) FROM "User"'),
                "inactive users": await conn.fetchval('SELECT count(*) FROM "User" WHERE NOT "isActive"'),
                "subscription events": await conn.fetchval('SELECT count(*) FROM "SubscriptionEvent"'),
                "storage objects": await conn.fetchval('SELECT count(*) FROM "StorageObject"'),
                "deleted objects": await conn.fetchval(
                    'SELECT count(*) FROM "StorageObject" WHERE "deletedAt" IS NOT NULL'),
            }  # fmt: skip
            balances = {row["clerkUserId"]: row["creditsRemaining"]
                        for row in await conn.fetch('SELECT "clerkUserId", "creditsRemaining" FROM "CreditBalance"')}  # fmt: skip
            drift = await find_balance_drift(conn)
            grant_drift = await find_grant_drift(conn)
            holds = await check_chaos_holds(conn, plan, down=r.blackout_down, up=r.blackout_up)
            r.notifications, notice_findings = await check_notifications(conn)
            waited = await conn.fetch("SELECT reason, count(*) AS n FROM worker.waiting GROUP BY reason")
            r.waited_reasons = {row["reason"]: row["n"] for row in waited}
            r.waited = sum(r.waited_reasons.values())
            r.still_waiting = await conn.fetchval(
                "SELECT count(*) FROM worker.waiting WHERE state IN ('waiting', 'released')")
        finally:
            await conn.close()

        expected_counts = {
            "usage rows": want.usage_rows + holds.usage_rows, "journal movements": want.movements + holds.movements,
            "users": want.users,
            "inactive users": want.inactive_users, "subscription events": want.subscription_events,
            "storage objects": want.storage_objects, "deleted objects": want.deleted_objects,
        }  # fmt: skip
        r.counts = {k: (have[k], expected_counts[k]) for k in have}
        r.applied = len(decided)
        r.rejected = len(rejected)
        lost = ((workload.decided_keys | holds.decided) - decided - dead_ids) | (workload.invalid_ids - rejected - dead_ids)
        r.lost = len(lost)
        r.applied_twice = sum(max(0, h - w) for h, w in r.counts.values())
        want_balances = dict(want.balances)
        for clerk, delta in holds.balance_delta.items():  # captured credits charged, the rest given back
            want_balances[clerk] += delta
        wrong = {c: (balances.get(c), b) for c, b in want_balances.items() if balances.get(c) != b}
        r.wrong_balances = len(wrong)
        r.drift = len(drift) + len(grant_drift)
        r.holds = dict(holds.counts)
        r.hold_findings += holds.findings
        if r.lost:
            r.problems.append(f"{r.lost} events lost, e.g. {sorted(lost)[:5]}")
        if r.applied_twice:
            r.problems.append(f"{r.applied_twice} rows more than expected")
        if not dead_ids:  # with dead letters some effects are legitimately missing
            short = {k: v for k, v in r.counts.items() if v[0] != v[1]}
            if short:
                r.problems.append(f"counts differ (have, want): {short}")
            if r.wrong_balances:
                r.problems.append(f"{r.wrong_balances} balances differ from the unique events and holds "
                                  f"(have, want): {dict(list(wrong.items())[:5])}")  # fmt: skip
        if r.drift:
            r.problems.append(f"reconcile found {len(drift)} drifting balances, {len(grant_drift)} grant findings"
                              f"{': ' + str((drift + grant_drift)[0]) if drift or grant_drift else ''}")  # fmt: skip
        if r.hold_findings:
            r.problems.append(f"{len(r.hold_findings)} hold findings")
        r.notification_findings = notice_findings
        if notice_findings:
            r.problems.append(f"{len(notice_findings)} notification findings, e.g. {notice_findings[:3]}")
        if not r.notifications.get("credits.granted"):
            r.problems.append("no credits.granted notification: the run no longer exercises the outbox")
        if self.plan and self.cfg.blackout and not r.holds.get("expired while no worker ran"):
            r.problems.append("no hold expired while no worker ran: the run no longer exercises the sweep")
        if r.still_waiting:
            r.problems.append(f"{r.still_waiting} events still waiting")
        if not r.waited:
            r.problems.append("no event waited: the workload no longer exercises durable waiting")


def run_chaos(cfg: ChaosConfig) -> ChaosReport:
    return ChaosRun(cfg).run()


def add_arguments(parser) -> None:
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--users", type=int, default=500)
    parser.add_argument("--workers", type=int, default=3, help="worker processes (each killed in turn)")
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--kill-every", type=float, default=3.0, help="seconds between worker SIGKILLs")
    parser.add_argument("--publish-seconds", type=float, default=120.0, help="spread publishing over this long")
    parser.add_argument("--timeout", type=float, default=900, help="give up draining after this many seconds")
    parser.add_argument("--holds", type=int, default=2_000, help="credit holds placed over the ingress (0: none)")
    parser.add_argument("--pgbouncer", action="store_true",
                        help="workers and ingress through a PgBouncer in transaction mode (PEDRO_DATABASE_POOLER=transaction)")
    parser.add_argument("--quick", action="store_true",
                        help="3,000 events and 150 holds in under a minute: the short form CI runs")  # fmt: skip


def config_from(args) -> ChaosConfig:
    cfg = ChaosConfig(events=args.events, users=args.users, workers=args.workers, threads=args.threads,
                      kill_every_s=args.kill_every, publish_seconds=args.publish_seconds,
                      timeout_s=args.timeout, holds=args.holds, pgbouncer=args.pgbouncer)  # fmt: skip
    if args.quick:
        cfg.events, cfg.users, cfg.kill_every_s, cfg.publish_seconds, cfg.holds = 3_000, 50, 2.0, 20.0, 150
    return cfg


def run_command(args) -> int:
    """`pedro-worker chaos`: exit 0 when nothing was lost or doubled, 1 otherwise."""
    cfg = config_from(args)
    print(f"chaos: {cfg.events} events, {cfg.holds} holds, {cfg.users} users, "
          f"{cfg.workers} worker processes × {cfg.threads} threads"
          + (", through PgBouncer (transaction mode)" if cfg.pgbouncer else ""))  # fmt: skip
    report = run_chaos(cfg)
    for line in report.lines():
        print("  " + line)
    return 0 if report.ok else 1


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="pedro-worker chaos", description=__doc__.split("\n")[0])
    add_arguments(parser)
    return run_command(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
