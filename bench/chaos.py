"""`pedro-worker chaos`: crash everything while events flow, then prove nothing was lost or doubled.

A bounded run on embedded servers (PostgreSQL with fsync on; Redis with the append-only file
fsynced on every write, the configuration docs/reliability.md requires):

1. seed users; generate a mixed workload (usage, refunds, adjustments, some invalid events,
   some events sent twice, some out of order — refunds before their usage);
2. publish it in chunks (batch messages and single-event messages) while worker processes are
   SIGKILLed every few seconds and restarted, Redis is killed (-9) and restarted once and
   PostgreSQL is crashed (immediate stop) and restarted once;
3. wait until every queue is drained and nothing waits in `worker.waiting` (events that came
   before their user or their usage wait there and are released by it), then check: every
   accepted event is applied or stored as rejected (or dead-lettered with a reason), no event is
   applied twice (every balance equals the balance computed from the unique events, row counts
   match), and reconcile is clean.

The workload runs under the `allow` overdraft policy, so the expected balances do not depend on
the order in which the crashes let events through.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import redis
from pydantic import SecretStr

from bench.chaos_workload import PLAN_CREDITS, PLAN_ID, STARTING_CREDITS, Workload, make_workload
from worker import db
from worker.broker import QUEUES, build_broker
from worker.embedded import EmbeddedPostgres, EmbeddedRedis
from worker.migrate import migrate
from worker.publisher import Publisher, build_message, queue_for
from worker.repo.reconcile import find_balance_drift
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
    seed: int = 7
    timeout_s: float = 900
    log_dir: Path = field(default_factory=lambda: Path("test-artifacts/chaos"))


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

    def stop(self) -> None:
        """Graceful: SIGTERM to dramatiq's main process only (it forwards it to its workers;
        a second SIGTERM would tell them to exit at once)."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
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
    applied: int = 0
    rejected: int = 0
    dead_letters: int = 0
    dead_letter_reasons: dict[str, int] = field(default_factory=dict)
    waited: int = 0  # events that waited in worker.waiting at some point
    waited_reasons: dict[str, int] = field(default_factory=dict)
    still_waiting: int = 0
    lost: int = 0
    applied_twice: int = 0
    wrong_balances: int = 0
    drift: int = 0
    counts: dict[str, tuple[int, int]] = field(default_factory=dict)  # what -> (found, expected)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def lines(self) -> list[str]:
        return [
            f"events published      {self.events:>9}  ({self.unique_valid} valid unique, {self.invalid} invalid, "
            f"{self.duplicates_sent} sent twice) in {self.messages} publish calls, all families",
            f"chaos                 {self.worker_kills} worker SIGKILLs, {self.redis_restarts} Redis kill -9 + restart, "
            f"{self.postgres_restarts} PostgreSQL crash + restart, {self.publish_retries} publish retries",
            f"drained in            {self.seconds:>9.1f} s",
            f"decided events        {self.applied:>9}  (worker.event_log: applied or refused, once each)",
            *(f"{what:<22}{have:>9}  (expected {want})" for what, (have, want) in self.counts.items()),
            f"rejected (stored)     {self.rejected:>9}",
            f"dead-lettered         {self.dead_letters:>9}  {self.dead_letter_reasons or ''}",
            f"waited, released      {self.waited:>9}  {self.waited_reasons or ''} (worker.waiting)",
            f"still waiting         {self.still_waiting:>9}",
            f"lost                  {self.lost:>9}",
            f"applied twice         {self.applied_twice:>9}",
            f"wrong balances        {self.wrong_balances:>9}",
            f"reconcile drift       {self.drift:>9}",
            "RESULT                " + ("PASS" if self.ok else "FAIL: " + "; ".join(self.problems)),
        ]


