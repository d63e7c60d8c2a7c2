"""Clerk user events through the real worker: any arrival order ends in the same state; a deleted
user frees its email, an email never blocks an account, starter credits once per Clerk id."""

from __future__ import annotations

import asyncio
import itertools
from datetime import UTC, datetime, timedelta

import pytest

from tests.integration.family_helpers import (
    dead_letters,
    user_created,
    user_deleted,
    user_row,
    user_updated,
)
from tests.integration.helpers import balance, count, rejections, usage
from worker import db
from worker.domain.each import apply_each
from worker.domain.users import USERS
from worker.ledger.decide import APPLIED, DUPLICATE
from worker.publisher import Publisher
from worker.repo.reconcile import find_balance_drift

CREATED = user_created("user_1", t=0, email="ana@example.com", name="Ana")
UPDATED = user_updated("user_1", t=10, email="ana.silva@example.com", name="Ana Silva")
DELETED = user_deleted("user_1", t=20)


async def apply(conn, settings, *events):
    result = await apply_each(conn, list(events), USERS, settings)
    return [(o.status, o.reason) for o in result.outcomes]


async def starter_movements(conn, clerk: str) -> list[tuple]:
    rows = await conn.fetch(
        "SELECT j.event_id, j.user_id, j.delta, j.reference, j.reason FROM worker.journal j "
        "WHERE j.kind = 'starter' AND j.reference = $1", clerk,
    )  # fmt: skip
    return [tuple(r) for r in rows]


async def user_id(conn, clerk: str) -> str:
    return await conn.fetchval('SELECT id FROM "User" WHERE "clerkId" = $1', clerk)


@pytest.mark.parametrize("order", list(itertools.permutations([CREATED, UPDATED, DELETED])),
                         ids=lambda o: "-".join(e["type"].split(".")[1] for e in o))  # fmt: skip
async def test_created_updated_deleted_in_every_order_end_in_the_same_state(
    conn, broker, worker, order
):
    publisher = Publisher(broker)
    for event in order:  # one message each, consumed in this order
        publisher.publish(event)
        worker.drain()

    assert await user_row(conn, "user_1") == {
        "clerkId": "user_1", "email": None, "name": None, "isActive": False, "credits": 100,
    }  # fmt: skip
    assert await count(conn, '"User"') == 1
    assert len(await starter_movements(conn, "user_1")) == 1
    assert await find_balance_drift(conn) == []


@pytest.mark.parametrize("first", ["created", "updated"])
async def test_an_older_profile_never_overwrites_a_newer_one(conn, settings, first):
    older = user_created("user_2", t=0, email="old@example.com", name="Old")
    newer = user_updated("user_2", t=5, email="new@example.com", name="New")
    for event in [older, newer] if first == "created" else [newer, older]:
        await apply(conn, settings, event)

    assert await user_row(conn, "user_2") == {
        "clerkId": "user_2", "email": "new@example.com", "name": "New", "isActive": True, "credits": 100,
    }  # fmt: skip


async def test_delete_clears_email_and_name_and_no_later_profile_brings_them_back(conn, settings):
    created = user_created("user_del", t=0, email="gone@example.com", name="Gone")
    await apply(conn, settings, created)
    assert await apply(conn, settings, user_deleted("user_del", t=20)) == [(APPLIED, None)]
    assert await user_row(conn, "user_del") == {
        "clerkId": "user_del", "email": None, "name": None, "isActive": False, "credits": 100,
    }  # fmt: skip
    last_change = 'SELECT "updatedAt" FROM "User" WHERE "clerkId" = $1'
    updated_before = await conn.fetchval(last_change, "user_del")

    late_older = user_updated("user_del", t=10, email="gone@example.com", name="Gone Again")
    late_newer = user_updated("user_del", t=30, email="back@example.com", name="Back")
    assert await apply(conn, settings, late_older) == [(APPLIED, "user_deleted")]
    assert await apply(conn, settings, late_newer) == [(APPLIED, "user_deleted")]
    again = user_deleted("user_del", t=25)
    assert await apply(conn, settings, again) == [(APPLIED, "already_inactive")]

    assert await user_row(conn, "user_del") == {
        "clerkId": "user_del", "email": None, "name": None, "isActive": False, "credits": 100,
    }  # fmt: skip
    assert await conn.fetchval(last_change, "user_del") == updated_before  # nothing changed
    assert len(await starter_movements(conn, "user_del")) == 1


