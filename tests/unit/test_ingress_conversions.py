"""Provider payload -> our events: the mapping rules of the webhooks, without servers."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from worker.ingress.http import HttpError
from worker.ingress.webhooks.asaas import (
    INVALID,
    UNREADABLE,
    ExternalReference,
    Refused,
    parse_asaas_datetime,
    parse_external_reference,
    read_payload,
    refusal,
    to_billing_event,
    to_cents,
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
    ("user_2abc", ("user_2abc", None, None)),
    ('{"clerkUserId": "user_2abc", "planId": "plan_pro"}', ("user_2abc", "plan_pro", None)),
    ('{"clerkUserId": "user_2abc"}', ("user_2abc", None, None)),
    ('{"planId": 7}', (None, "7", None)),
    ('{"clerkUserId": "user_2abc", "planId": "pack_300", "installmentCount": 3}', ("user_2abc", "pack_300", 3)),
    ('{"clerkUserId": "user_2abc", "installmentCount": "3"}', ("user_2abc", None, None)),  # not an int
    ('{"installmentCount": 0, "planId": true}', (None, None, None)),
    ('["user_2abc"]', (None, None, None)),
    ("{not json", (None, None, None)),
    ("Pedido 056984 & more", (None, None, None)),
    (None, (None, None, None)),
    ("", (None, None, None)),
])  # fmt: skip
def test_external_reference_is_a_clerk_user_id_or_json(reference, expected):
    assert parse_external_reference(reference) == ExternalReference(*expected)
    assert parse_external_reference(reference).clerk_user_id == expected[0]


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


# --- the fields of issue 17: customer, installments, money, chargeback, subscription state ---


def asaas_payment(event: str = "PAYMENT_RECEIVED", **fields) -> dict:
    """An Asaas payment webhook as documented, with `fields` replacing the payment's."""
    payment = {"object": "payment", "id": "pay_080225913252", "dateCreated": "2024-06-12",
               "customer": "cus_G7Dvo4iphUNk", "subscription": None, "installment": None,
               "installmentNumber": None, "paymentLink": None, "value": 49.9, "netValue": 47.41,
               "originalValue": None, "description": "Plano Pro", "billingType": "CREDIT_CARD",
               "status": "RECEIVED", "dueDate": "2024-06-12", "paymentDate": "2024-06-12",
               "confirmedDate": "2024-06-12", "externalReference": "user_x", "deleted": False,
               "refunds": None, "chargeback": None}  # fmt: skip
    return {"id": "evt_1&2", "event": event, "dateCreated": "2024-06-12 16:45:03",
            "payment": {**payment, **fields}}  # fmt: skip


def asaas_subscription(event: str = "SUBSCRIPTION_UPDATED", **fields) -> dict:
    subscription = {"object": "subscription", "id": "sub_VXJBYgP2u0eO", "dateCreated": "16/10/2024",
                    "customer": "cus_G7Dvo4iphUNk", "paymentLink": None, "value": 479.0,
                    "nextDueDate": "22/11/2024", "cycle": "YEARLY", "description": "Plano Pro anual",
                    "billingType": "CREDIT_CARD", "deleted": False, "status": "ACTIVE",
                    "externalReference": '{"clerkUserId": "user_x", "planId": "plan_pro_yearly"}'}  # fmt: skip
    return {"id": "evt_6561b631fa5580caadd00bbe3b858607&9193", "event": event,
            "dateCreated": "2024-10-16 11:11:04", "subscription": {**subscription, **fields}}  # fmt: skip


NEW_FIELDS = ("customerId", "installmentId", "installmentNumber", "installmentCount", "valueCents",
              "refundedCents", "chargebackStatus", "paymentCreatedAt", "cycle", "nextDueDate")  # fmt: skip


def new_fields(event: dict) -> dict:
    return {key: event[key] for key in NEW_FIELDS if key in event}


@pytest.mark.parametrize(("reais", "cents"), [
    (49.9, 4990), (100, 10000), (0, 0), (19.99, 1999), (0.1, 10), (1.005, 101), (0.005, 1),
    (484.345, 48435), (1234567.89, 123456789),
])  # fmt: skip
def test_reais_become_integer_cents_rounded_half_up_from_the_decimal_asaas_wrote(reais, cents):
    assert to_cents(reais, "payment.value") == cents


@pytest.mark.parametrize("value", ["49.90", "49,90", True, [49.9], {"value": 49.9}, float("nan"),
                                   float("inf")])  # fmt: skip
def test_a_value_that_is_not_a_number_is_refused_naming_the_field_not_the_value(value):
    with pytest.raises(Refused) as refused:
        to_billing_event(asaas_payment(value=value))
    assert (refused.value.reason, refused.value.detail) == (INVALID, "payment.value: not a number")
    with pytest.raises(Refused) as refused:
        to_billing_event(asaas_subscription(value=value))
    assert (refused.value.reason, refused.value.detail) == (
        INVALID, "subscription.value: not a number")


