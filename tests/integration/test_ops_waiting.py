"""`pedro-worker waiting list|show|release|drop` as an operator runs them (real processes, real
servers), and the one read that stats, /metrics and the dashboard make of what waits."""

from __future__ import annotations

import getpass
import json

from tests.integration.helpers import (
    balance,
    count,
    make_user,
    rejections,
    settle,
    usage,
    usage_rows,
    waiting_rows,
)
from tests.integration.ops_helpers import make_waiting_event
from tests.integration.test_cli import pedro
from worker import db
from worker.events import validate_event
from worker.publisher import Publisher
from worker.runner import InProcessWorker


def _cli(settings, *args: str, **env: str):
    return pedro(
        *args,
        database_url=settings.require_database_url(),
        redis_url=settings.require_redis_url(),
        PEDRO_REDIS_NAMESPACE=settings.redis_namespace,
        **env,
    )


async def _row(conn, event_id: str):
    return await conn.fetchrow("SELECT * FROM worker.waiting WHERE event_id = $1", event_id)


async def test_list_show_and_release_send_waiting_events_back_and_they_wait_again_or_apply(
    conn, broker, settings
):
    publisher = Publisher(broker)
    with InProcessWorker(broker) as worker:
        publisher.publish(usage("user_x", id="w-1", credits=3))
        publisher.publish(usage("user_y", id="w-2", credits=4, details={"to": "ana@example.com"}))
        worker.drain()

        listed = _cli(settings, "waiting", "list")
        assert listed.returncode == 0, listed.stderr
        lines = listed.stdout.splitlines()
        assert lines[0].split() == ["AGE", "STATE", "QUEUE", "TYPE", "USER", "REASON", "WAITS",
                                    "FOR", "WAITED", "RELEASED", "EVENT", "ID"]  # fmt: skip
        assert [line.split()[1:] for line in lines[1:3]] == [  # oldest first
            ["waiting", "usage", "usage.recorded", "user_x", "unknown_user", "user:user_x", "1",
             "0", "w-1"],
            ["waiting", "usage", "usage.recorded", "user_y", "unknown_user", "user:user_y", "1",
             "0", "w-2"],
        ]  # fmt: skip
        assert lines[-1] == "2 of 2 waiting event(s) listed"
        mine = _cli(settings, "waiting", "list", "--user", "user_x", "--json")
        [line] = mine.stdout.splitlines()
        shown = json.loads(line)
        assert (shown["event_id"], shown["reason"], shown["waits_for"], shown["state"]) == (
            "w-1", "unknown_user", "user:user_x", "waiting"
        )  # fmt: skip
        assert (shown["times_waited"], shown["times_released"]) == (1, 0) and shown["age_s"] < 60
        assert _cli(settings, "waiting", "list", "--reason", "no_cost").stdout == (
            "0 of 0 waiting event(s) listed\n"
        )
        limited = _cli(settings, "waiting", "list", "--limit", "1")
        assert limited.stdout.splitlines()[-1] == "1 of 2 waiting event(s) listed"
        for bad in (["--queue", "nope"], ["--limit", "0"], ["--state", "applied"]):
            assert _cli(settings, "waiting", "list", *bad).returncode == 2

        show = _cli(settings, "waiting", "show", "w-2")
        assert show.returncode == 0, show.stderr
        assert "ana@example.com" not in show.stdout  # masked as the logs mask it
        row = json.loads(show.stdout)
        assert row["event"]["details"] == {"to": "<email>"} and row["event"]["id"] == "w-2"
        assert (row["state"], row["reason"], row["queue"], row["dropped_by"]) == (
            "waiting", "unknown_user", "usage", None
        )  # fmt: skip
        missing = _cli(settings, "waiting", "show", "nope")
        assert missing.returncode == 1 and "no waiting event nope" in missing.stderr

        # released while its user still does not exist: it simply waits again
        released = _cli(settings, "waiting", "release", "w-1")
        assert released.returncode == 0, released.stderr
        assert "released 1 waiting event(s) to their queues; 0 already on their way" in (
            released.stdout
        )
        await settle(worker, conn)
        again = await _row(conn, "w-1")
        assert (again["state"], again["times_waited"], again["times_released"]) == ("waiting", 2, 1)

        assert _cli(settings, "waiting", "release").returncode == 2  # neither ids nor --all
        assert _cli(settings, "waiting", "release", "w-1", "--all").returncode == 2
        assert _cli(settings, "waiting", "release", "w-1", "--reason", "x").returncode == 2

    # No worker runs (so no sweep): the user appears, and an operator releases by reason.
    await make_user(conn, "user_x", credits=100)
    everything = _cli(settings, "waiting", "release", "--all", "--reason", "unknown_user",
                      "--queue", "usage")  # fmt: skip
    assert everything.returncode == 0, everything.stderr
    assert "released 2 waiting event(s)" in everything.stdout
    assert {r["state"] for r in await waiting_rows(conn, None)} == {"released"}
    with InProcessWorker(broker) as worker:
        await settle(worker, conn)
        assert await balance(conn, "user_x") == 97
        assert [r["id"] for r in await usage_rows(conn, "user_x")] == ["w-1"]
        states = {r["event_id"]: r["state"] for r in await waiting_rows(conn, None)}
        assert states == {"w-1": "applied", "w-2": "waiting"}  # user_y still missing
        gone = _cli(settings, "waiting", "release", "w-1", "w-2", "nope")
        assert gone.returncode == 1
        assert "not waiting: w-1 (applied)" in gone.stderr and "not found: nope" in gone.stderr
        assert "released 1 waiting event(s)" in gone.stdout
        await settle(worker, conn)
    assert await count(conn, '"UsageHistory"') == 1