async def test_deleted_before_created_ends_inactive_without_personal_data_and_is_never_reactivated(
    conn, settings
):
    assert await apply(conn, settings, user_deleted("user_3", t=50)) == [
        (APPLIED, "deleted_before_created")
    ]
    assert await user_row(conn, "user_3") is None  # nothing to deactivate yet: remembered
    await apply(conn, settings, user_created("user_3", t=0, email="late@example.com", name="Late"))
    await apply(conn, settings, user_updated("user_3", t=100, name="Renamed"))

    assert await user_row(conn, "user_3") == {
        "clerkId": "user_3", "email": None, "name": None, "isActive": False, "credits": 100,
    }  # fmt: skip
    assert await find_balance_drift(conn) == []


async def test_same_webhook_twice_creates_one_user_and_grants_starter_credits_once(conn, settings):
    settings = settings.model_copy(update={"starter_credits": 250})
    event = user_created("user_4", t=0, email="twice@example.com", id="msg_twice")
    first = await apply_each(conn, [event], USERS, settings)
    second = await apply_each(conn, [event, event], USERS, settings)

    assert [o.status for o in first.outcomes + second.outcomes] == [APPLIED, DUPLICATE, DUPLICATE]
    assert (await user_row(conn, "user_4"))["credits"] == 250
    assert await count(conn, '"CreditBalance"') == 1
    assert await starter_movements(conn, "user_4") == [
        ("starter/user_4", await user_id(conn, "user_4"), 250, "user_4", "starter credits")
    ]
    opening = await conn.fetchval(
        "SELECT opening FROM worker.balance_opening WHERE user_id = $1",
        await user_id(conn, "user_4"),
    )
    assert opening == 0  # the starter credits are a movement, not the opening
    assert await find_balance_drift(conn) == []


async def test_starter_credits_once_per_clerk_id_whatever_the_event_ids(conn, settings):
    await apply(conn, settings, user_created("user_5", t=0, id="msg_first"))
    await apply(conn, settings, user_created("user_5", t=0, id="msg_replayed_with_another_id"))
    await apply(conn, settings, user_updated("user_5", t=5))
    await apply(conn, settings, user_deleted("user_5", t=10))
    await apply(conn, settings, user_created("user_5", t=20, id="msg_created_again"))

    assert len(await starter_movements(conn, "user_5")) == 1
    assert await balance(conn, "user_5") == 100
    assert await find_balance_drift(conn) == []


async def test_a_clerk_id_whose_user_was_removed_and_comes_back_gets_no_second_starter(
    conn, settings
):
    await apply(conn, settings, user_created("user_6", t=0))
    old_user = await user_id(conn, "user_6")
    # the app (or someone in psql) removes the rows
    await conn.execute('DELETE FROM "CreditBalance" WHERE "userId" = $1', old_user)
    await conn.execute('DELETE FROM "User" WHERE id = $1', old_user)

    assert await apply(conn, settings, user_created("user_6", t=30, id="msg_back")) == [
        (APPLIED, "starter_already_granted")
    ]
    assert await balance(conn, "user_6") == 0
    assert [m[1] for m in await starter_movements(conn, "user_6")] == [old_user]
    drift = await find_balance_drift(conn)
    assert [d.user_id for d in drift] == [old_user]  # the removed balance, not the new one


