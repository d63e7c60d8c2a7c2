"""Storage rules without servers: keys and hashes, the newest upload of a pathname, and the
ids the Vercel Blob ingress gives uploads."""

from __future__ import annotations

from datetime import UTC, datetime

from worker.blob_head import BlobHead
from worker.domain.storage import claim_key, superseded
from worker.events import validate_event
from worker.ingress.webhooks.vercel_blob import to_storage_event
from worker.repo.storage import LiveObject

T = datetime(2026, 11, 1, 12, 0)


def _delete(clerk: str, deleted_at: str) -> dict:
    return {"type": "storage.object_deleted", "id": "obj", "clerkUserId": clerk, "deletedAt": deleted_at}


def test_a_delete_is_keyed_per_object_and_user_and_hashed_without_its_time():
    first = validate_event(_delete("owner", "2026-11-01T12:00:00Z"))
    retry = validate_event(_delete("owner", "2026-11-01T13:00:00Z"))
    intruder = validate_event(_delete("intruder", "2026-11-01T12:00:00Z"))
    assert claim_key(first) == claim_key(retry) == "storage.object_deleted/obj/owner"
    assert first.payload_hash() == retry.payload_hash()  # a retry is a duplicate, not a conflict
    assert claim_key(intruder) == "storage.object_deleted/obj/intruder"


def test_a_create_is_keyed_by_its_object_id_and_may_come_without_a_size():
    event = validate_event({"type": "storage.object_created", "id": "blob_1", "clerkUserId": "u",
                            "url": "https://s/a.png", "pathname": "a.png", "name": "a.png"})  # fmt: skip
    assert (claim_key(event), event.size) == ("blob_1", None)


def test_the_newest_upload_of_a_pathname_stays_live():
    new, old = LiveObject("new", T.replace(minute=5)), LiveObject("old", T)
    assert superseded(new, True, []) == ([], new.created_at)
    assert superseded(new, True, [old]) == (["old"], new.created_at)  # replaced at the new createdAt
    assert superseded(old, True, [new]) == (["old"], new.created_at)  # late and older: superseded
    assert superseded(LiveObject("tie", T), True, [old]) == (["old"], T)  # a tie: the one landing now
    # born deleted (its owner's delete came first): it still replaces what it overwrote
    assert superseded(new, False, [old]) == (["old"], new.created_at)


BLOB = {"url": "https://s.public.blob.vercel-storage.com/u/a.png", "pathname": "u/a.png",
        "contentType": "image/png"}  # fmt: skip
TOKEN = {"clerkUserId": "user_1"}


def test_the_same_callback_is_the_same_upload_and_an_overwrite_is_another():
    head = BlobHead(10, '"e1"', datetime(2026, 11, 1, 12, tzinfo=UTC))
    event = to_storage_event(BLOB, TOKEN, 10, head)
    assert to_storage_event(BLOB, TOKEN, 10, head) == event
    assert event["createdAt"] == "2026-11-01T12:00:00+00:00" and event["size"] == 10
    overwritten = BlobHead(12, '"e2"', datetime(2026, 11, 1, 12, 1, tzinfo=UTC))
    assert to_storage_event(BLOB, TOKEN, 12, overwritten)["id"] != event["id"]
    # the same bytes uploaded again later (same etag and size): another upload
    again = BlobHead(10, '"e1"', datetime(2026, 11, 1, 12, 2, tzinfo=UTC))
    assert to_storage_event(BLOB, TOKEN, 10, again)["id"] != event["id"]
    # no HEAD: the size (from tokenPayload) still tells overwrites apart
    assert to_storage_event(BLOB, TOKEN, 10)["id"] != to_storage_event(BLOB, TOKEN, 12)["id"]
    # the callback's own etag and uploadedAt come first
    own = {**BLOB, "etag": '"cb"', "uploadedAt": "2026-11-01T11:59:59.500Z"}
    assert to_storage_event(own, TOKEN, 10, head)["createdAt"] == "2026-11-01T11:59:59.500000+00:00"


def test_a_callback_without_any_size_becomes_an_event_without_size():
    event = to_storage_event(BLOB, TOKEN, None)
    assert "size" not in event and "createdAt" not in event
    assert validate_event(event).size is None
