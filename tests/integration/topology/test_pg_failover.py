"""PostgreSQL failover under load (issue 22, point 3): the primary is SIGKILLed mid-stream and its
synchronous streaming standby promoted; the same worker processes, on a multi-host DATABASE_URL
with `target_session_attrs=read-write`, reconnect by themselves, and every event is applied
exactly once: nothing lost, nothing doubled, `reconcile` clean.

Why it holds: a usage message is acknowledged only after its transaction committed, and with a
synchronous standby (`synchronous_commit = on`) a commit returns only once the standby has
flushed it. A transaction cut off by the kill was never acknowledged: its message is retried
with backoff (errors.DATABASE_OUTAGES, the outage retry budget) and, on the promoted server,
applied if the standby did not have it, a duplicate if it did. docs/topologies.md has the
asynchronous case and the figures this test prints.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

import asyncpg
import psutil
import redis
from pydantic import SecretStr

from tests.integration.family_helpers import user_created
from tests.integration.helpers import make_user, usage
from tests.integration.test_cli import pedro
from tests.integration.topology.pg_replica import replicated_postgres
from worker import db
from worker.broker import build_broker, retry_policy
from worker.migrate import migrate
from worker.notify.dispatch import DispatcherThread
from worker.ops.reconcile import reconcile
from worker.publisher import Publisher
from worker.settings import SQL_DIR, Settings

DATABASE = "pedro_failover"
ROLE = "pedro_worker"  # sql/roles/least_privilege.sql: the worker runs as it, as everywhere
USERS = [f"fo_{n}" for n in range(12)]
LATE = "fo_late"  # its usage waits in worker.waiting until its user.created, sent after the failover
START = 1_000_000
EVENTS = 2_000
TWICE_EVERY = 7  # every 7th event is published a second time, a few events later
KILL_AT = 0.4  # of the stream
DETECT_S = 1.0  # kill -> promote: a failover manager noticing the dead primary (Patroni: its ttl)
PACE_S = 0.003  # between publishes: ~6 s of stream, so that the failover lands in its middle


def _events() -> tuple[list[dict], list[dict]]:
    """(what is published, in order; the distinct events). Duplicates are the same dict again."""
    unique = [usage(USERS[n % len(USERS)], id=f"fo-{n}", credits=1 + n % 5) for n in range(EVENTS)]
    stream: list[dict] = []
    for n, event in enumerate(unique):
        stream.append(event)
        if n % TWICE_EVERY == 3:
            stream.append(unique[max(0, n - 5)])
    return stream, unique


async def _schema(url: str) -> None:
    """The app's tables, the worker's migrations and its role, on the primary (the standby
    receives them by streaming), and the users."""
    admin = await asyncpg.connect(url)
    await admin.execute(f'CREATE DATABASE "{DATABASE}"')
    await admin.close()
    conn = await db.connect(url.replace("/postgres?", f"/{DATABASE}?"))
    try:
        await migrate(conn, with_app_schema=True)
        await conn.execute((SQL_DIR / "roles" / "least_privilege.sql").read_text())
        await conn.execute(f'GRANT CONNECT ON DATABASE "{DATABASE}" TO {ROLE}')
        for clerk in USERS:
            await make_user(conn, clerk, credits=START)
    finally:
        await conn.close()


def _start_worker(env: dict[str, str], log: Path) -> subprocess.Popen:
    """`pedro-worker worker`: dramatiq's main process and one worker process (4 threads)."""
    with open(log, "ab") as out:
        return subprocess.Popen([sys.executable, "-m", "worker.cli", "worker", "--processes", "1", "--threads", "4"],
                                env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip


def _booted(procs: list[subprocess.Popen], logs: list[Path], timeout_s: float = 60) -> list[int]:
    """The worker processes' PIDs, once each has its pool."""
    deadline = time.monotonic() + timeout_s
    while not all("worker_pool_ready" in log.read_text(errors="replace") for log in logs):
        assert all(p.poll() is None for p in procs), "a worker exited while booting"
        assert time.monotonic() < deadline, "the workers did not boot"
        time.sleep(0.1)
    return sorted(c.pid for p in procs for c in psutil.Process(p.pid).children(recursive=True))


def _stop(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()


def _drained(client: redis.Redis, namespace: str) -> bool:
    """Nothing queued, delayed or held unacknowledged on any queue."""
    return all(client.hlen(f"{namespace}:{q}.msgs") == 0 and client.hlen(f"{namespace}:{q}.DQ.msgs") == 0
               for q in ("usage", "users"))  # fmt: skip


async def test_a_primary_killed_and_its_synchronous_standby_promoted_mid_stream_lose_and_double_nothing(
    redis_url, tmp_path
):
    stream, unique = _events()
    late = [usage(LATE, id=f"fo-late-{n}", credits=1) for n in range(5)]
    namespace = f"pedro-failover-{uuid.uuid4().hex[:8]}"
    with replicated_postgres(synchronous=True) as pair:
        await pair.wait_streaming(synchronous=True)
        await _schema(pair.url())
        worker_url = pair.url(ROLE, DATABASE)
        owner_url = pair.url("postgres", DATABASE)
        env = {**os.environ, "DATABASE_URL": worker_url, "REDIS_URL": redis_url, "PEDRO_REDIS_NAMESPACE": namespace,
               "PEDRO_MIN_BACKOFF_MS": "100", "PEDRO_MAX_BACKOFF_MS": "1000", "PEDRO_LOG_FORMAT": "json",
               "PEDRO_WAITING_SWEEP_MS": "200", "PEDRO_GRANT_SWEEP_MS": "500"}  # fmt: skip
        logs = [tmp_path / f"worker{n}.log" for n in range(2)]
        procs = [_start_worker(env, log) for log in logs]
        settings = Settings(database_url=SecretStr(worker_url), redis_url=SecretStr(redis_url),
                            redis_namespace=namespace, notify_poll_ms=200)  # fmt: skip
        broker = build_broker(settings, worker=False)
        # the notification dispatcher (`pedro-worker notify`), in this process: its LISTEN connection
        notify = DispatcherThread(settings)
        try:
            notify.__enter__()
            pids = _booted(procs, logs)
            publisher = Publisher(broker, batch_size=1)
            publisher.publish_many(late)  # they wait for their user
            published = threading.Event()
            half_way = threading.Event()

            def publish() -> None:
                for n, event in enumerate(stream):
                    publisher.publish(event)
                    if n == int(len(stream) * KILL_AT):
                        half_way.set()
                    time.sleep(PACE_S)
                published.set()

            thread = threading.Thread(target=publish, daemon=True)
            thread.start()
            assert half_way.wait(60)
            t_kill = time.monotonic()
            # SIGKILL the primary (all of it), promote the standby DETECT_S later
            killed_at, _ = pair.fail_over(after_s=DETECT_S)
            publisher.publish(user_created(LATE, id="fo-late-user"))  # released on the new primary
            assert published.wait(120), "the publisher did not finish"
            thread.join()
            client = redis.Redis.from_url(redis_url)
            deadline = time.monotonic() + 60
            while not _drained(client, namespace):
                assert time.monotonic() < deadline, "the queues did not drain"
                time.sleep(0.2)
            drained_s = time.monotonic() - t_kill

            # the same processes, still running: they reconnected by themselves
            assert all(p.poll() is None for p in procs)
            assert sorted(c.pid for p in procs for c in psutil.Process(p.pid).children(recursive=True)) == pids
            for log in logs:
                assert log.read_text(errors="replace").count("worker_pool_ready") == 1
            for q in ("usage", "users"):
                assert client.zcard(f"{namespace}:{q}.XQ") == 0, f"dead letters on {q}"
            # the dispatcher lost its LISTEN connection with the primary and LISTENs on the new one
            assert notify._thread.is_alive()
            listener = notify.dispatcher._listener
            assert listener is not None and not listener.is_closed() and listener._addr[1] == pair.standby.port

            conn = await db.connect(owner_url)
            try:
                assert not await conn.fetchval("SELECT pg_is_in_recovery()")  # the promoted standby
                ids = {r["event_id"] for r in await conn.fetch("SELECT event_id FROM worker.event_log")}
                want = {e["id"] for e in unique + late} | {"fo-late-user"}
                assert want - ids == set(), f"lost: {sorted(want - ids)[:10]}"
                assert ids == want
                assert await conn.fetchval('SELECT count(*) FROM "UsageHistory"') == len(unique) + len(late)
                assert await conn.fetchval("SELECT count(*) FROM worker.journal WHERE kind = 'usage'") == len(ids) - 1
                for clerk in USERS:
                    spent = sum(e["credits"] for e in unique if e["clerkUserId"] == clerk)
                    assert await conn.fetchval('SELECT "creditsRemaining" FROM "CreditBalance" WHERE "clerkUserId" = $1',
                                               clerk) == START - spent  # fmt: skip
                # commit times (track_commit_timestamp): the old primary's last, the new one's first
                last_before, first_after = await conn.fetchrow(
                    'SELECT max(t) FILTER (WHERE t <= $1), min(t) FILTER (WHERE t > $1) '
                    'FROM (SELECT pg_xact_commit_timestamp(xmin) AS t FROM "UsageHistory") c', killed_at)  # fmt: skip
            finally:
                await conn.close()
            result = pedro("reconcile", "--json", database_url=owner_url, redis_url=redis_url,
                           PEDRO_REDIS_NAMESPACE=namespace)  # fmt: skip
            assert result.returncode == 0, result.stdout + result.stderr

            writable = pair.writable_since()
            text = "".join(log.read_text(errors="replace") for log in logs)
            errors = re.findall(r'"error": "(\w+)"', text)  # usage_batch_outage, *_sweep_failed
            # the failover landed mid-stream: commits on both servers, and the workers met it
            assert last_before is not None and first_after is not None and errors
            print(f"\nfailover: {len(stream)} messages ({len(unique)} distinct usages, {len(stream) - len(unique)} "
                  f"twice); primary SIGKILLed at {KILL_AT:.0%} of the stream, promoted {DETECT_S:g} s later "
                  f"(writable {(writable - killed_at).total_seconds():.2f} s after the kill); old primary's last "
                  f"commit {(killed_at - last_before).total_seconds() * 1000:.0f} ms before its death; new primary's "
                  f"first {(first_after - killed_at).total_seconds():.2f} s after it, "
                  f"{(first_after - writable).total_seconds() * 1000:.0f} ms after it was writable; queues drained "
                  f"{drained_s:.1f} s after the kill; errors the worker met: {dict(Counter(errors))}")
        finally:
            _stop(procs)
            notify.__exit__(None, None, None)
            broker.close()


async def _wait_applied(conn: asyncpg.Connection, client: redis.Redis, namespace: str, n: int) -> None:
    """Until `n` usages are applied on `conn`'s server and every message is acknowledged."""
    deadline = time.monotonic() + 60
    while await conn.fetchval('SELECT count(*) FROM "UsageHistory"') < n or not _drained(client, namespace):
        assert time.monotonic() < deadline, "the worker did not catch up"
        time.sleep(0.1)


async def test_an_asynchronous_standby_promoted_after_lagging_loses_what_it_had_not_received_and_replay_restores_it(
    redis_url, tmp_path
):
    """The asynchronous case, made deterministic: the standby is down (the extreme of lag) while
    100 usages are applied and acknowledged on the primary; the primary dies and the standby is
    promoted. Those 100 are gone whole — no key, row, movement or balance change, so `reconcile`
    is clean and nothing redelivers them (their messages were acknowledged) — and everything else
    is there once. `pedro-worker replay` of the app's record of those events applies exactly them."""
    phases = [[usage(USERS[n % len(USERS)], id=f"as-{p}-{n}", credits=1 + n % 3) for n in range(100)] for p in range(3)]
    namespace = f"pedro-failover-{uuid.uuid4().hex[:8]}"
    with replicated_postgres(synchronous=False) as pair:
        await pair.wait_streaming(synchronous=False)
        await _schema(pair.url())
        owner_url = pair.url("postgres", DATABASE)
        env = {**os.environ, "DATABASE_URL": pair.url(ROLE, DATABASE), "REDIS_URL": redis_url,
               "PEDRO_REDIS_NAMESPACE": namespace, "PEDRO_MIN_BACKOFF_MS": "100", "PEDRO_MAX_BACKOFF_MS": "1000",
               "PEDRO_LOG_FORMAT": "json"}  # fmt: skip
        procs = [_start_worker(env, tmp_path / "worker.log")]
        broker = build_broker(Settings(redis_url=SecretStr(redis_url), redis_namespace=namespace), worker=False)
        client = redis.Redis.from_url(redis_url)
        try:
            pids = _booted(procs, [tmp_path / "worker.log"])
            publisher = Publisher(broker, batch_size=1)
            conn = await db.connect(owner_url)
            publisher.publish_many(phases[0])
            await _wait_applied(conn, client, namespace, 100)
            pair.standby.stop()  # streaming stops; asynchronous commits go on without it
            publisher.publish_many(phases[1])
            await _wait_applied(conn, client, namespace, 200)  # applied, committed, acknowledged
            await conn.close()
            pair.primary.kill()
            pair.standby.start()  # still a standby: its primary is gone
            pair.standby.promote()
            publisher.publish_many(phases[2])
            conn = await db.connect(owner_url)
            await _wait_applied(conn, client, namespace, 200)
            ids = {r["event_id"] for r in await conn.fetch("SELECT event_id FROM worker.event_log")}
            assert ids == {e["id"] for e in phases[0] + phases[2]}  # phases[1]: lost, and only they
            assert all(client.zcard(f"{namespace}:{q}.XQ") == 0 for q in ("usage", "users"))
            assert (await reconcile(conn)).drift == []  # consistent, just without them

            export = tmp_path / "published.jsonl"  # what the app published (its outbox, its logs)
            export.write_text("".join(json.dumps(e) + "\n" for phase in phases for e in phase))
            result = pedro("replay", str(export), database_url=owner_url, redis_url=redis_url,
                           PEDRO_REDIS_NAMESPACE=namespace)  # fmt: skip
            assert result.returncode == 0, result.stdout + result.stderr
            await _wait_applied(conn, client, namespace, 300)
            assert await conn.fetchval("SELECT count(*) FROM worker.event_log") == 300
            for clerk in USERS:
                spent = sum(e["credits"] for phase in phases for e in phase if e["clerkUserId"] == clerk)
                assert await conn.fetchval('SELECT "creditsRemaining" FROM "CreditBalance" WHERE "clerkUserId" = $1',
                                           clerk) == START - spent  # fmt: skip
            await conn.close()
            assert sorted(c.pid for p in procs for c in psutil.Process(p.pid).children(recursive=True)) == pids
            print(f"\nasynchronous standby: 100 usages acknowledged while it lagged, lost at the failover; "
                  f"replay: {result.stdout.strip().splitlines()[-1] if result.stdout.strip() else ''}")
        finally:
            _stop(procs)
            broker.close()


def test_what_a_failover_raises_is_retried_on_the_outage_budget_not_dead_lettered():
    """Each error the failover produces (asyncpg's own classes, as the driver raises them) gets
    PEDRO_INFRA_MAX_RETRIES, not PEDRO_MAX_RETRIES; an error in the data does not."""
    settings = Settings(max_retries=2, infra_max_retries=60)
    retry_when = retry_policy(settings)
    failover = [
        asyncpg.ConnectionDoesNotExistError("connection was closed in the middle of operation"),
        asyncpg.InterfaceError("connection is closed"),
        ConnectionRefusedError(111, "Connect call failed"),
        asyncpg.TargetServerAttributeNotMatched("None of the hosts match the target attribute requirement"),
        asyncpg.ReadOnlySQLTransactionError("cannot execute INSERT in a read-only transaction"),
        asyncpg.AdminShutdownError("terminating connection due to administrator command"),
        asyncpg.CannotConnectNowError("the database system is not yet accepting connections"),
    ]
    for exc in failover:
        assert retry_when(30, exc), type(exc).__name__
        assert not retry_when(60, exc)
    assert not retry_when(2, asyncpg.CheckViolationError("a bad row"))