async def test_re_signup_with_a_deleted_users_email_gets_the_email_starter_credits_and_usage(
    conn, broker, worker, settings
):
    publisher = Publisher(broker)
    publisher.publish(user_created("user_old", t=0, email="same@example.com", name="Same"))
    worker.drain()
    publisher.publish(user_deleted("user_old", t=10))
    worker.drain()
    publisher.publish(user_created("user_new", t=20, email="same@example.com", name="Same"))
    worker.drain()
    publisher.publish(usage("user_new", id="chat-after-resignup", credits=5))
    worker.drain()

    assert await user_row(conn, "user_new") == {
        "clerkId": "user_new", "email": "same@example.com", "name": "Same", "isActive": True,
        "credits": 95,
    }  # fmt: skip
    assert (await user_row(conn, "user_old"))["email"] is None
    assert len(await starter_movements(conn, "user_new")) == 1
    assert await conn.fetchval(
        "SELECT delta FROM worker.journal WHERE event_id = 'chat-after-resignup'"
    ) == -5
    assert await rejections(conn) == []
    assert dead_letters(settings, "users") == [] and dead_letters(settings, "usage") == []
    assert await find_balance_drift(conn) == []


async def test_email_held_by_another_user_creates_the_user_without_it_and_a_visible_note(
    conn, settings
):
    await apply(conn, settings, user_created("user_a", t=0, email="shared@example.com"))
    conflicting = user_created(
        "user_b", t=1, email="shared@example.com", name="Bia", id="msg_conflict"
    )
    assert await apply(conn, settings, conflicting) == [(APPLIED, "email_conflict")]
    assert await apply(conn, settings, conflicting) == [(DUPLICATE, None)]

    assert await user_row(conn, "user_b") == {
        "clerkId": "user_b", "email": None, "name": "Bia", "isActive": True, "credits": 100,
    }  # fmt: skip
    assert (await user_row(conn, "user_a"))["email"] == "shared@example.com"
    [note] = await rejections(conn, "msg_conflict")
    assert (note["reason"], note["event_type"]) == ("email_conflict", "user.created")
    assert "user_b" in note["detail"] and "shared@example.com" not in note["detail"]
    assert note["payload"]["clerkUserId"] == "user_b"  # the event is kept, as for any rejection
    assert await conn.fetchval(
        "SELECT count(*) FROM worker.event_log WHERE event_id = 'msg_conflict'"
    ) == 1
    assert len(await starter_movements(conn, "user_b")) == 1
    assert await find_balance_drift(conn) == []


async def test_an_update_to_a_taken_email_keeps_the_old_one_with_the_same_note(conn, settings):
    await apply(conn, settings, user_created("user_a", t=0, email="taken@example.com"))
    await apply(conn, settings, user_created("user_c", t=0, email="mine@example.com", name="Caio"))
    update = user_updated("user_c", t=5, email="taken@example.com", name="Caio Lima", id="msg_upd")
    assert await apply(conn, settings, update) == [(APPLIED, "email_conflict")]

    row = await user_row(conn, "user_c")
    assert (row["email"], row["name"]) == ("mine@example.com", "Caio Lima")
    [note] = await rejections(conn, "msg_upd")
    assert note["reason"] == "email_conflict" and "kept" in note["detail"]
    assert (await user_row(conn, "user_a"))["email"] == "taken@example.com"


async def test_a_conflicting_email_does_not_hold_back_its_batch_and_nothing_is_dead_lettered(
    conn, broker, worker, settings
):
    publisher = Publisher(broker)
    publisher.publish(user_created("user_a", t=0, email="taken@example.com"))
    worker.drain()
    publisher.publish_many([
        user_created("user_c", t=0, email="taken@example.com", id="msg_bad"),
        user_created("user_d", t=0, email="free@example.com"),
    ])  # fmt: skip
    worker.drain()
    publisher.publish(usage("user_c", id="chat-of-c", credits=7))
    worker.drain()

    assert (await user_row(conn, "user_d"))["email"] == "free@example.com"
    assert await user_row(conn, "user_c") == {
        "clerkId": "user_c", "email": None, "name": None, "isActive": True, "credits": 93,
    }  # fmt: skip
    assert [r["reason"] for r in await rejections(conn, "msg_bad")] == ["email_conflict"]
    assert dead_letters(settings, "users") == [] and dead_letters(settings, "usage") == []
    assert await find_balance_drift(conn) == []


