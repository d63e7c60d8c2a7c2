"""Provider payload -> our events: the mapping rules of the webhooks, without servers."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from worker.ingress.http import HttpError
from worker.ingress.webhooks.asaas import (
    INVALID,
    UNREADABLE,
    Refused,
    parse_asaas_datetime,
    parse_external_reference,
    read_payload,
    refusal,
    to_billing_event,
)
from worker.ingress.webhooks.clerk import full_name, primary_email, to_user_event
from worker.ingress.webhooks.vercel_blob import object_id, parse_upload, to_storage_event


@pytest.mark.parametrize(("text", "expected"), [
    ("2024-06-12 16:45:03", datetime(2024, 6, 12, 19, 45, 3, tzinfo=UTC)),  # São Paulo is UTC-3
    ("2024-06-12", datetime(2024, 6, 12, 3, 0, tzinfo=UTC)),
    ("16/10/2024", datetime(2024, 10, 16, 3, 0, tzinfo=UTC)),
    ("16/10/2024 11:11:04", datetime(2024, 10, 16, 14, 11, 4, tzinfo=UTC)),
    ("2018-12-01 10:00:00", datetime(2018, 12, 1, 12, 0, tzinfo=UTC)),  # Brazil had DST then: UTC-2
    ("2024-06-12T16:45:03+00:00", datetime(2024, 6, 12, 16, 45, 3, tzinfo=UTC)),
])  # fmt: skip
def test_asaas_dates_are_sao_paulo_time_turned_into_utc(text, expected):
    assert parse_asaas_datetime(text) == expected


@pytest.mark.parametrize(("reference", "expected"), [
    ("user_2abc", ("user_2abc", None)),
    ('{"clerkUserId": "user_2abc", "planId": "plan_pro"}', ("user_2abc", "plan_pro")),
    ('{"clerkUserId": "user_2abc"}', ("user_2abc", None)),
    ('{"planId": 7}', (None, "7")),
    ("{not json", (None, None)),
    ("Pedido 056984 & more", (None, None)),
    (None, (None, None)),
    ("", (None, None)),
])  # fmt: skip
def test_external_reference_is_a_clerk_user_id_or_json(reference, expected):
    assert parse_external_reference(reference) == expected


def test_asaas_payment_event_keeps_the_id_with_its_ampersand_and_the_whole_payload():
    payload = {"id": "evt_1&2", "event": "PAYMENT_CONFIRMED", "dateCreated": "2024-01-02 03:04:05", "extra": 1,
               "payment": {"id": "pay_1", "subscription": "sub_1", "status": "CONFIRMED", "paymentLink": "123",
                           "externalReference": "user_x"}}  # fmt: skip
    event = to_billing_event(payload)
    assert event["id"] == "evt_1&2" and event["metadata"] == payload
    assert (event["paymentId"], event["subscriptionId"], event["paymentLinkId"]) == (
        "pay_1",
        "sub_1",
        "123",
    )
    assert (event["clerkUserId"], event["status"], event["occurredAt"]) == (
        "user_x",
        "CONFIRMED",
        "2024-01-02T06:04:05+00:00",
    )


def test_asaas_event_time_falls_back_to_the_payment_dates_and_a_missing_time_is_refused():
    payload = {
        "id": "evt_2&1",
        "event": "PAYMENT_RECEIVED",
        "payment": {"id": "p", "paymentDate": "05/03/2024"},
    }
    assert to_billing_event(payload)["occurredAt"] == "2024-03-05T03:00:00+00:00"
    with pytest.raises(Refused) as refused:
        to_billing_event({"id": "evt_3&1", "event": "PAYMENT_RECEIVED", "payment": {"id": "p"}})
    assert (refused.value.reason, refused.value.detail) == (
        INVALID, "dateCreated: missing, and no date in the event's object")


@pytest.mark.parametrize(("body", "reason", "named"), [
    (b"not json {", UNREADABLE, "not valid JSON"),
    (b"\xff\xfe\x00{", UNREADABLE, "not valid JSON"),
    (b"[" * 100_000 + b"]" * 100_000, UNREADABLE, "not valid JSON"),
    (b'[{"id": "evt_1&1", "event": "PAYMENT_RECEIVED"}]', UNREADABLE, "not a JSON object"),
    (b'{"id": "evt_1&1"}', UNREADABLE, "event:"),
    (b'{"id": "evt_1&1", "event": 7}', UNREADABLE, "event:"),
    (b'{"event": "PAYMENT_RECEIVED", "dateCreated": "2024-01-01 10:00:00"}', UNREADABLE, "id:"),
    (b'{"id": "evt 1 with spaces", "event": "PAYMENT_RECEIVED"}', UNREADABLE, "id:"),
    (b'{"id": "evt_1&1", "event": "PAYMENT_RECEIVED", "payment": "pay_1"}', INVALID, "payment"),
    (b'{"id": "evt_1&1", "event": "PAYMENT_RECEIVED", "dateCreated": "tomorrow-ish"}', INVALID,
     "dateCreated: not an Asaas date"),
    (b'{"id": "evt_1&1", "event": "PAYMENT_received", "dateCreated": "2024-01-01 10:00:00"}', INVALID,
     "eventType"),
    (b'{"id": "evt_1&1", "event": "PAYMENT_RECEIVED", "dateCreated": "2024-01-01 10:00:00",'
     b' "payment": {"id": "pay with spaces"}}', INVALID, "paymentId"),
])  # fmt: skip
def test_unreadable_asaas_payloads_are_refused_with_a_reason_that_names_what_is_wrong(
    body, reason, named
):
    with pytest.raises(Refused) as refused:
        to_billing_event(read_payload(body))
    assert refused.value.reason == reason and named in refused.value.detail
    assert "spaces" not in refused.value.detail and "tomorrow" not in refused.value.detail  # no values


def test_a_refused_asaas_payload_is_keyed_by_its_event_id_else_by_a_hash_of_the_body():
    readable = b'{"id": "evt_9&9", "event": "PAYMENT_RECEIVED", "payment": "x"}'
    stored = refusal(readable, Refused(INVALID, "payment: Input should be a valid dictionary"))
    assert stored == {
        "type": "ingress.rejection", "id": "evt_9&9", "eventType": "billing.event",
        "reason": INVALID, "detail": "payment: Input should be a valid dictionary",
        "payload": {"id": "evt_9&9", "event": "PAYMENT_RECEIVED", "payment": "x"},
    }  # fmt: skip
    garbage = refusal(b"not json", Refused(UNREADABLE, "the body is not valid JSON"))
    assert garbage["id"] == refusal(b"not json", Refused(UNREADABLE, "x"))["id"]
    assert garbage["id"].startswith("asaas_body:") and garbage["payload"] == "not json"
    assert refusal(b"not json!", Refused(UNREADABLE, "x"))["id"] != garbage["id"]
    huge = refusal(b'{"id": 1, "blob": "' + b"x" * 200_000 + b'"}', Refused(UNREADABLE, "x"))
    assert huge["payload"]["truncated"] is True and len(huge["payload"]["preview"]) == 1000


def test_asaas_events_we_do_not_record_are_ignored_whatever_else_they_hold():
    assert to_billing_event({"event": "TRANSFER_CREATED"}) is None
    assert to_billing_event({"id": "evt_t&1", "event": "INVOICE_CREATED", "invoice": []}) is None


def test_clerk_user_payload_gives_primary_email_and_full_name():
    data = {"id": "user_1", "first_name": " Ana ", "last_name": None, "primary_email_address_id": "b",
            "email_addresses": [{"id": "a", "email_address": "a@x.io"}, {"id": "b", "email_address": "b@x.io"}],
            "updated_at": 1_700_000_000_000}  # fmt: skip
    assert (primary_email(data), full_name(data)) == ("b@x.io", "Ana")
    assert full_name({"username": "ana_s"}) == "ana_s" and primary_email({}) is None
    event = to_user_event("msg_1", {"type": "user.updated", "data": data, "timestamp": 1})
    assert event["updatedAt"] == "2023-11-14T22:13:20+00:00" and event["id"] == "msg_1"
    assert "createdAt" not in event  # no created_at: the worker's insert time
    signed_up = to_user_event("msg_4", {"type": "user.created", "timestamp": 1,
                                        "data": {**data, "created_at": 1_600_000_000_123}})  # fmt: skip
    assert signed_up["createdAt"] == "2020-09-13T12:26:40.123000+00:00"
    deleted = to_user_event("msg_2", {"type": "user.deleted", "data": {"id": "user_1", "deleted": True},
                                      "timestamp": 1_700_000_000_000})  # fmt: skip
    assert deleted == {"type": "user.deleted", "id": "msg_2", "clerkUserId": "user_1",
                       "deletedAt": "2023-11-14T22:13:20+00:00"}  # fmt: skip
    assert to_user_event("msg_3", {"type": "email.created", "data": {}}) is None


def test_blob_object_id_is_stable_per_pathname_and_etag():
    assert object_id("a/b.png", None) == object_id("a/b.png", None)
    assert (
        object_id("a/b.png", None) != object_id("a/b.png", '"etag-1"') != object_id("a/c.png", None)
    )


def test_blob_callback_needs_a_clerk_user_in_the_token_payload():
    callback = {"type": "blob.upload-completed", "payload": {
        "blob": {"url": "https://s/a.png", "pathname": "u/a.png", "contentType": "image/png"},
        "tokenPayload": '{"clerkUserId": "user_1", "size": 12}'}}  # fmt: skip
    blob, token = parse_upload(callback)
    event = to_storage_event(blob, token, 12)
    assert (event["clerkUserId"], event["name"], event["size"]) == ("user_1", "a.png", 12)
    callback["payload"]["tokenPayload"] = '{"size": 12}'
    with pytest.raises(HttpError):
        parse_upload(callback)
    assert parse_upload({"type": "blob.generate-client-token"}) is None
