"""The ledger's guarantees, applied straight through `apply_usage_batch` on a real database."""

from __future__ import annotations

import asyncio
import gc
import json
import logging
from datetime import timedelta

import asyncpg
import pytest

from tests.integration.helpers import (
    T0,
    adjust,
    balance,
    count,
    held_balance,
    make_user,
    refund,
    rejections,
    usage,
    usage_rows,
)  # fmt: skip
from worker import db
from worker.ledger import apply as apply_module
from worker.ledger.apply import OpenedUsers, apply_usage_batch
from worker.ledger.decide import APPLIED, DUPLICATE, REJECTED, RETRY, WAITING, Account, Outcome, Plan
from worker.repo import ledger as repo_module
from worker.repo.ledger import find_decided_events
from worker.repo.reconcile import find_balance_drift


async def apply(conn, settings, *events):
    result = await apply_usage_batch(conn, list(events), settings)
    return [(o.status, o.reason) for o in result.outcomes]


async def test_completed_usage_is_recorded_under_the_default_policy_and_the_balance_goes_below_zero(
    conn, settings
):
    await make_user(conn, "u", credits=3)
    assert settings.overdraft_policy == "allow"  # the default
    assert await apply(conn, settings, usage("u", id="served", credits=5)) == [(APPLIED, None)]
    assert await balance(conn, "u") == -2
    assert [r["creditsUsed"] for r in await usage_rows(conn, "u")] == [5]
    assert await find_balance_drift(conn) == []


async def test_insufficient_credits_under_reject_applies_nothing_and_stores_the_rejection(conn, settings):
    settings = settings.model_copy(update={"overdraft_policy": "reject"})
    await make_user(conn, "u", credits=10)
    big = usage("u", id="big", credits=11)
    assert await apply(conn, settings, big) == [(REJECTED, "insufficient_credits")]
    assert await balance(conn, "u") == 10
    assert await count(conn, '"UsageHistory"') == 0
    [stored] = await rejections(conn, "big")
    assert stored["reason"] == "insufficient_credits" and stored["payload"]["credits"] == 11
    # a replay of a rejected event stays rejected (it is a duplicate of a decided event)
    assert await apply(conn, settings, big) == [(DUPLICATE, None)]
    await conn.execute('UPDATE "CreditBalance" SET "creditsRemaining" = 50')
    assert await apply(conn, settings, big) == [(DUPLICATE, None)]
    assert await balance(conn, "u") == 50


async def test_allow_policy_goes_negative_and_the_journal_still_adds_up(conn, settings):
    settings = settings.model_copy(update={"overdraft_policy": "allow"})
    await make_user(conn, "u", credits=10)
    assert await apply(conn, settings, usage("u", credits=25), adjust("u", -5)) == [(APPLIED, None)] * 2
    assert await balance(conn, "u") == -20
    assert await find_balance_drift(conn) == []


async def test_refund_twice_is_applied_once_and_more_than_the_usage_is_rejected(conn, settings):
    await make_user(conn, "u", credits=100)
    await apply(conn, settings, usage("u", id="use", credits=30))
    assert await apply(conn, settings, refund("u", of="use", id="r1", credits=10)) == [(APPLIED, None)]
    assert await apply(conn, settings, refund("u", of="use", id="r1", credits=10)) == [(DUPLICATE, None)]
    assert await apply(conn, settings, refund("u", of="use", id="r2", credits=25)) == [
        (REJECTED, "refund_exceeds_usage")
    ]
    assert await apply(conn, settings, refund("u", of="use", id="r3")) == [(APPLIED, None)]  # the other 20
    assert await balance(conn, "u") == 100
    rows = {r["id"]: r["creditsUsed"] for r in await usage_rows(conn, "u")}
    assert rows == {"use": 30, "r1": -10, "r3": -20}
    details = await conn.fetchval('SELECT details FROM "UsageHistory" WHERE id = $1', "r1")
    assert details == {"refundOf": "use"}


