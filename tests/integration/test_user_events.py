"""Clerk user events through the real worker: any arrival order ends in the same state."""

from __future__ import annotations

import itertools

import pytest

from tests.integration.family_helpers import (
    dead_letters,
    user_created,
    user_deleted,
    user_row,
    user_updated,
)
from tests.integration.helpers import count
from worker.domain.each import apply_each
from worker.domain.users import USERS
from worker.ledger.decide import APPLIED, DUPLICATE
from worker.publisher import Publisher
from worker.repo.reconcile import find_balance_drift

CREATED = user_created("user_1", t=0, email="ana@example.com", name="Ana")
UPDATED = user_updated("user_1", t=10, email="ana.silva@example.com", name="Ana Silva")
DELETED = user_deleted("user_1", t=20)


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
        "clerkId": "user_1", "email": "ana.silva@example.com", "name": "Ana Silva",
        "isActive": False, "credits": 100,
    }  # fmt: skip
    assert await count(conn, '"User"') == 1
    assert await find_balance_drift(conn) == []


@pytest.mark.parametrize("first", ["created", "updated"])
async def test_an_older_profile_never_overwrites_a_newer_one(conn, settings, first):
    older = user_created("user_2", t=0, email="old@example.com", name="Old")
    newer = user_updated("user_2", t=5, email="new@example.com", name="New")
    for event in [older, newer] if first == "created" else [newer, older]:
        await apply_each(conn, [event], USERS, settings)

    assert await user_row(conn, "user_2") == {
        "clerkId": "user_2", "email": "new@example.com", "name": "New", "isActive": True, "credits": 100,
    }  # fmt: skip


async def test_deleted_before_created_ends_inactive_and_the_user_is_never_reactivated(
    conn, settings
):
    await apply_each(conn, [user_deleted("user_3", t=50)], USERS, settings)
    assert await user_row(conn, "user_3") is None  # nothing to deactivate yet: remembered
    await apply_each(conn, [user_created("user_3", t=0, email="late@example.com")], USERS, settings)
    await apply_each(conn, [user_updated("user_3", t=100, name="Renamed")], USERS, settings)

    row = await user_row(conn, "user_3")
    assert row["isActive"] is False and row["name"] == "Renamed" and row["credits"] == 100


async def test_same_webhook_twice_creates_one_user_and_grants_starter_credits_once(conn, settings):
    settings = settings.model_copy(update={"starter_credits": 250})
    event = user_created("user_4", t=0, email="twice@example.com", id="msg_twice")
    first = await apply_each(conn, [event], USERS, settings)
    second = await apply_each(conn, [event, event], USERS, settings)

    assert [o.status for o in first.outcomes + second.outcomes] == [APPLIED, DUPLICATE, DUPLICATE]
    assert (await user_row(conn, "user_4"))["credits"] == 250
    assert await count(conn, '"CreditBalance"') == 1
    assert await find_balance_drift(conn) == []


async def test_email_of_another_user_is_dead_lettered_with_its_reason_and_writes_nothing(
    conn, broker, worker, settings
):
    publisher = Publisher(broker)
    publisher.publish(user_created("user_a", t=0, email="shared@example.com"))
    worker.drain()
    publisher.publish(user_created("user_b", t=1, email="shared@example.com", id="msg_conflict"))
    worker.drain()

    assert await user_row(conn, "user_b") is None
    assert await count(conn, '"CreditBalance"') == 1
    assert (
        await conn.fetchval("SELECT count(*) FROM worker.event_log WHERE event_id = 'msg_conflict'")
        == 0
    )
    assert (
        await conn.fetchval("SELECT count(*) FROM worker.user_state WHERE clerk_user_id = 'user_b'")
        == 0
    )
    [dead] = dead_letters(settings, "users")
    assert dead["options"]["dead_letter_reason"] == "email_conflict"
    assert dead["args"][0][0]["id"] == "msg_conflict"


async def test_a_conflicting_event_does_not_hold_back_the_rest_of_its_batch(
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

    assert (await user_row(conn, "user_d"))["email"] == "free@example.com"
    assert await user_row(conn, "user_c") is None
    [dead] = dead_letters(settings, "users")
    assert [e["id"] for e in dead["args"][0]] == ["msg_bad"]
