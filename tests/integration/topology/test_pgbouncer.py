"""The worker behind PgBouncer in transaction mode (Debian's pgbouncer 1.18, no protocol-level
prepared statements): PEDRO_DATABASE_POOLER=transaction (worker/db.py, docs/topologies.md).

PgBouncer here lends each client one of two server connections per database and user for one
transaction at a time, so a statement that left anything on its server connection (a named
prepared statement, a session setting) would be seen, or missed, by another client.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time

import asyncpg
import httpx
import pytest
from pydantic import SecretStr

from bench.pgbouncer import PgBouncer
from tests.integration.helpers import balance, count, held_balance, make_user, refund, usage, waiting_rows
from tests.integration.test_cli import pedro
from tests.integration.topology import pgbouncer as fixtures
from worker import db
from worker.broker import build_broker
from worker.errors import ConfigError
from worker.ingress.server import IngressServer
from worker.publisher import Publisher
from worker.repo.reconcile import find_balance_drift
from worker.runner import InProcessWorker
from worker.settings import ROOT

pgbouncer, pooled_url, pooled_settings = fixtures.pgbouncer, fixtures.pooled_url, fixtures.pooled_settings
CLIENTS = 12  # pool connections, against PgBouncer's two server connections


async def test_statements_outside_a_transaction_are_safe_with_many_clients_on_two_server_connections(
    pooled_settings, pooled_url
):
    """asyncpg's unnamed statement is parsed and bound in one exchange (no Sync between): every
    client gets its own answer and its own TimeZone (the worker's UTC, another client's Tokyo),
    and a transaction gets the session's settings. asyncpg's default named statements, the
    control, break at once behind the same PgBouncer."""
    pool = await db.create_pool(pooled_settings.model_copy(update={"pool_max_size": CLIENTS, "pool_min_size": CLIENTS}))
    wrong: list[tuple[int, int]] = []

    async def client(n: int) -> None:
        async with pool.acquire() as conn:
            for i in range(150):
                got = await conn.fetchrow("SELECT $1::int * 1000 + $2::int AS v, current_setting('TimeZone') AS tz", n, i)
                if (got["v"], got["tz"]) != (n * 1000 + i, "UTC"):
                    wrong.append((n, i))

    async def elsewhere() -> None:  # another client's TimeZone on the same server connections
        conn = await db.connect(pooled_url, pooler=True)
        await conn.execute("SET TimeZone = 'Asia/Tokyo'")  # PgBouncer tracks it per client, as at connect
        try:
            for i in range(150):
                if await conn.fetchval("SELECT current_setting('TimeZone') || $1::text", str(i)) != f"Asia/Tokyo{i}":
                    wrong.append((-1, i))
        finally:
            await conn.close()

    try:
        await asyncio.gather(elsewhere(), *(client(n) for n in range(CLIENTS)))
        async with pool.acquire() as conn:
            outside = await conn.fetchval("SHOW statement_timeout")
            async with conn.transaction():  # the session's settings, SET LOCAL with the BEGIN
                inside = [await conn.fetchval(f"SHOW {name}") for name in ("statement_timeout", "enable_seqscan")]
    finally:
        await pool.close()
    assert wrong == []
    assert inside == ["30s", "off"] and outside == "0"  # outside a transaction: the role's (none here)

    async def named(n: int) -> int:
        conn = await asyncpg.connect(pooled_url)  # statement cache on: named prepared statements
        try:
            failures = 0
            for i in range(50):
                try:
                    await conn.fetchval("SELECT $1::int", i)
                except asyncpg.PostgresError:
                    failures += 1
            return failures
        finally:
            await conn.close()

    assert sum(await asyncio.gather(*(named(n) for n in range(4)))) > 0


async def test_without_pooler_mode_the_worker_refuses_to_boot_and_says_what_to_set(pooled_settings, pooled_url):
    """PgBouncer refuses the worker's startup parameters (plan_cache_mode, …): the pool's error
    names the setting, and a worker process exits non-zero with it in its log."""
    plain = pooled_settings.model_copy(update={"database_pooler": "none"})
    with pytest.raises(ConfigError, match=r"PEDRO_DATABASE_POOLER=transaction") as refused:
        await db.create_pool(plain)
    assert "unsupported startup parameter" in str(refused.value) and refused.value.reason == "pooler_not_configured"

    env = {**os.environ, "DATABASE_URL": pooled_url, "REDIS_URL": plain.require_redis_url(),
           "PEDRO_REDIS_NAMESPACE": plain.redis_namespace, "PEDRO_DATABASE_POOLER": "none"}  # fmt: skip
    worker = subprocess.run([sys.executable, "-m", "dramatiq", "worker.app", "--processes", "1", "--threads", "1"],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)  # fmt: skip
    assert worker.returncode != 0
    assert "pooler_not_configured" in worker.stderr + worker.stdout
    assert "PEDRO_DATABASE_POOLER=transaction" in worker.stderr + worker.stdout


async def test_migrations_and_listen_use_the_direct_url(pooled_settings, pg_url):
    direct = await db.direct_connection(pooled_settings)
    try:
        port = await direct.fetchval("SELECT inet_server_port()")
        assert db.PoolerConnection not in type(direct).__mro__  # asyncpg's isinstance says yes to any Connection
    finally:
        await direct.close()
    assert str(port) in pg_url  # PostgreSQL itself, not PgBouncer
    assert db.listen_url(pooled_settings) == pooled_settings.direct_database_url.get_secret_value()
    assert db.listen_url(pooled_settings.model_copy(update={"direct_database_url": None})) is None  # polls


def test_cli_commands_work_behind_pgbouncer_and_migrate_takes_the_direct_url(pooled_settings, pooled_url,
                                                                             admin_database_url):
    """CLI commands connect through the pooler in pooler mode (PEDRO_DATABASE_POOLER from the
    environment: no named statements); `migrate` takes PEDRO_DIRECT_DATABASE_URL."""
    env = {"PEDRO_DATABASE_POOLER": "transaction", "PEDRO_REDIS_NAMESPACE": pooled_settings.redis_namespace}
    redis_url = pooled_settings.require_redis_url()
    for args in (("check",), ("reconcile",), ("check",)):  # twice: a server connection used before
        done = pedro(*args, database_url=pooled_url, redis_url=redis_url, **env)
        assert done.returncode == 0, done.stdout + done.stderr
    # DATABASE_URL leads nowhere: only the direct URL (the owner's, as migrations need) can have worked
    migrated = pedro("migrate", database_url="postgresql://nobody@127.0.0.1:9/none", redis_url=redis_url,
                     PEDRO_DIRECT_DATABASE_URL=admin_database_url, **env)  # fmt: skip
    assert "migrations applied: none" in migrated.stdout, migrated.stdout + migrated.stderr


async def test_usage_through_pgbouncer_is_applied_once_and_duplicates_change_nothing(conn, pooled_settings):
    await make_user(conn, "pb_a", credits=1_000)
    await make_user(conn, "pb_b", credits=1_000)
    broker = build_broker(pooled_settings)
    try:
        publisher = Publisher(broker)
        once = usage("pb_a", id="pb-once", credits=7)
        for _ in range(5):
            publisher.publish(once)
        publisher.publish_many([once] * 3)
        publisher.publish(refund("pb_b", of="pb-late", id="pb-early-refund"))  # waits for its usage
        many = [usage("pb_b" if n % 2 else "pb_a", id=f"pb-{n}", credits=1) for n in range(300)]
        publisher.publish_many(many)
        Publisher(broker, batch_size=1).publish_many(many[:100])  # duplicates again, one per message
        with InProcessWorker(broker, threads=8) as worker:
            worker.drain()
            publisher.publish(usage("pb_b", id="pb-late", credits=20))
            deadline = time.monotonic() + 20
            while await waiting_rows(conn) and time.monotonic() < deadline:
                worker.drain()
                await asyncio.sleep(0.2)
            worker.drain()
    finally:
        broker.close()

    assert await balance(conn, "pb_a") == 1_000 - 7 - 150
    assert await balance(conn, "pb_b") == 1_000 - 150  # the late usage and its refund cancel out
    assert await count(conn, '"UsageHistory"') == 1 + 300 + 2
    assert await count(conn, "worker.event_log") == 1 + 300 + 2
    assert await waiting_rows(conn) == []
    assert await find_balance_drift(conn) == []


async def test_the_credit_api_through_pgbouncer_places_holds_and_answers_balance_busy(
    conn, pooled_settings, database_url
):
    """POST /v1/holds behind PgBouncer; a balance held elsewhere answers 503 balance_busy within
    lock_wait_ms: lock_timeout is SET LOCAL with each transaction's BEGIN."""
    await make_user(conn, "pb_h", credits=100)
    token = "pgbouncer-test-token"
    ingress_settings = pooled_settings.model_copy(update={"api_tokens": [SecretStr(token)], "lock_wait_ms": 300})
    hold = {"id": "pb_h1", "clerkUserId": "pb_h", "operationType": "AI_TEXT_CHAT", "credits": 30}
    with IngressServer(ingress_settings) as server, \
            httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {token}"}, timeout=10) as http:  # fmt: skip
        placed = http.post("/v1/holds", json=hold)
        assert placed.status_code == 201 and placed.json()["balance"]["available"] == 70
        assert http.post("/v1/holds", json=hold).headers["idempotent-replayed"] == "true"
        captured = http.post("/v1/holds/pb_h1/capture", json={"credits": 20})
        assert (captured.status_code, captured.json()["hold"]["captured"]) == (200, 20)
        assert http.get("/v1/users/pb_h/balance").json()["remaining"] == 80
        async with held_balance(database_url, "pb_h"):  # another session, straight to PostgreSQL
            started = time.monotonic()
            busy = http.post("/v1/holds", json={**hold, "id": "pb_h2"})
            waited = time.monotonic() - started
        assert (busy.status_code, busy.json()["error"]) == (503, "balance_busy")
        assert waited < 5  # lock_wait_ms (0.3 s) applied, not statement_timeout (30 s)
        assert http.post("/v1/holds", json={**hold, "id": "pb_h2"}).status_code == 201
    assert await balance(conn, "pb_h") == 50


