"""Storage events: objects inserted once, soft-deleted once, only by their owner."""

from __future__ import annotations

from tests.integration.family_helpers import object_created, object_deleted
from tests.integration.helpers import count, make_user, rejections
from worker.domain.each import apply_each
from worker.domain.storage import STORAGE
from worker.ledger.decide import APPLIED, DUPLICATE, REJECTED, RETRY
from worker.publisher import Publisher
from worker.repo.storage import StorageUsage, storage_usage_by_user


async def apply(conn, settings, *events):
    result = await apply_each(conn, list(events), STORAGE, settings)
    return [(o.status, o.reason) for o in result.outcomes]


async def deleted_at(conn, object_id):
    return await conn.fetchval('SELECT "deletedAt" FROM "StorageObject" WHERE id = $1', object_id)


async def test_object_created_twice_is_inserted_once(conn, broker, worker):
    await make_user(conn, "user_s")
    publisher = Publisher(broker)
    for _ in range(3):
        publisher.publish(object_created("obj1", "user_s", size=2048))
    worker.drain()

    row = await conn.fetchrow('SELECT * FROM "StorageObject" WHERE id = $1', "obj1")
    assert (row["clerkUserId"], row["size"], row["provider"], row["deletedAt"]) == (
        "user_s",
        2048,
        "vercel_blob",
        None,
    )
    assert await count(conn, '"StorageObject"') == 1


async def test_delete_by_another_user_is_rejected_and_changes_nothing(conn, broker, worker):
    await make_user(conn, "owner")
    await make_user(conn, "intruder")
    publisher = Publisher(broker)
    publisher.publish(object_created("obj2", "owner"))
    worker.drain()
    publisher.publish(object_deleted("obj2", "intruder"))
    worker.drain()

    assert await deleted_at(conn, "obj2") is None
    [refusal] = await rejections(conn, "storage.object_deleted/obj2")
    assert refusal["reason"] == "not_owner"


async def test_delete_before_create_ends_deleted_once_the_create_lands(conn, broker, worker):
    await make_user(conn, "user_s")
    publisher = Publisher(broker)
    publisher.publish(object_deleted("obj3", "user_s", t=60))
    worker.drain()
    assert await count(conn, '"StorageObject"') == 0
    publisher.publish(object_created("obj3", "user_s", t=0))
    worker.drain()

    assert await deleted_at(conn, "obj3") is not None
    assert (
        await conn.fetchval(
            "SELECT resolved FROM worker.storage_tombstone WHERE object_id = 'obj3'"
        )
        == "applied"
    )


async def test_an_early_delete_from_another_user_is_refused_when_the_object_lands(conn, settings):
    await make_user(conn, "owner")
    assert await apply(conn, settings, object_deleted("obj4", "intruder")) == [
        (APPLIED, "before_create")
    ]
    assert await apply(conn, settings, object_created("obj4", "owner")) == [(APPLIED, None)]

    assert await deleted_at(conn, "obj4") is None
    [refusal] = await rejections(conn, "storage.object_deleted/obj4")
    assert refusal["reason"] == "not_owner"


async def test_delete_twice_is_one_soft_delete_and_create_for_an_unknown_user_waits(conn, settings):
    assert await apply(conn, settings, object_created("obj5", "user_late")) == [
        (RETRY, "unknown_user")
    ]
    await make_user(conn, "user_late")
    delete = object_deleted("obj5", "user_late", t=60)
    assert await apply(conn, settings, object_created("obj5", "user_late"), delete, delete) == [
        (APPLIED, None), (APPLIED, None), (DUPLICATE, None),
    ]  # fmt: skip
    first = await deleted_at(conn, "obj5")
    later = object_deleted("obj5", "user_late", t=120)
    assert await apply(conn, settings, later) == [(REJECTED, "idempotency_conflict")]
    assert await deleted_at(conn, "obj5") == first


async def test_live_bytes_and_count_per_user_leave_out_deleted_objects(conn, settings):
    await make_user(conn, "a")
    await make_user(conn, "b")
    await apply(conn, settings, object_created("a1", "a", size=100), object_created("a2", "a", size=50),
                object_created("b1", "b", size=7), object_deleted("a2", "a"))  # fmt: skip

    assert await storage_usage_by_user(conn) == [StorageUsage("a", 1, 100), StorageUsage("b", 1, 7)]
    assert await storage_usage_by_user(conn, ["b"]) == [StorageUsage("b", 1, 7)]