@pytest.mark.parametrize("other_commits", [True, False], ids=["other-commits", "other-rolls-back"])
async def test_concurrent_sign_ups_with_one_email_both_get_an_account(
    conn, database_url, settings, other_commits
):
    """The other sign-up holds the address uncommitted: this one waits on it, then takes the
    address or goes without it, in the same transaction (a savepoint), never failing."""
    settings = settings.model_copy(update={"lock_wait_ms": 20_000})
    other = await db.connect(database_url)
    worker_conn = await db.connect(database_url)
    try:
        tx = other.transaction()
        await tx.start()
        first = user_created("user_x", t=0, email="race@example.com")
        second = user_created("user_y", t=0, email="race@example.com", id="msg_y")
        # applied in a savepoint of `tx`: not committed yet
        assert await apply(other, settings, first) == [(APPLIED, None)]
        racing = asyncio.create_task(apply(worker_conn, settings, second))
        await asyncio.sleep(0.5)
        assert not racing.done()  # waiting for the other transaction's row
        await (tx.commit() if other_commits else tx.rollback())
        outcome = await asyncio.wait_for(racing, 20)
    finally:
        await other.close()
        await worker_conn.close()

    if other_commits:
        assert outcome == [(APPLIED, "email_conflict")]
        assert (await user_row(conn, "user_x"))["email"] == "race@example.com"
        assert (await user_row(conn, "user_y"))["email"] is None
    else:
        assert outcome == [(APPLIED, None)]
        assert await user_row(conn, "user_x") is None
        assert (await user_row(conn, "user_y"))["email"] == "race@example.com"
    assert (await user_row(conn, "user_y"))["credits"] == 100
    assert await find_balance_drift(conn) == []


async def test_created_at_comes_from_clerk_and_defaults_to_the_insert_time(conn, settings):
    signed_up = datetime(2024, 3, 1, 9, 30, 15, 123000, tzinfo=UTC)
    await apply(conn, settings, {**user_created("user_t", t=0), "createdAt": signed_up.isoformat()})
    before = datetime.now(UTC).replace(tzinfo=None)
    await apply(conn, settings, user_created("user_now", t=0))
    later = {**user_updated("user_t", t=9), "createdAt": "2025-01-01T00:00:00Z"}
    await apply(conn, settings, later)  # the row exists: its createdAt stays

    created = {
        r["clerkId"]: r["createdAt"]
        for r in await conn.fetch('SELECT "clerkId", "createdAt" FROM "User"')
    }
    assert created["user_t"] == signed_up.replace(tzinfo=None)  # UTC, as Prisma stores it; kept
    assert before - timedelta(seconds=5) <= created["user_now"] <= before + timedelta(seconds=5)


async def _subscription_event(conn, event_id: str, clerk: str) -> None:
    """A billing event's row as the billing worker records it before the user exists."""
    await conn.execute(
        'INSERT INTO "SubscriptionEvent" (id, "userId", "clerkUserId", status, "eventType", metadata) '
        "VALUES ($1, NULL, $2, 'CONFIRMED', 'PAYMENT_CONFIRMED', '{}')", event_id, clerk,
    )  # fmt: skip


@pytest.mark.parametrize("arrives", ["created", "updated"])
async def test_billing_events_recorded_before_the_user_get_its_id_when_it_arrives(
    conn, broker, worker, arrives
):
    await _subscription_event(conn, "evt_early_1", "user_se")
    await _subscription_event(conn, "evt_early_2", "user_se")
    await _subscription_event(conn, "evt_other", "user_other")
    owners = 'SELECT id, "userId" FROM "SubscriptionEvent" ORDER BY id'
    assert [r["userId"] for r in await conn.fetch(owners)] == [None, None, None]

    event = user_created("user_se", t=0) if arrives == "created" else user_updated("user_se", t=0)
    Publisher(broker).publish(event)  # the worker's role: it may update "SubscriptionEvent"
    worker.drain()

    the_user = await user_id(conn, "user_se")
    assert the_user is not None
    assert {r["id"]: r["userId"] for r in await conn.fetch(owners)} == {
        "evt_early_1": the_user, "evt_early_2": the_user, "evt_other": None,
    }  # fmt: skip