def _fleet(env: dict[str, str], log) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "dramatiq", "worker.app", "--processes", "2", "--threads", "4"],
                            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip


async def test_worker_processes_killed_while_events_flow_through_pgbouncer_lose_and_double_nothing(
    conn, pooled_settings, pg_url, database_url, tmp_path
):
    """Real worker processes (dramatiq's CLI, 2 processes) behind their own PgBouncer,
    SIGKILLed three times while single-event messages and duplicates flow; a last fleet drains
    what the killed ones held (their heartbeat gone stale). Every event applied exactly once."""
    events = 4_000
    await make_user(conn, "pb_k", credits=1_000_000)
    with PgBouncer(pg_url, users=("pedro_worker",), pool_size=2) as bouncer:
        ns = pooled_settings.redis_namespace
        env = {**os.environ, "DATABASE_URL": bouncer.url_for(database_url), "PEDRO_DATABASE_POOLER": "transaction",
               "PEDRO_DIRECT_DATABASE_URL": database_url, "REDIS_URL": pooled_settings.require_redis_url(),
               "PEDRO_REDIS_NAMESPACE": ns, "PEDRO_HEARTBEAT_TIMEOUT_MS": "1000",
               "PEDRO_MAINTENANCE_CHANCE": "100000", "PEDRO_LOG_LEVEL": "WARNING"}  # fmt: skip
        broker = build_broker(pooled_settings.model_copy(update={"heartbeat_timeout_ms": 1_000}), worker=False)
        publisher = Publisher(broker, batch_size=1)
        kills, fleet, at_kills = 0, None, []
        with open(tmp_path / "workers.log", "ab") as log:
            try:
                for part in range(4):
                    fleet = _fleet(env, log)
                    chunk = [usage("pb_k", id=f"k{n}", credits=1) for n in range(part * 1_000, (part + 1) * 1_000)]
                    publisher.publish_many(chunk + chunk[:100])  # and a tenth again
                    if part == 3:
                        break
                    applied = await count(conn, "worker.journal")
                    deadline = time.monotonic() + 30
                    while await count(conn, "worker.journal") < applied + 300 and time.monotonic() < deadline:
                        await asyncio.sleep(0.05)
                    os.killpg(fleet.pid, signal.SIGKILL)  # mid-stream: transactions and acks in flight
                    fleet.wait()
                    kills += 1
                    at_kills.append(await count(conn, "worker.journal"))
                broker.join("usage", timeout=60_000)  # queued, delayed and the killed fleets' unacked
                fleet.send_signal(signal.SIGTERM)
                assert fleet.wait(30) == 0
            finally:
                if fleet is not None and fleet.poll() is None:
                    os.killpg(fleet.pid, signal.SIGKILL)
                broker.close()
    print(f"\n{kills} SIGKILLs of the fleet (at {at_kills} events applied), {events} events "
          f"(+{4 * 100} duplicates) through PgBouncer")
    assert kills == 3
    assert all(applied < (part + 1) * 1_000 for part, applied in enumerate(at_kills)), at_kills  # mid-stream
    assert await count(conn, "worker.journal") == events
    assert await count(conn, '"UsageHistory"') == events == await count(conn, "worker.event_log")
    assert await balance(conn, "pb_k") == 1_000_000 - events
    assert await find_balance_drift(conn) == []
