"""Dead-letter tools against the real worker: `pedro-worker dlq …` and `replay`."""

from __future__ import annotations

import json

import redis

from tests.integration.helpers import balance, count, usage_rows
from tests.integration.ops_helpers import dead_letters, make_balance_busy_dead_letter
from tests.integration.test_cli import pedro


def _cli(settings, *args: str, **env: str):
    return pedro(
        *args,
        database_url=settings.require_database_url(),
        redis_url=settings.require_redis_url(),
        PEDRO_REDIS_NAMESPACE=settings.redis_namespace,
        **env,
    )


async def test_requeue_once_the_row_is_free_applies_the_event_exactly_once(
    conn, database_url, broker, worker, settings
):
    await make_balance_busy_dead_letter(
        conn, database_url, broker, worker, settings, "user_late", "late-1", credits=7
    )
    [letter] = dead_letters(settings).list()
    assert (letter.queue, letter.reason, letter.options["retries"]) == (
        "usage",
        "balance_busy",
        settings.max_retries + 1,
    )
    assert await balance(conn, "user_late") == 100  # nothing applied while the row was held
    assert await count(conn, "worker.waiting") == 0  # a passing condition: it never waits

    listed = _cli(settings, "dlq", "list", "--reason", "balance_busy")
    assert listed.returncode == 0, listed.stderr
    assert letter.message_id in listed.stdout and "balance_busy" in listed.stdout
    assert "in Redis: usage: 1" in listed.stdout
    assert _cli(settings, "dlq", "list", "--reason", "insufficient_credits").stdout.startswith(
        "0 dead letter(s)"
    )

    # the app's transaction has ended: the row is free
    requeued = _cli(settings, "dlq", "requeue", letter.message_id)
    assert requeued.returncode == 0, requeued.stderr
    assert "requeued 1 dead letter(s)" in requeued.stdout
    worker.drain()

    assert await balance(conn, "user_late") == 93
    assert [r["id"] for r in await usage_rows(conn, "user_late")] == ["late-1"]
    assert await count(conn, "worker.journal") == 1
    assert dead_letters(settings).counts()["usage"] == 0
    again = _cli(settings, "dlq", "requeue", letter.message_id)  # gone: nothing to apply twice
    assert again.returncode == 1 and "not found: " + letter.message_id in again.stderr


async def test_a_requeued_message_is_a_fresh_attempt_on_its_own_queue(
    conn, database_url, broker, worker, settings
):
    await make_balance_busy_dead_letter(
        conn, database_url, broker, worker, settings, "user_ghost", "ghost-1"
    )
    dlq = dead_letters(settings)
    [letter] = dlq.list()
    worker.stop()  # keep the requeued message in Redis to look at it

    assert dlq.requeue(letter) is True
    assert dlq.requeue(letter) is False  # the same click twice: moved once
    client = redis.Redis.from_url(settings.require_redis_url())
    ns = settings.redis_namespace
    [new_id] = client.lrange(f"{ns}:usage", 0, -1)
    body = json.loads(client.hget(f"{ns}:usage.msgs", new_id))
    assert body["message_id"] == letter.message_id and body["queue_name"] == "usage"
    assert body["options"]["redis_message_id"] == new_id.decode() != letter.redis_id
    assert body["options"]["dlq_requeues"] == 1
    for gone in ("retries", "traceback", "dead_letter_reason", "dead_letter_detail", "eta"):
        assert gone not in body["options"]
    assert body["args"] == letter.message["args"]
    assert client.zcard(f"{ns}:usage.XQ") == 0 and client.hlen(f"{ns}:usage.XQ.msgs") == 0


async def test_purge_all_of_a_reason_and_usage_errors(conn, database_url, broker, worker, settings):
    for n in (1, 2):
        await make_balance_busy_dead_letter(
            conn, database_url, broker, worker, settings, f"user_p{n}", f"purge-{n}"
        )
    assert _cli(settings, "dlq", "purge").returncode == 2  # neither ids nor --all
    assert _cli(settings, "dlq", "list", "--queue", "nope").returncode == 2
    shown = _cli(settings, "dlq", "show", dead_letters(settings).list()[0].message_id)
    assert shown.returncode == 0 and json.loads(shown.stdout)["reason"] == "balance_busy"
    assert _cli(settings, "dlq", "show", "no-such-id").returncode == 1

    kept = _cli(settings, "dlq", "purge", "--all", "--reason", "row_busy")
    assert kept.returncode == 0 and "purged 0 dead letter(s)" in kept.stdout
    purged = _cli(settings, "dlq", "purge", "--all", "--queue", "usage", "--reason", "balance_busy")
    assert purged.returncode == 0 and "purged 2 dead letter(s)" in purged.stdout
    assert dead_letters(settings).counts()["usage"] == 0


async def test_replay_of_an_export_publishes_what_is_missing_once(
    conn, database_url, broker, worker, settings, tmp_path
):
    await make_balance_busy_dead_letter(
        conn, database_url, broker, worker, settings, "user_replay", "replay-1", credits=4,
        balance=50,
    )  # fmt: skip
    export = _cli(settings, "dlq", "list", "--json")
    path = tmp_path / "export.jsonl"
    path.write_text(export.stdout + '{"type": "usage.recorded", "id": "bad"}\nnot json\n')
    assert _cli(settings, "dlq", "purge", "--all").returncode == 0
    assert await balance(conn, "user_replay") == 50

    first = _cli(settings, "replay", str(path))
    assert first.returncode == 1  # two bad lines reported, the rest still sent
    assert "1 published" in first.stdout and "2 invalid" in first.stdout
    assert "line 2:" in first.stdout and "line 3: not JSON" in first.stdout
    worker.drain()
    assert await balance(conn, "user_replay") == 46

    path.write_text(export.stdout)
    second = _cli(settings, "replay", str(path), PEDRO_PROGRESS="1")  # the bar, as on a terminal
    assert second.returncode == 0, second.stderr
    assert "replay: 100%" in second.stderr
    assert "0 published, 1 already decided (skipped)" in second.stdout
    forced = _cli(settings, "replay", "--no-skip", str(path))  # sent anyway: the worker dedups
    assert "1 published" in forced.stdout
    worker.drain()
    assert await balance(conn, "user_replay") == 46
    assert await count(conn, '"UsageHistory"') == 1