async def test_refund_of_an_unknown_usage_waits(conn, settings):
    await make_user(conn, "u")
    assert await apply(conn, settings, refund("u", of="not-yet", id="r")) == [(WAITING, "refund_before_usage")]
    assert await count(conn, "worker.event_log") == 0
    [row] = await conn.fetch("SELECT * FROM worker.waiting")
    assert (row["event_id"], row["waits_for"], row["state"], row["event"]["refundOf"]) == (
        "r", "usage:not-yet", "waiting", "not-yet")
    # found waiting again (a redelivery): the same row, counted again
    assert await apply(conn, settings, refund("u", of="not-yet", id="r")) == [(WAITING, "refund_before_usage")]
    assert await conn.fetchval("SELECT times_waited FROM worker.waiting") == 2


async def test_a_usage_without_credits_and_without_any_cost_waits_then_applies_once_featurecosts_has_it(
    conn, settings
):
    await make_user(conn, "u", credits=100)
    await conn.execute("ALTER TYPE \"OperationType\" ADD VALUE 'AI_AUDIO'")
    audio = usage("u", id="a1", credits=None, op="AI_AUDIO")
    assert await apply(conn, settings, audio) == [(WAITING, "no_cost")]
    assert await balance(conn, "u") == 100  # never charged 0
    assert await conn.fetchval("SELECT waits_for FROM worker.waiting") == "cost:AI_AUDIO"
    await conn.execute(
        """INSERT INTO "AdminSettings" (id, "featureCosts", "updatedAt")
           VALUES ('singleton', '{"AI_AUDIO": "x", "AI_TEXT_CHAT": "25"}', now())"""
    )
    assert await apply(conn, settings, audio) == [(WAITING, "bad_feature_cost")]
    assert 'featureCosts["AI_AUDIO"]' in await conn.fetchval("SELECT detail FROM worker.waiting")
    assert await apply(conn, settings, usage("u", id="t1", credits=None)) == [(APPLIED, None)]
    assert await balance(conn, "u") == 75  # "25" charges 25
    await conn.execute("""UPDATE "AdminSettings" SET "featureCosts" = '{"AI_AUDIO": 3.0}'""")
    # the same id with another payload that must wait too: refused, the waiting one is kept
    await conn.execute("ALTER TYPE \"OperationType\" ADD VALUE 'AI_SPEECH'")
    assert await apply(conn, settings, {**audio, "operationType": "AI_SPEECH"}) == [(REJECTED, "idempotency_conflict")]
    [conflict] = await rejections(conn, "a1")
    assert conflict["reason"] == "idempotency_conflict" and conflict["payload"]["operationType"] == "AI_SPEECH"
    assert await apply(conn, settings, audio) == [(APPLIED, None)]
    assert await balance(conn, "u") == 72


async def test_featurecosts_that_is_not_a_json_object_makes_usages_wait_never_the_defaults(conn, settings):
    await make_user(conn, "u", credits=100)
    await conn.execute(
        """INSERT INTO "AdminSettings" (id, "featureCosts", "updatedAt") VALUES ('singleton', '[5]', now())"""
    )
    chat = usage("u", id="c1", credits=None)
    assert await apply(conn, settings, chat) == [(WAITING, "bad_feature_cost")]
    assert "not a JSON object" in await conn.fetchval("SELECT detail FROM worker.waiting")
    # what JSON.stringify into a Prisma Json field stores: a JSON string holding the object
    await conn.execute("""UPDATE "AdminSettings" SET "featureCosts" = to_jsonb('{"AI_TEXT_CHAT": 25}'::text)""")
    assert await apply(conn, settings, chat) == [(APPLIED, None)]
    assert await balance(conn, "u") == 75


async def test_a_label_the_database_lacks_waits_and_applies_once_the_enum_has_it(conn, settings):
    await make_user(conn, "u", credits=100)
    video = usage("u", id="v1", credits=4, op="VIDEO_GENERATION")
    assert await apply(conn, settings, video, refund("u", of="v1", id="v1-r", credits=1)) == [
        (WAITING, "unknown_operation_type"), (WAITING, "refund_before_usage")]
    await conn.execute("ALTER TYPE \"OperationType\" ADD VALUE 'VIDEO_GENERATION'")
    assert await apply(conn, settings, video, refund("u", of="v1", id="v1-r", credits=1)) == [(APPLIED, None)] * 2
    assert await balance(conn, "u") == 97


