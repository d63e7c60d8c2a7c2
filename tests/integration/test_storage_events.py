"""Storage events: objects inserted once, soft-deleted once and only by their owner (whose
delete no other user's can use up), one live row per user and pathname, and creates that wait
durably (unknown user, no size) instead of dead-lettering."""

from __future__ import annotations

import random
from datetime import timedelta

from tests.integration.family_helpers import naive, object_created, object_deleted
from tests.integration.helpers import T0, count, make_user, rejections, waiting_rows
from worker.domain.each import apply_each
from worker.domain.storage import STORAGE
from worker.ledger.decide import APPLIED, DUPLICATE, REJECTED, WAITING
from worker.publisher import Publisher
from worker.repo.storage import StorageUsage, storage_usage_by_user

AVATAR = "users/user_s/avatar.png"


async def apply(conn, settings, *events):
    result = await apply_each(conn, list(events), STORAGE, settings)
    return [(o.status, o.reason) for o in result.outcomes]


async def deleted_at(conn, object_id):
    return await conn.fetchval('SELECT "deletedAt" FROM "StorageObject" WHERE id = $1', object_id)


async def live_rows(conn, clerk, pathname):
    rows = await conn.fetch(
        'SELECT id, size FROM "StorageObject" WHERE "clerkUserId" = $1 AND pathname = $2 '
        'AND "deletedAt" IS NULL', clerk, pathname,
    )  # fmt: skip
    return [(r["id"], r["size"]) for r in rows]


def upload(object_id, clerk="user_s", *, pathname=AVATAR, size=1000, t=0):
    """An upload to a fixed pathname (Vercel Blob `allowOverwrite`, e.g. an avatar)."""
    return {**object_created(object_id, clerk, size=size, t=t), "pathname": pathname}


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


async def test_a_non_owners_delete_is_refused_and_the_owners_delete_then_applies(conn, broker, worker):
    await make_user(conn, "owner")
    await make_user(conn, "intruder")
    publisher = Publisher(broker)
    publisher.publish(object_created("obj2", "owner"))
    worker.drain()
    publisher.publish(object_deleted("obj2", "intruder", t=30))
    worker.drain()
    assert await deleted_at(conn, "obj2") is None
    [refusal] = await rejections(conn, "storage.object_deleted/obj2/intruder")
    assert refusal["reason"] == "not_owner"

    publisher.publish(object_deleted("obj2", "owner", t=60))
    worker.drain()

    assert await deleted_at(conn, "obj2") == naive(T0 + timedelta(seconds=60))  # deleted once, by its owner
    assert await rejections(conn, "storage.object_deleted/obj2/owner") == []
    decided = await conn.fetch("SELECT event_id FROM worker.event_log ORDER BY 1")
    assert [r["event_id"] for r in decided] == [
        "obj2", "storage.object_deleted/obj2/intruder", "storage.object_deleted/obj2/owner",
    ]  # fmt: skip


async def test_an_owners_delete_retried_with_another_deleted_at_is_a_duplicate(conn, settings):
    await make_user(conn, "user_s")
    assert await apply(conn, settings, object_created("obj5", "user_s")) == [(APPLIED, None)]
    delete = object_deleted("obj5", "user_s", t=60)
    assert await apply(conn, settings, delete, delete, object_deleted("obj5", "user_s", t=120)) == [
        (APPLIED, None), (DUPLICATE, None), (DUPLICATE, None),
    ]  # fmt: skip
    assert await deleted_at(conn, "obj5") == naive(T0 + timedelta(seconds=60))
    assert await rejections(conn) == []


async def test_delete_before_create_ends_deleted_once_the_create_lands(conn, broker, worker):
    await make_user(conn, "user_s")
    publisher = Publisher(broker)
    publisher.publish(object_deleted("obj3", "user_s", t=60))
    worker.drain()
    assert await count(conn, '"StorageObject"') == 0
    publisher.publish(object_created("obj3", "user_s", t=0))
    worker.drain()

    assert await deleted_at(conn, "obj3") is not None
    resolved = "SELECT resolved FROM worker.storage_tombstone WHERE object_id = 'obj3'"
    assert await conn.fetchval(resolved) == "applied"


async def test_early_deletes_of_a_non_owner_and_of_the_owner_are_each_decided_when_the_object_lands(
    conn, settings
):
    await make_user(conn, "owner")
    assert await apply(conn, settings, object_deleted("obj4", "intruder", t=30),
                       object_deleted("obj4", "owner", t=60)) == [
        (APPLIED, "before_create"), (APPLIED, "before_create"),
    ]  # fmt: skip
    assert await apply(conn, settings, object_created("obj4", "owner")) == [
        (APPLIED, "deleted_before_created")
    ]

    assert await deleted_at(conn, "obj4") == naive(T0 + timedelta(seconds=60))
    [refusal] = await rejections(conn, "storage.object_deleted/obj4/intruder")
    assert refusal["reason"] == "not_owner"
    tombstones = await conn.fetch(
        "SELECT clerk_user_id, resolved FROM worker.storage_tombstone ORDER BY 1"
    )
    assert [tuple(r) for r in tombstones] == [("intruder", "refused"), ("owner", "applied")]