class ChaosRun:
    def __init__(self, cfg: ChaosConfig) -> None:
        self.cfg = cfg
        self.report = ChaosReport()
        self.namespace = f"pedro-chaos-{uuid.uuid4().hex[:8]}"
        self.published = 0
        self.done_publishing = threading.Event()
        self.stop_chaos = threading.Event()

    # --- phases ----------------------------------------------------------------------------------

    def run(self) -> ChaosReport:
        cfg = self.cfg
        cfg.log_dir.mkdir(parents=True, exist_ok=True)
        workload = make_workload(events=cfg.events, users=cfg.users, chunk=cfg.chunk, seed=cfg.seed)
        r = self.report
        r.events = workload.events + workload.duplicates_sent
        r.unique_valid, r.invalid = len(workload.decided_keys), len(workload.invalid_ids)
        r.duplicates_sent, r.messages = workload.duplicates_sent, len(workload.chunks)

        with EmbeddedPostgres() as pg, EmbeddedRedis(appendfsync="always") as rd:
            self.pg, self.rd = pg, rd
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
            env = {**os.environ, "DATABASE_URL": pg.url, "REDIS_URL": rd.url,
                   "PEDRO_REDIS_NAMESPACE": self.namespace, "PEDRO_OVERDRAFT_POLICY": "allow",
                   "PEDRO_MIN_BACKOFF_MS": "200", "PEDRO_MAX_BACKOFF_MS": "2000", "PEDRO_MAX_RETRIES": str(retries),
                   "PEDRO_HEARTBEAT_TIMEOUT_MS": "4000", "PEDRO_MAINTENANCE_CHANCE": "200000",
                   "PEDRO_WAITING_SWEEP_MS": "500", "PEDRO_WAITING_RESEND_MS": "30000",
                   "PEDRO_LOG_LEVEL": "WARNING"}  # fmt: skip
            self.workers = [WorkerProcess(env, cfg.threads, cfg.log_dir / f"worker-{n}.log") for n in range(cfg.workers)]
            self.started = time.monotonic()
            for w in self.workers:
                w.start()
            started = time.monotonic()
            chaos = threading.Thread(target=self._chaos, name="chaos", daemon=True)
            chaos.start()
            try:
                self._publish(settings, workload)
                self._wait_drained(settings, started)
            finally:
                r.seconds = time.monotonic() - started
                self.stop_chaos.set()
                chaos.join(60)
                self._say("drained; stopping workers")
                for w in self.workers:
                    w.stop()
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
        rng = random.Random(cfg.seed + 1)
        while not self.stop_chaos.wait(cfg.kill_every_s):
            victim = rng.choice(self.workers)
            victim.kill()
            r.worker_kills += 1
            victim.start()
            progress = self.published / total
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

    def _say(self, what: str) -> None:
        print(f"  … {time.monotonic() - self.started:5.0f}s  {what}", flush=True)

    def _wait_drained(self, settings: Settings, started: float) -> None:
        client = redis.Redis.from_url(settings.require_redis_url())
        keys = [f"{self.namespace}:{q}.msgs" for q in QUEUES] + [f"{self.namespace}:{q}.DQ.msgs" for q in QUEUES]
        last_report = 0.0
        while True:
            elapsed = time.monotonic() - started
            if elapsed > self.cfg.timeout_s:
                self.report.problems.append(f"not drained within {self.cfg.timeout_s:.0f}s")
                return
            try:
                pending = sum(client.hlen(k) for k in keys)
            except redis.RedisError:
                pending = -1
            if self.done_publishing.is_set() and pending == 0:
                waiting = self._open_waiting()
                if waiting == 0:
                    return
                pending = f"0 queued, {waiting} waiting or released,"
            if elapsed - last_report >= 5:
                last_report = elapsed
                self._say(f"published {self.published}/{self.report.messages} chunks, "
                          f"{pending if not isinstance(pending, int) or pending >= 0 else 'redis down:'} messages pending, "
                          f"{self.report.worker_kills} worker kills")  # fmt: skip
            time.sleep(0.5)

    def _open_waiting(self) -> int | str:
        """Events waiting or released and not yet decided (the sweep closes decided ones)."""

        async def count() -> int:
            conn = await db.connect(self.pg.url)
            try:
                return await conn.fetchval("SELECT count(*) FROM worker.waiting WHERE state IN ('waiting', 'released')")
            finally:
                await conn.close()

        try:
            return asyncio.run(count())
        except (OSError, asyncpg.PostgresError) as exc:
            return f"({type(exc).__name__})"

    async def _verify(self, url: str, settings: Settings, workload: Workload) -> None:
        r, want = self.report, workload.expected
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
            waited = await conn.fetch("SELECT reason, count(*) AS n FROM worker.waiting GROUP BY reason")
            r.waited_reasons = {row["reason"]: row["n"] for row in waited}
            r.waited = sum(r.waited_reasons.values())
            r.still_waiting = await conn.fetchval(
                "SELECT count(*) FROM worker.waiting WHERE state IN ('waiting', 'released')")
        finally:
            await conn.close()

        expected_counts = {
            "usage rows": want.usage_rows, "journal movements": want.movements, "users": want.users,
            "inactive users": want.inactive_users, "subscription events": want.subscription_events,
            "storage objects": want.storage_objects, "deleted objects": want.deleted_objects,
        }  # fmt: skip
        r.counts = {k: (have[k], expected_counts[k]) for k in have}
        r.applied = len(decided)
        r.rejected = len(rejected)
        lost = (workload.decided_keys - decided - dead_ids) | (workload.invalid_ids - rejected - dead_ids)
        r.lost = len(lost)
        r.applied_twice = sum(max(0, h - w) for h, w in r.counts.values())
        r.wrong_balances = sum(1 for clerk, b in want.balances.items() if balances.get(clerk) != b)
        r.drift = len(drift)
        if r.lost:
            r.problems.append(f"{r.lost} events lost, e.g. {sorted(lost)[:5]}")
        if r.applied_twice:
            r.problems.append(f"{r.applied_twice} rows more than expected")
        if not dead_ids:  # with dead letters some effects are legitimately missing
            short = {k: v for k, v in r.counts.items() if v[0] != v[1]}
            if short:
                r.problems.append(f"counts differ (have, want): {short}")
            if r.wrong_balances:
                r.problems.append(f"{r.wrong_balances} balances differ from the unique events")
        if r.drift:
            r.problems.append(f"reconcile found {r.drift} drifting balances")
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
    parser.add_argument("--quick", action="store_true", help="3,000 events in about 30 s: the short form CI runs")


def config_from(args) -> ChaosConfig:
    cfg = ChaosConfig(events=args.events, users=args.users, workers=args.workers, threads=args.threads,
                      kill_every_s=args.kill_every, publish_seconds=args.publish_seconds,
                      timeout_s=args.timeout)  # fmt: skip
    if args.quick:
        cfg.events, cfg.users, cfg.kill_every_s, cfg.publish_seconds = 3_000, 50, 2.0, 20.0
    return cfg


def run_command(args) -> int:
    """`pedro-worker chaos`: exit 0 when nothing was lost or doubled, 1 otherwise."""
    cfg = config_from(args)
    print(f"chaos: {cfg.events} events, {cfg.users} users, {cfg.workers} worker processes × {cfg.threads} threads")
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