async def test_cost_comes_from_admin_settings_when_set_and_code_defaults_otherwise(conn, settings):
    await make_user(conn, "u", credits=100)
    await apply(conn, settings, usage("u", id="d1", credits=None, op="AI_IMAGE_GENERATION"))
    await conn.execute(
        """INSERT INTO "AdminSettings" (id, "featureCosts", "updatedAt")
           VALUES ('singleton', $1, CURRENT_TIMESTAMP)""",
        {"AI_IMAGE_GENERATION": 3},
    )
    await apply(conn, settings, usage("u", id="d2", credits=None, op="AI_IMAGE_GENERATION"))
    await apply(conn, settings, usage("u", id="d3", credits=None, op="AI_TEXT_CHAT"))
    rows = {r["id"]: r["creditsUsed"] for r in await usage_rows(conn, "u")}
    assert rows == {"d1": 10, "d2": 3, "d3": 5}


async def test_same_key_with_a_different_payload_is_an_idempotency_conflict(conn, settings):
    await make_user(conn, "u", credits=100)
    first = usage("u", id="k", credits=5)
    await apply(conn, settings, first)
    assert await apply(conn, settings, {**first, "credits": 50}) == [(REJECTED, "idempotency_conflict")]
    assert await balance(conn, "u") == 95
    [stored] = await rejections(conn, "k")
    assert stored["reason"] == "idempotency_conflict" and stored["payload"]["credits"] == 50


async def test_a_replay_is_settled_by_its_raw_hash_without_validating_again(conn, settings, monkeypatch):
    await make_user(conn, "u", credits=100)
    events = [usage("u", credits=1) for _ in range(5)]
    assert await apply(conn, settings, *events) == [(APPLIED, None)] * 5

    validated = []
    adapter = apply_module.usage_event_adapter
    monkeypatch.setattr(apply_module, "usage_event_adapter", type("Counting", (), {
        "validate_python": staticmethod(lambda raw: validated.append(raw) or adapter.validate_python(raw)),
    }))  # fmt: skip
    assert await apply(conn, settings, *events) == [(DUPLICATE, None)] * 5
    assert validated == []

    # the same events spelled differently (key order, time zone) are validated, then still duplicates
    respelled = [{**dict(reversed(e.items())), "occurredAt": e["occurredAt"].replace("+00:00", "Z")}
                 for e in events]  # fmt: skip
    assert await apply(conn, settings, *respelled) == [(DUPLICATE, None)] * 5
    assert len(validated) == 5
    # and a changed payload under a decided id is still a conflict, not a duplicate
    assert await apply(conn, settings, {**events[0], "credits": 2}) == [(REJECTED, "idempotency_conflict")]
    assert await balance(conn, "u") == 95


async def test_a_twin_decided_after_the_lookup_is_a_duplicate_and_the_rest_still_applies(
    conn, settings, monkeypatch
):
    """Another message carrying the same event commits between this batch's lookup and its
    write: the write fails on the key, rolls back, and runs again without that event."""
    await make_user(conn, "u", credits=100)
    twin = usage("u", id="twin", credits=5)
    await apply(conn, settings, twin)  # the other message, already committed
    lookups = []
    real_lookup = repo_module.find_decided_events

    async def stale_first_lookup(connection, ids):
        lookups.append(list(ids))
        return {} if len(lookups) == 1 else await real_lookup(connection, ids)

    monkeypatch.setattr(repo_module, "find_decided_events", stale_first_lookup)
    changed = {**twin, "credits": 6, "id": "twin-2"}
    outcomes = await apply(conn, settings, usage("u", id="other", credits=1), twin, changed)
    assert outcomes == [(APPLIED, None), (DUPLICATE, None), (APPLIED, None)]
    assert len(lookups) == 2  # the batch's lookup, then the one after the failed write
    assert await balance(conn, "u") == 100 - 5 - 1 - 6
    assert await count(conn, '"UsageHistory"') == 3 and await count(conn, "worker.event_log") == 3
    assert await find_balance_drift(conn) == []


async def test_a_unique_violation_without_a_twin_is_an_error_not_a_duplicate(conn, settings):
    """A "UsageHistory" row the app wrote itself under the event's id is not a decided event."""
    user_id = await make_user(conn, "u", credits=100)
    balance_id = await conn.fetchval('SELECT id FROM "CreditBalance" WHERE "userId" = $1', user_id)
    await conn.execute("""INSERT INTO "UsageHistory" (id, "userId", "creditBalanceId", "operationType",
                          "creditsUsed", "timestamp") VALUES ('taken', $1, $2, 'AI_TEXT_CHAT', 1, now())""",
                       user_id, balance_id)  # fmt: skip
    with pytest.raises(asyncpg.UniqueViolationError):
        await apply(conn, settings, usage("u", id="taken", credits=5))
    assert await balance(conn, "u") == 100 and await count(conn, "worker.event_log") == 0


