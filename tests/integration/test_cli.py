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


async def _wait(conn, event_id: str, clerk: str, *, reason: str, waits_for: str, state: str = "waiting",
                hours_ago: int = 0) -> None:  # fmt: skip
    await conn.execute(
        "INSERT INTO worker.waiting (event_id, queue, event_type, event, payload_hash, clerk_user_id, reason, "
        "waits_for, state, first_waited_at) VALUES ($1, 'usage', 'usage.recorded', '{}', 'h', $2, $3, $4, $5, "
        "now() - make_interval(hours => $6))", event_id, clerk, reason, waits_for, state, hours_ago,
    )  # fmt: skip


async def test_user_show_prints_the_balance_its_movements_and_why_and_what_waits(conn, database_url, settings):
    from tests.integration.helpers import adjust, refund
    from worker.ledger.apply import apply_usage_batch
    from worker.repo.users import insert_user_with_balance

    user_id = await insert_user_with_balance(conn, "user_show", email="ana@example.com", credits=100)
    await apply_usage_batch(conn, [usage("user_show", id="a1", credits=10, op="AI_IMAGE_GENERATION"),
                                   refund("user_show", of="a1", id="b1", credits=4)], settings)  # fmt: skip
    await apply_usage_batch(conn, [{**adjust("user_show", 7, id="c1"), "reason": "support ticket 42"}], settings)
    await _wait(conn, "w-old", "user_show", reason="no_cost", waits_for="cost:VIDEO_GENERATION", hours_ago=2)
    await _wait(conn, "w-done", "user_show", reason="no_cost", waits_for="cost:X", state="applied")
    await _wait(conn, "w-other", "someone_else", reason="unknown_user", waits_for="user:someone_else")

    text = pedro("user", "show", "user_show", database_url=database_url)
    assert text.returncode == 0, text.stderr
    assert "ana@example.com" not in text.stdout and "email=<email>" in text.stdout
    assert f"id={user_id}" in text.stdout and "active" in text.stdout
    assert "balance   101" in text.stdout
    lines = text.stdout.splitlines()
    movements = [line.split() for line in lines if line.rstrip().endswith((" a1", " b1", " c1"))]
    # newest first: the adjustment's transaction, then the batch's two, by event id descending
    assert [m[-1] for m in movements] == ["c1", "b1", "a1"]
    assert " ".join(movements[0][2:]) == "adjustment +7 " + f"adjustment/{user_id}"[:23] + "… support ticket 42 c1"
    assert " ".join(movements[1][2:]) == "refund +4 a1 refund of AI_IMAGE_GENERATION b1"
    assert " ".join(movements[2][2:]) == "usage -10 a1 AI_IMAGE_GENERATION a1"
    assert "more:" not in text.stdout
    assert "waiting events: 1" in text.stdout
    [waiting] = [line.split() for line in lines if line.rstrip().endswith(" w-old")]
    assert waiting == ["2h00m", "waiting", "usage.recorded", "no_cost", "cost:VIDEO_GENERATION", "w-old"]

    shown = pedro("user", "show", "user_show", "--json", database_url=database_url)
    assert shown.returncode == 0, shown.stderr
    view = json.loads(shown.stdout)
    assert view["user"] == {"id": user_id, "email": "<email>", "is_active": True}
    assert view["balance"] == 101 and view["next_cursor"] is None
    assert [(m["event_id"], m["kind"], m["delta"], m["reference"], m["reason"]) for m in view["movements"]] == [
        ("c1", "adjustment", 7, f"adjustment/{user_id}", "support ticket 42"),
        ("b1", "refund", 4, "a1", "refund of AI_IMAGE_GENERATION"),
        ("a1", "usage", -10, "a1", "AI_IMAGE_GENERATION"),
    ]  # fmt: skip
    [w] = view["waiting"]
    assert (w["event_id"], w["reason"], w["waits_for"], w["state"]) == (
        "w-old", "no_cost", "cost:VIDEO_GENERATION", "waiting"
    )  # fmt: skip
    assert 7200 <= w["age_seconds"] < 7300 and view["waiting_total"] == 1


async def test_user_show_pages_through_every_movement_once_newest_first(conn, database_url, settings):
    from worker.ledger.apply import apply_usage_batch

    await make_user(conn, "user_pages", credits=1000)
    await apply_usage_batch(conn, [usage("user_pages", id=f"m{n}", credits=1) for n in range(5)], settings)
    for n in (5, 6):  # later transactions: later created_at
        await apply_usage_batch(conn, [usage("user_pages", id=f"m{n}", credits=1)], settings)
    expected = ["m6", "m5", "m4", "m3", "m2", "m1", "m0"]  # 5 and 6 are newer; ties by event id desc

    seen, cursor, pages = [], None, 0
    while True:
        args = ["user", "show", "user_pages", "--limit", "3", "--json"] + (["--cursor", cursor] if cursor else [])
        page = pedro(*args, database_url=database_url)
        assert page.returncode == 0, page.stderr
        view = json.loads(page.stdout)
        seen += [m["event_id"] for m in view["movements"]]
        pages += 1
        cursor = view["next_cursor"]
        if cursor is None:
            break
    assert seen == expected and pages == 3

    first = pedro("user", "show", "user_pages", "--limit", "3", database_url=database_url)
    [more] = [line for line in first.stdout.splitlines() if "more:" in line]
    cursor = more.split("--cursor ")[1]
    second = pedro("user", "show", "user_pages", "--limit", "3", "--cursor", cursor, database_url=database_url)
    assert [line.split()[-1] for line in second.stdout.splitlines() if " usage " in line] == ["m3", "m2", "m1"]


async def test_user_show_an_unknown_user_exits_1_and_bad_arguments_exit_2(conn, database_url):
    await _wait(conn, "w-early", "user_later", reason="unknown_user", waits_for="user:user_later")
    missing = pedro("user", "show", "user_later", database_url=database_url)
    assert missing.returncode == 1
    assert "no user with clerkId 'user_later'" in missing.stderr
    assert "waiting events: 1" in missing.stdout and "user:user_later" in missing.stdout  # why it is missing
    as_json = pedro("user", "show", "nobody", "--json", database_url=database_url)
    assert as_json.returncode == 1 and json.loads(as_json.stdout)["user"] is None

    assert pedro("user", "show", "x", "--cursor", "not-a-cursor", database_url=database_url).returncode == 2
    assert pedro("user", "show", "x", "--limit", "0", database_url=database_url).returncode == 2