def test_a_subscription_payment_carries_its_customer_value_and_creation_day():
    event = to_billing_event(asaas_payment(subscription="sub_VXJBYgP2u0eO"))
    assert new_fields(event) == {
        "customerId": "cus_G7Dvo4iphUNk", "valueCents": 4990,
        "paymentCreatedAt": "2024-06-12T03:00:00+00:00",  # midnight in São Paulo (UTC-3)
    }  # fmt: skip
    assert event["subscriptionId"] == "sub_VXJBYgP2u0eO"
    assert "valueCents" not in to_billing_event(asaas_payment(value=None))  # null: absent


@pytest.mark.parametrize(("created", "start_of_day"), [
    ("2024-06-12", "2024-06-12T03:00:00+00:00"),
    ("2024-06-12 23:59:59", "2024-06-12T03:00:00+00:00"),  # the day, not the time
    ("12/06/2024", "2024-06-12T03:00:00+00:00"),
    ("2018-12-01", "2018-12-01T02:00:00+00:00"),  # Brazil had DST then: UTC-2
    ("the twelfth", None), ("", None), (None, None), (20240612, None),
])  # fmt: skip
def test_payment_created_at_is_the_start_of_its_sao_paulo_day_and_an_unreadable_one_is_absent(
    created, start_of_day
):
    event = to_billing_event(asaas_payment(dateCreated=created))
    assert event.get("paymentCreatedAt") == start_of_day


def test_an_installment_payment_carries_its_plan_number_and_count_from_the_description():
    payload = asaas_payment("PAYMENT_CONFIRMED", installment="2765d086-c7c5-5cca-898a-4262d212587c",
                            installmentNumber=2, value=33.33, status="CONFIRMED",
                            description="Parcela 2 de 3. Pacote de créditos 300")  # fmt: skip
    event = to_billing_event(payload)
    assert (event["installmentId"], event["installmentNumber"], event["installmentCount"]) == (
        "2765d086-c7c5-5cca-898a-4262d212587c", 2, 3)
    assert event["valueCents"] == 3333 and "subscriptionId" not in event


@pytest.mark.parametrize(("description", "number", "reference", "count"), [
    ("Parcela 3 de 3. Este boleto refere-se a uma das parcelas", 3, "user_x", 3),
    ("parcela 1 de 12", 1, "user_x", 12),
    ("Pacote 300 créditos 2/4", 2, "user_x", 4),
    ("Pacote 300 créditos (1 of 6)", 1, "user_x", 6),
    ("Parcela 2 de 3.", None, "user_x", 3),  # no installmentNumber to compare with
    ("Parcela 2 de 3.", 3, "user_x", None),  # disagrees with installmentNumber
    ("Parcela 4 de 3.", None, "user_x", None),
    ("Vencimento 06/12/2024", 6, "user_x", None),  # a date, not a count
    ("Pacote de créditos", 1, "user_x", None),
    (None, 1, "user_x", None),
    ("Parcela 2 de 3.", 2, '{"clerkUserId": "user_x", "installmentCount": 6}', 6),  # the app's own word
    ("Pacote de créditos", 2, '{"clerkUserId": "user_x", "installmentCount": 6}', 6),
])  # fmt: skip
def test_installment_count_comes_from_the_reference_else_the_description_as_asaas_writes_it(
    description, number, reference, count
):
    payload = asaas_payment(installment="ins_1", installmentNumber=number, description=description,
                            externalReference=reference)  # fmt: skip
    assert to_billing_event(payload).get("installmentCount") == count


def test_only_an_installment_payment_reads_a_count_from_its_description():
    payload = asaas_payment(description="Plano Pro 2/3", installmentNumber=0)
    fields = new_fields(to_billing_event(payload))
    assert fields.keys() == {"customerId", "valueCents", "paymentCreatedAt"}
    payload["payment"]["externalReference"] = '{"clerkUserId": "user_x", "installmentCount": 3}'
    assert to_billing_event(payload)["installmentCount"] == 3


def test_refunded_cents_sum_the_refunds_that_are_not_cancelled():
    refunds = [
        {"dateCreated": "2024-06-20 10:28:40", "status": "DONE", "value": 10.0, "description": "Parcial",
         "transactionReceiptUrl": "https://www.asaas.com/comprovantes/6677732109104548"},
        {"dateCreated": "2024-06-21 09:00:00", "status": "CANCELLED", "value": 20.0, "description": None},
        {"dateCreated": "2024-06-22 09:00:00", "status": "PENDING", "value": 5.45, "description": None},
    ]  # fmt: skip
    event = to_billing_event(asaas_payment("PAYMENT_PARTIALLY_REFUNDED", refunds=refunds))
    assert (event["refundedCents"], event["valueCents"]) == (1545, 4990)
    only_cancelled = asaas_payment("PAYMENT_PARTIALLY_REFUNDED", refunds=refunds[1:2])
    assert to_billing_event(only_cancelled)["refundedCents"] == 0
    for nothing in (None, [], "DONE"):
        assert "refundedCents" not in to_billing_event(asaas_payment(refunds=nothing))