async def test_concurrent_deliveries_of_the_same_events_apply_each_once(database_url, conn, settings):
    import asyncio

    from worker import db

    for n in range(5):
        await make_user(conn, f"u{n}", credits=1000)
    events = [usage(f"u{n % 5}", id=f"e{n}", credits=1) for n in range(200)]
    workers = [await db.connect(database_url) for _ in range(4)]
    try:
        results = await asyncio.gather(*(
            apply_usage_batch(c, events[k:] + events[:k], settings) for k, c in zip((0, 50, 100, 150), workers)
        ))  # fmt: skip
    finally:
        for c in workers:
            await c.close()
    statuses = [o.status for result in results for o in result.outcomes]
    assert statuses.count(APPLIED) == 200 and statuses.count(DUPLICATE) == 600
    assert [await balance(conn, f"u{n}") for n in range(5)] == [1000 - 40] * 5
    assert await count(conn, '"UsageHistory"') == 200
    assert await find_balance_drift(conn) == []


async def test_the_worker_plans_each_statement_once_and_never_scans_a_table(conn, settings):
    """Planned while the tables are tiny, the worker's statements still go through indexes, so
    they cost the same once the tables hold millions of rows; and one-event transactions do not
    plan their statements on every call."""
    from worker.db import QUERIES, create_pool

    for n in range(3):
        await make_user(conn, f"u{n}", credits=100)
    await apply(conn, settings, usage("u0", credits=1), refund("u0", of="nothing-yet"))
    await conn.execute("ANALYZE")  # the statistics now say: tiny tables
    pool = await create_pool(settings)
    try:
        async with pool.acquire() as worker_conn:
            scans = "SELECT sum(seq_scan) FROM pg_stat_xact_user_tables"
            async with worker_conn.transaction():  # the batches' transactions nest as savepoints
                before = await worker_conn.fetchval(scans)
                for n in range(20):
                    await apply_usage_batch(worker_conn, [usage(f"u{n % 3}", credits=1)], settings)
                await apply_usage_batch(worker_conn, [refund("u1", of="nothing-yet", id="r-1")], settings)
                assert await worker_conn.fetchval(scans) == before
            plans = {r["statement"]: (r["generic_plans"], r["custom_plans"]) for r in await worker_conn.fetch(
                "SELECT statement, generic_plans, custom_plans FROM pg_prepared_statements")}  # fmt: skip
    finally:
        await pool.close()
    assert plans[QUERIES["lock_free_accounts"]] == (21, 0)
    assert plans[QUERIES["write_ledger"]] == (20, 0)
    assert plans[QUERIES["find_refund_targets"]] == (1, 0)


async def test_a_transaction_logs_a_summary_at_info_only_when_not_everything_applied(conn, settings, capsys):
    from worker.logs import configure_logging

    configure_logging(settings.model_copy(update={"log_level": "INFO", "log_format": "json"}))
    try:
        await make_user(conn, "u", credits=100)
        event = usage("u", id="once", credits=1)
        await apply(conn, settings, event)
        assert "batch_applied" not in capsys.readouterr().err  # the ops counters have it
        await apply(conn, settings, event, usage("u", id="too-big", credits=1000), refund("u", of="none-yet"))
        [line] = [json.loads(x) for x in capsys.readouterr().err.splitlines() if "batch_applied" in x]
        assert (line["level"], line["duplicates"], line["waiting"]) == ("info", 1, 1)
    finally:
        logging.getLogger().handlers.clear()


async def test_events_decided_before_raw_hashes_were_recorded_replay_as_duplicates(conn, settings):
    await make_user(conn, "u", credits=100)
    event = usage("u", id="old", credits=7)
    await apply(conn, settings, event)
    await conn.execute("UPDATE worker.event_log SET raw_hash = NULL")
    assert await apply(conn, settings, event) == [(DUPLICATE, None)]
    assert await apply(conn, settings, {**event, "credits": 8}) == [(REJECTED, "idempotency_conflict")]
    assert await balance(conn, "u") == 93