async def test_an_early_delete_from_another_user_is_refused_when_the_object_lands(conn, settings):
    await make_user(conn, "owner")
    assert await apply(conn, settings, object_deleted("obj4b", "intruder")) == [
        (APPLIED, "before_create")
    ]
    assert await apply(conn, settings, object_created("obj4b", "owner")) == [(APPLIED, None)]

    assert await deleted_at(conn, "obj4b") is None
    [refusal] = await rejections(conn, "storage.object_deleted/obj4b/intruder")
    assert refusal["reason"] == "not_owner"


async def test_a_create_for_an_unknown_user_waits_durably_then_applies(conn, settings):
    assert await apply(conn, settings, object_created("obj6", "user_late")) == [
        (WAITING, "unknown_user")
    ]
    [row] = await waiting_rows(conn)
    assert (row["event_id"], row["queue"], row["state"], row["reason"], row["waits_for"]) == (
        "obj6", "storage", "waiting", "unknown_user", "user:user_late",
    )  # fmt: skip
    assert await count(conn, "worker.event_log") == 0

    await make_user(conn, "user_late")
    assert await apply(conn, settings, object_created("obj6", "user_late")) == [(APPLIED, None)]


async def test_a_create_without_a_size_whose_blob_cannot_be_read_waits_for_it(conn, settings):
    await make_user(conn, "user_s")
    event = {**object_created("obj7", "user_s"), "url": "http://127.0.0.1:9/obj7.png"}
    del event["size"]
    assert await apply(conn, settings, event) == [(WAITING, "no_size")]

    [row] = await waiting_rows(conn)
    assert (row["event_id"], row["state"], row["reason"], row["waits_for"]) == (
        "obj7", "waiting", "no_size", "blob:obj7",
    )  # fmt: skip
    assert "ConnectError" in row["detail"]
    assert await count(conn, '"StorageObject"') == 0


async def test_a_reupload_to_the_same_pathname_replaces_the_live_row(conn, settings):
    await make_user(conn, "user_s")
    assert await apply(conn, settings, upload("av1", size=100, t=0)) == [(APPLIED, None)]
    assert await apply(conn, settings, upload("av2", size=250, t=10)) == [(APPLIED, "replaced")]

    assert await live_rows(conn, "user_s", AVATAR) == [("av2", 250)]  # one live row: the new size
    assert await deleted_at(conn, "av1") == naive(T0 + timedelta(seconds=10))  # the new createdAt
    assert await storage_usage_by_user(conn) == [StorageUsage("user_s", 1, 250)]


async def test_upload_delete_reupload_of_the_same_pathname_leaves_one_live_row(conn, settings):
    await make_user(conn, "user_s")
    assert await apply(conn, settings, upload("av1", size=100, t=0),
                       object_deleted("av1", "user_s", t=5), upload("av2", size=300, t=10)) == [
        (APPLIED, None), (APPLIED, None), (APPLIED, None),
    ]  # fmt: skip

    assert await live_rows(conn, "user_s", AVATAR) == [("av2", 300)]
    assert await deleted_at(conn, "av1") == naive(T0 + timedelta(seconds=5))  # the owner's delete, kept


async def test_an_older_upload_arriving_late_does_not_replace_the_newer_one(conn, settings):
    await make_user(conn, "user_s")
    assert await apply(conn, settings, upload("new", size=2, t=20), upload("old", size=1, t=10)) == [
        (APPLIED, None), (APPLIED, "superseded"),
    ]  # fmt: skip
    assert await live_rows(conn, "user_s", AVATAR) == [("new", 2)]
    assert await deleted_at(conn, "old") == naive(T0 + timedelta(seconds=20))


async def test_other_users_and_other_pathnames_are_left_alone(conn, settings):
    await make_user(conn, "user_s")
    await make_user(conn, "user_t")
    await apply(conn, settings, upload("s1"), upload("t1", "user_t"), upload("s2", pathname="users/user_s/cv.pdf"))
    assert await count(conn, '"StorageObject" WHERE "deletedAt" IS NULL') == 3


async def test_concurrent_uploads_of_one_pathname_in_any_order_leave_the_newest_live(conn, broker, worker):
    await make_user(conn, "user_s")
    uploads = [upload(f"v{n}", size=n, t=n) for n in range(12)]
    random.Random(16).shuffle(uploads)
    Publisher(broker, batch_size=1).publish_many(uploads)  # one message each: concurrent threads
    worker.drain()

    assert await live_rows(conn, "user_s", AVATAR) == [("v11", 11)]
    assert await count(conn, '"StorageObject"') == 12
    replaced = await conn.fetch('SELECT "createdAt", "deletedAt" FROM "StorageObject" WHERE id <> $1', "v11")
    assert all(r["createdAt"] < r["deletedAt"] <= naive(T0 + timedelta(seconds=11)) for r in replaced)


async def test_live_bytes_and_count_per_user_leave_out_deleted_objects(conn, settings):
    await make_user(conn, "a")
    await make_user(conn, "b")
    await apply(conn, settings, object_created("a1", "a", size=100), object_created("a2", "a", size=50),
                object_created("b1", "b", size=7), object_deleted("a2", "a"))  # fmt: skip

    assert await storage_usage_by_user(conn) == [StorageUsage("a", 1, 100), StorageUsage("b", 1, 7)]
    assert await storage_usage_by_user(conn, ["b"]) == [StorageUsage("b", 1, 7)]