@pytest.mark.parametrize(("refunds", "detail"), [
    ([{"status": "DONE", "value": "10.00"}], "payment.refunds[0].value: not a number"),
    ([{"status": "DONE", "value": 1}, {"status": "DONE"}], "payment.refunds[1].value: not a number"),
    (["rf_1"], "payment.refunds[0]: not an object"),
])  # fmt: skip
def test_a_refund_that_cannot_be_read_is_refused(refunds, detail):
    with pytest.raises(Refused) as refused:
        to_billing_event(asaas_payment("PAYMENT_PARTIALLY_REFUNDED", refunds=refunds))
    assert (refused.value.reason, refused.value.detail) == (INVALID, detail)
    cancelled = asaas_payment(refunds=[{"status": "CANCELLED", "value": "x"}])
    assert to_billing_event(cancelled)["refundedCents"] == 0  # a cancelled refund's value is not read


@pytest.mark.parametrize(("chargeback", "status"), [
    ({"status": "REQUESTED", "reason": "PROCESS_ERROR"}, "REQUESTED"),
    ({"status": "DISPUTE_LOST", "reason": "NOT_RECOGNIZED"}, "DISPUTE_LOST"),
    ({"status": "", "reason": "x"}, None), ({"status": 7}, None), ({}, None), (None, None), ("REQUESTED", None),
])  # fmt: skip
def test_chargeback_status_is_the_payments_chargeback_status(chargeback, status):
    payload = asaas_payment(
        "PAYMENT_CHARGEBACK_REQUESTED", status="CHARGEBACK_REQUESTED", chargeback=chargeback
    )
    event = to_billing_event(payload)
    assert event.get("chargebackStatus") == status and event["status"] == "CHARGEBACK_REQUESTED"


def test_a_subscription_event_carries_its_customer_value_cycle_and_next_due_date():
    event = to_billing_event(asaas_subscription())
    assert new_fields(event) == {"customerId": "cus_G7Dvo4iphUNk", "valueCents": 47900, "cycle": "YEARLY",
                                 "nextDueDate": "2024-11-22T03:00:00+00:00"}  # fmt: skip
    assert (event["subscriptionId"], event["clerkUserId"], event["planId"], event["status"]) == (
        "sub_VXJBYgP2u0eO", "user_x", "plan_pro_yearly", "ACTIVE")
    assert to_billing_event(asaas_subscription(nextDueDate="2025-06-12"))["nextDueDate"] == (
        "2025-06-12T03:00:00+00:00")


@pytest.mark.parametrize("cycle", ["FORTNIGHTLY", "yearly", "", None, 12])
def test_a_cycle_we_do_not_know_stays_only_in_metadata(cycle):
    event = to_billing_event(asaas_subscription(cycle=cycle))
    assert "cycle" not in event and event["metadata"]["subscription"]["cycle"] == cycle


@pytest.mark.parametrize("next_due", ["someday", "31/02/2025", "", None, 20251122])
def test_a_next_due_date_that_cannot_be_read_is_absent(next_due):
    assert "nextDueDate" not in to_billing_event(asaas_subscription(nextDueDate=next_due))


def test_fields_asaas_did_not_send_are_absent_and_checkouts_carry_none_of_them():
    bare = {"id": "evt_b&1", "event": "PAYMENT_CREATED", "dateCreated": "2024-06-12 16:45:03",
            "payment": {"id": "pay_1", "status": "PENDING"}}  # fmt: skip
    assert new_fields(to_billing_event(bare)) == {}
    checkout = {"id": "evt_37260be8159d4472b4458d3de13efc2d&15370", "event": "CHECKOUT_PAID",
                "dateCreated": "2024-10-31 18:07:47",
                "checkout": {"id": "2bd251f0-09b2-44ff-8a0c-a5cb29e5bbda", "status": "PAID", "customer": None,
                             "items": [{"name": "Pro", "quantity": 1, "value": 49.9}],
                             "subscription": {"cycle": "MONTHLY", "nextDueDate": "2024-10-31T03:00:00+0000"}}}  # fmt: skip
    event = to_billing_event(checkout)
    assert new_fields(event) == {} and event["status"] == "PAID"
    assert to_billing_event(asaas_payment(customer={"id": "cus_1"})).get("customerId") is None


def test_a_customer_id_that_breaks_the_contract_is_refused():
    with pytest.raises(Refused) as refused:
        to_billing_event(asaas_payment(customer="cus with spaces"))
    assert refused.value.reason == INVALID and refused.value.detail.startswith("customerId:")


def test_a_date_past_what_utc_can_hold_is_not_an_asaas_date():
    with pytest.raises(ValueError):
        parse_asaas_datetime("9999-12-31 23:59:59")
    with pytest.raises(Refused) as refused:
        to_billing_event({**asaas_payment(), "dateCreated": "9999-12-31 23:59:59"})
    assert refused.value.detail == "dateCreated: not an Asaas date"


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