@pytest.mark.parametrize(
    "bad",
    [
        {"type": "usage.recorded", "clerkUserId": "u"},
        {**usage("u"), "credits": "12"},
        {**usage("u"), "operationType": "ai-time-travel"},
        {**usage("u"), "details": {"x": "y" * 20_000}},
        {**usage("u"), "occurredAt": "2026-11-01 12:00:00"},
        {**usage("u"), "id": "1'; DELETE FROM \"CreditBalance\" --"},
        {**usage("u"), "id": "\u202eevil\u0000"},
        ["not", "an", "object"],
        {**usage("u"), "details": {"n": float("nan")}},
    ],
)
async def test_bad_payloads_are_rejected_with_a_reason_and_change_nothing(conn, settings, bad):
    await make_user(conn, "u", credits=100)
    [(status, reason)] = await apply(conn, settings, bad)
    assert (status, reason) == (REJECTED, "validation_error")
    assert await balance(conn, "u") == 100
    assert await count(conn, '"UsageHistory"') == await count(conn, "worker.journal") == 0
    [stored] = await rejections(conn)
    assert stored["reason"] == "validation_error" and stored["detail"]


async def test_a_bad_event_never_blocks_the_rest_of_its_batch(conn, settings):
    await make_user(conn, "u", credits=100)
    outcomes = await apply(conn, settings, usage("u", credits=1), {"type": "usage.recorded"}, usage("u", credits=2))
    assert outcomes == [(APPLIED, None), (REJECTED, "validation_error"), (APPLIED, None)]
    assert await balance(conn, "u") == 97


async def test_rows_are_what_prismas_client_would_read(conn, settings):
    user_id = await make_user(conn, "u", credits=100)
    before = await conn.fetchrow('SELECT "updatedAt", "lastSyncedAt" FROM "CreditBalance"')
    at = T0 + timedelta(hours=3)
    await apply(conn, settings, usage("u", id="p1", credits=4, op="AI_IMAGE_GENERATION", at=at,
                                      details={"model": "flux", "prompt": "ünïcødé ✓"}))  # fmt: skip
    row = await conn.fetchrow('SELECT * FROM "UsageHistory" WHERE id = $1', "p1")
    assert row["userId"] == user_id
    assert row["creditBalanceId"] == await conn.fetchval('SELECT id FROM "CreditBalance"')
    assert row["operationType"] == "AI_IMAGE_GENERATION"
    assert row["details"] == {"model": "flux", "prompt": "ünïcødé ✓"}
    assert row["timestamp"] == at.replace(tzinfo=None)  # UTC, TIMESTAMP(3) without time zone
    after = await conn.fetchrow('SELECT "updatedAt", "lastSyncedAt" FROM "CreditBalance"')
    assert after["updatedAt"] > before["updatedAt"] and after["lastSyncedAt"] > before["lastSyncedAt"]
    for table in ('"User"', '"CreditBalance"'):
        ids = await conn.fetch(f'SELECT id, "updatedAt" FROM {table}')
        assert all(len(r["id"]) == 25 and r["id"].startswith("c") and r["updatedAt"] for r in ids)


async def test_concurrent_batches_for_the_same_users_never_deadlock(database_url, settings):
    """Two connections apply overlapping batches for the same users in opposite orders."""
    import asyncio

    from worker import db

    setup = await db.connect(database_url)
    for n in range(20):
        await make_user(setup, f"u{n}", credits=1000)
    conns = [await db.connect(database_url) for _ in range(4)]
    users = [f"u{n}" for n in range(20)]
    batches = [[usage(u, credits=1) for u in (users if k % 2 else users[::-1]) * 5] for k in range(40)]

    async def run(conn, mine):
        for batch in mine:
            await apply_usage_batch(conn, batch, settings)

    await asyncio.gather(*(run(c, batches[i::4]) for i, c in enumerate(conns)))
    assert [await balance(setup, u) for u in users] == [1000 - 200] * 20
    assert await find_balance_drift(setup) == []
    for c in [setup, *conns]:
        await c.close()