async def test_a_drop_is_a_rejection_with_who_and_why_and_a_redelivery_is_a_duplicate(
    conn, broker, worker, settings
):
    event = make_waiting_event(broker, worker, "user_d", "w-drop")
    make_waiting_event(broker, worker, "user_e", "w-keep")

    assert _cli(settings, "waiting", "drop", "w-drop").returncode == 2  # --reason is required
    blank = _cli(settings, "waiting", "drop", "w-drop", "--reason", "  ")
    assert blank.returncode == 2 and (await _row(conn, "w-drop"))["state"] == "waiting"

    dropped = _cli(settings, "waiting", "drop", "w-drop", "--reason", "test account, never created",
                   "--by", "alice")  # fmt: skip
    assert dropped.returncode == 0, dropped.stderr
    assert "dropped 1 waiting event(s)" in dropped.stdout and "by alice" in dropped.stdout
    row = await _row(conn, "w-drop")
    assert (row["state"], row["dropped_by"], row["drop_reason"]) == (
        "dropped", "alice", "test account, never created"
    )  # fmt: skip
    assert row["resolved_at"] is not None
    [rejection] = await rejections(conn, "w-drop")
    assert (rejection["reason"], rejection["detail"], rejection["event_type"]) == (
        "dropped", "dropped by alice: test account, never created", "usage.recorded"
    )  # fmt: skip
    assert rejection["payload"]["id"] == "w-drop"
    key = await conn.fetchrow("SELECT * FROM worker.event_log WHERE event_id = 'w-drop'")
    assert key["payload_hash"] == validate_event(event).payload_hash()

    # not waiting any more: refused, nothing changed; and a drop is all or nothing
    twice = _cli(settings, "waiting", "drop", "w-drop", "--reason", "again")
    assert twice.returncode == 1 and "not waiting: w-drop (dropped)" in twice.stderr
    partly = _cli(settings, "waiting", "drop", "w-keep", "nope", "--reason", "cleanup")
    assert partly.returncode == 1 and "not found: nope" in partly.stderr
    assert "nothing dropped" in partly.stdout
    assert (await _row(conn, "w-keep"))["state"] == "waiting"
    assert await count(conn, "worker.rejection") == 1
    assert await count(conn, "worker.event_log") == 1

    # the user appears and the app publishes the event again: a duplicate, never applied
    await make_user(conn, "user_d", credits=100)
    Publisher(broker).publish(event)
    await settle(worker, conn)
    assert await balance(conn, "user_d") == 100
    assert await usage_rows(conn, "user_d") == []
    assert (await _row(conn, "w-drop"))["state"] == "dropped"  # not found waiting again

    by_default = _cli(settings, "waiting", "drop", "w-keep", "--reason", "spam")
    assert by_default.returncode == 0, by_default.stderr
    assert (await _row(conn, "w-keep"))["dropped_by"] == getpass.getuser()
    listed = _cli(settings, "waiting", "list")
    assert listed.stdout == "0 of 0 waiting event(s) listed\n"


async def test_the_summary_reads_the_partial_index_of_open_rows(conn, settings):
    """What /metrics, stats and the dashboard run at every refresh stays cheap however much
    history (applied, dropped) the table holds."""
    await conn.execute(
        "INSERT INTO worker.waiting (event_id, queue, event_type, event, payload_hash, reason, waits_for, state) "
        "SELECT 'old-' || n, 'usage', 'usage.recorded', '{}', 'h', 'unknown_user', 'user:u' || n, "
        "'applied' FROM generate_series(1, 20000) n"
    )
    await conn.execute(
        "INSERT INTO worker.waiting (event_id, queue, event_type, event, payload_hash, reason, waits_for) "
        "VALUES ('open-1', 'usage', 'usage.recorded', '{}', 'h', 'no_cost', 'cost:X')"
    )
    await conn.execute("ANALYZE worker.waiting")
    plan = "\n".join(r[0] for r in await conn.fetch("EXPLAIN " + db.QUERIES["summarize_waiting"]))
    assert "waiting_reason_idx" in plan, plan

    from worker.ops.waiting import read_overview

    view = await read_overview(settings, oldest=5)
    assert view["total"] == 1 and [e["event_id"] for e in view["oldest"]] == ["open-1"]
    assert view["by_queue_reason"] == [
        {"queue": "usage", "reason": "no_cost", "events": 1, "oldest_s": view["oldest_s"]}
    ]
