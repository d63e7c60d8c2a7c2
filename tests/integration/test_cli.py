"""The `pedro-worker` commands as an operator runs them (real processes, real servers)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import asyncpg
import pytest

from tests.integration.helpers import balance, make_user, usage
from worker.migrate import discover


def pedro(*args: str, database_url: str, redis_url: str = "", timeout: float = 60, **env: str):
    environ = {**os.environ, "DATABASE_URL": database_url, "REDIS_URL": redis_url, **env}
    return subprocess.run(
        [sys.executable, "-m", "worker.cli", *args], env=environ, capture_output=True, text=True, timeout=timeout
    )


def worker_process(database_url: str, redis_url: str, namespace: str, timeout: float = 60):
    env = {**os.environ, "DATABASE_URL": database_url, "REDIS_URL": redis_url,
           "PEDRO_REDIS_NAMESPACE": namespace}  # fmt: skip
    return subprocess.run(
        [sys.executable, "-m", "dramatiq", "worker.app", "--processes", "1", "--threads", "1"],
        env=env, capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip


async def test_migrate_twice_applies_nothing_the_second_time(empty_database_url):
    first = pedro("migrate", "--with-app-schema", database_url=empty_database_url)
    assert first.returncode == 0, first.stderr
    assert "app schema: created" in first.stdout and "0001_ledger" in first.stdout
    second = pedro("migrate", "--with-app-schema", database_url=empty_database_url)
    assert second.returncode == 0
    assert "app schema: already present" in second.stdout
    assert f"migrations applied: none ({len(discover())} already applied)" in second.stdout


async def test_a_tampered_migration_is_a_clear_error(empty_database_url, tmp_path):
    assert pedro("migrate", "--with-app-schema", database_url=empty_database_url).returncode == 0
    conn = await asyncpg.connect(empty_database_url)
    await conn.execute("UPDATE worker.schema_migrations SET checksum = 'abc' WHERE version = '0001_ledger'")
    await conn.close()
    result = pedro("migrate", database_url=empty_database_url)
    assert result.returncode == 3
    assert "0001_ledger.sql was changed after it was applied" in result.stderr


async def test_check_names_a_dropped_column_and_a_changed_type(conn, database_url, redis_url):
    assert pedro("check", database_url=database_url, redis_url=redis_url).returncode == 0
    await conn.execute('ALTER TABLE "UsageHistory" ALTER COLUMN "creditsUsed" TYPE bigint')
    await conn.execute('ALTER TABLE "CreditBalance" DROP COLUMN "lastSyncedAt"')
    result = pedro("check", database_url=database_url, redis_url=redis_url)
    assert result.returncode == 3
    assert '"UsageHistory"."creditsUsed" is bigint, expected integer' in result.stdout
    assert '"CreditBalance"."lastSyncedAt" is missing' in result.stdout


async def test_the_worker_refuses_to_start_on_an_incompatible_schema(conn, database_url, redis_url):
    await conn.execute('ALTER TABLE "UsageHistory" ALTER COLUMN "details" TYPE text')
    result = worker_process(database_url, redis_url, "pedro-boot-schema")
    assert result.returncode != 0
    assert '\\"UsageHistory\\".\\"details\\" is text, expected jsonb' in result.stderr or \
        '"UsageHistory"."details" is text, expected jsonb' in result.stderr


async def test_the_worker_exits_non_zero_when_it_cannot_create_its_pool(redis_url):
    bad = "postgresql://nobody:secret-pw@127.0.0.1:1/nowhere"
    result = worker_process(bad, redis_url, "pedro-boot-nodb")
    assert result.returncode != 0
    assert "worker_boot_failed" in result.stderr
    assert "secret-pw" not in result.stderr  # the password never reaches a log


async def test_publish_a_jsonl_file_then_reconcile(conn, database_url, redis_url, tmp_path, settings, broker):
    from worker.runner import InProcessWorker

    await make_user(conn, "user_file", credits=100)
    events = [usage("user_file", id=f"file-{n}", credits=2) for n in range(25)]
    path = tmp_path / "events.jsonl"
    path.write_text("\n".join(json.dumps(e) for e in events) + "\n")
    result = pedro("publish", str(path), "--batch-size", "10", database_url=database_url,
                   redis_url=redis_url, PEDRO_REDIS_NAMESPACE=settings.redis_namespace)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "published 25 events" in result.stdout
    with InProcessWorker(broker) as worker:
        worker.drain()
    assert await balance(conn, "user_file") == 50

    clean = pedro("reconcile", database_url=database_url)
    assert clean.returncode == 0 and "1 balances checked, 0 with drift" in clean.stdout
    await conn.execute('UPDATE "CreditBalance" SET "creditsRemaining" = 7')
    drift = pedro("reconcile", "--json", database_url=database_url)
    assert drift.returncode == 1
    assert json.loads(drift.stdout)["drift"][0]["expected"] == 50


async def test_publish_refuses_an_invalid_file_and_enqueues_nothing(database_url, redis_url, tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(usage("u", credits=-4)) + "\n")
    result = pedro("publish", str(path), database_url=database_url, redis_url=redis_url)
    assert result.returncode == 1
    assert "credits" in result.stderr


async def test_the_worker_role_can_write_the_ledger_but_not_change_the_schema(database_url):
    conn = await asyncpg.connect(database_url)
    try:
        assert await conn.fetchval("SELECT current_user") == "pedro_worker"
        for forbidden in (
            'ALTER TABLE "User" ADD COLUMN x int',
            'DELETE FROM "UsageHistory"',
            "TRUNCATE worker.journal",
            "CREATE TABLE public.sneaky (id int)",
            "UPDATE worker.schema_migrations SET checksum = 'x'",
            """UPDATE "AdminSettings" SET "featureCosts" = '{}'""",
        ):
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await conn.execute(forbidden)
    finally:
        await conn.close()