async def test_journal_has_exactly_one_movement_per_balance_change(conn, settings):
    await make_user(conn, "u", credits=100)
    await apply(conn, settings, usage("u", id="a", credits=10), refund("u", of="a", id="b", credits=4),
                adjust("u", 7, id="c"))  # fmt: skip
    rows = await conn.fetch("SELECT event_id, kind, delta, refund_of FROM worker.journal ORDER BY event_id")
    assert [tuple(r) for r in rows] == [("a", "usage", -10, None), ("b", "refund", 4, "a"),
                                        ("c", "adjustment", 7, None)]  # fmt: skip
    assert await conn.fetchval("SELECT opening FROM worker.balance_opening") == 100
    assert await balance(conn, "u") == 101


async def test_every_movement_says_its_kind_reference_and_reason(conn, settings):
    user_id = await make_user(conn, "u", credits=100)
    support = {**adjust("u", 7, id="c"), "reason": "support: ticket 42 \x1f ✓"}  # any text survives
    await apply(conn, settings, usage("u", id="a", credits=10, op="AI_IMAGE_GENERATION"),
                refund("u", of="a", id="b", credits=4), support)  # fmt: skip
    await apply(conn, settings, refund("u", of="a", id="d"))  # a later batch: the usage comes from the table
    rows = await conn.fetch("SELECT event_id, kind, reference, reason, refund_of FROM worker.journal ORDER BY event_id")
    assert [tuple(r) for r in rows] == [
        ("a", "usage", "a", "AI_IMAGE_GENERATION", None),
        ("b", "refund", "a", "refund of AI_IMAGE_GENERATION", "a"),
        ("c", "adjustment", f"adjustment/{user_id}", "support: ticket 42 \x1f ✓", None),
        ("d", "refund", "a", "refund of AI_IMAGE_GENERATION", "a"),
    ]  # fmt: skip
    assert await find_balance_drift(conn) == []


async def test_stored_payload_of_a_rejection_is_valid_json(conn: asyncpg.Connection, settings):
    await apply(conn, settings, {"type": "usage.recorded", "id": "x", "deep": [[[[["a"]]]]]})
    [stored] = await rejections(conn, "x")
    assert json.dumps(stored["payload"])


async def test_a_batch_applies_free_users_at_once_and_waits_only_for_busy_ones(conn, database_url, settings):
    settings = settings.model_copy(update={"lock_wait_ms": 60_000})
    await make_user(conn, "busy", credits=100)
    await make_user(conn, "free", credits=100)
    worker_conn = await db.connect(database_url)
    try:
        async with held_balance(database_url, "busy") as held:
            task = asyncio.create_task(apply_usage_batch(
                worker_conn, [usage("busy", id="b1", credits=1), usage("free", id="f1", credits=1)], settings))
            for _ in range(100):  # the free user's event commits while the busy one is still held
                if await balance(conn, "free") == 99:
                    break
                await asyncio.sleep(0.02)
            assert await balance(conn, "free") == 99
            assert not task.done() and await balance(conn, "busy") == 100
            await held.rollback()  # the other transaction ends: the busy user's event follows
            result = await asyncio.wait_for(task, 10)
    finally:
        await worker_conn.close()
    assert [o.status for o in result.outcomes] == [APPLIED, APPLIED]
    assert await balance(conn, "busy") == 99
    assert await find_balance_drift(conn) == []


async def test_a_balance_held_past_the_lock_timeout_sends_its_events_back_and_the_rest_applies(
    conn, database_url, settings
):
    """Without the lock timeout the batch would wait for the held row until statement_timeout,
    and every usage message of the worker process with it."""
    settings = settings.model_copy(update={"lock_wait_ms": 100, "statement_timeout_ms": 60_000})
    await make_user(conn, "busy", credits=100)
    await make_user(conn, "free", credits=100)
    events = [usage("busy", id="b1", credits=1), usage("free", id="f1", credits=1), usage("busy", id="b2", credits=2)]
    worker_conn = await db.connect(database_url)
    try:
        async with held_balance(database_url, "busy"):
            result = await asyncio.wait_for(apply_usage_batch(worker_conn, events, settings), 20)
            assert [(o.status, o.reason) for o in result.outcomes] == [
                (RETRY, "balance_busy"), (APPLIED, None), (RETRY, "balance_busy")
            ]
            assert await find_decided_events(conn, ["b1", "b2"]) == {}  # nothing recorded: they come back
        result = await apply_usage_batch(worker_conn, events, settings)  # the row is free again
    finally:
        await worker_conn.close()
    assert [o.status for o in result.outcomes] == [APPLIED, DUPLICATE, APPLIED]
    assert (await balance(conn, "busy"), await balance(conn, "free")) == (97, 99)
    assert await find_balance_drift(conn) == []


async def test_decided_event_lookups_use_the_primary_key_even_on_stale_statistics(conn):
    await conn.execute("ANALYZE worker.event_log")  # the statistics now say: empty
    for _ in range(10):  # long enough for a prepared statement to settle on a generic plan
        await find_decided_events(conn, ["not-yet"])
    await conn.execute("""INSERT INTO worker.event_log (event_id, event_type, payload_hash)
                          SELECT 'e' || g, 'usage.recorded', 'h' FROM generate_series(1, 100000) g""")  # fmt: skip
    scans = "SELECT seq_scan, idx_scan FROM pg_stat_xact_user_tables WHERE relid = 'worker.event_log'::regclass"
    # a few ids, and a batch message's worth (planned afresh, 500 ids "match" the whole table
    # on these statistics)
    for ids in (["e1", "e50000", "e99999"], [f"e{n * 199 + 1}" for n in range(500)]):
        async with conn.transaction():
            before = await conn.fetchrow(scans)
            found = await find_decided_events(conn, ids)
            after = await conn.fetchrow(scans)
        assert sorted(found) == sorted(ids)
        assert after["seq_scan"] == before["seq_scan"], len(ids)  # a scan reads all 100,000 rows
        assert after["idx_scan"] > before["idx_scan"]


async def opening(conn, clerk: str) -> int | None:
    return await conn.fetchval(
        'SELECT o.opening FROM worker.balance_opening o JOIN "CreditBalance" cb ON cb."userId" = o.user_id '
        'WHERE cb."clerkUserId" = $1', clerk,
    )  # fmt: skip


async def test_openings_are_written_once_and_only_skipped_after_they_committed(conn, settings):
    opened = OpenedUsers()
    await make_user(conn, "u", credits=100)
    # a real failure after the decision, inside the transaction: the journal refuses this delta
    await conn.execute("ALTER TABLE worker.journal ADD CONSTRAINT no_sevens CHECK (delta <> -7)")
    with pytest.raises(asyncpg.CheckViolationError):
        await apply_usage_batch(conn, [usage("u", credits=7)], settings, opened=opened)
    await conn.execute("ALTER TABLE worker.journal DROP CONSTRAINT no_sevens")
    assert await opening(conn, "u") is None  # rolled back, and not taken for opened

    for credits in (5, 1):
        result = await apply_usage_batch(conn, [usage("u", credits=credits)], settings, opened=opened)
        assert [o.status for o in result.outcomes] == [APPLIED]
    assert await opening(conn, "u") == 100 and await balance(conn, "u") == 94
    assert await find_balance_drift(conn) == []


def test_known_openings_are_dropped_from_a_plan_and_the_set_stays_bounded():
    opened = OpenedUsers(limit=3)
    opened.committed({"a": 1, "b": 2})
    openings = {"a": 1, "c": 3}
    opened.drop_known(openings)
    assert openings == {"c": 3}
    opened.committed({"c": 3, "d": 4})  # past the limit: forgets, then knows only these
    openings = {"a": 1, "c": 3, "d": 4}
    opened.drop_known(openings)
    assert openings == {"a": 1}


async def test_an_applied_batch_leaves_no_reference_cycles_behind(conn, settings):
    """Its plan, rows and outcomes are freed by reference counting the moment it is done: a
    cycle would keep ~5 objects per event for the cyclic collector, which then costs the worker
    several µs per event (docs/performance.md, change 23)."""
    for n in range(20):
        await make_user(conn, f"u{n}", credits=1000)
    events = [usage(f"u{n % 20}", credits=1) for n in range(200)]
    await apply_usage_batch(conn, events[:100], settings)  # warm: statements prepared, caches filled
    gc.collect()
    gc.disable()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        result = await apply_usage_batch(conn, events[100:], settings, opened=OpenedUsers())
        gc.collect()
        left = [o for o in gc.garbage if isinstance(o, Plan | Outcome | Account | tuple | dict)]
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()
    assert [o.status for o in result.outcomes] == [APPLIED] * 100
    assert left == []
