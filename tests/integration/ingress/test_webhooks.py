"""Provider webhooks end to end: HTTP (real ingress) -> Redis -> worker -> PostgreSQL."""

from __future__ import annotations

import copy
import json
import time
from datetime import datetime, timedelta

import redis

from tests.integration.family_helpers import journal, plan, queued_messages, user_row
from tests.integration.helpers import balance, count, make_user, settle, waiting_rows
from tests.integration.ingress.providers import ASAAS_TOKEN, as_body, clerk_headers, vercel_headers
from tests.integration.ops_helpers import flush_stats
from worker import clock
from worker.ops.keys import Keys
from worker.publisher import Publisher

# --- Asaas -------------------------------------------------------------------------------------

# Shaped as in Asaas's documentation: '&' in the event id, zone-less São Paulo time, many fields
# we do not read, and one they may add tomorrow.
ASAAS_PAYMENT = {
    "id": "evt_05b708f961d739ea7eba7e4db318f621&368604920",
    "event": "PAYMENT_RECEIVED",
    "dateCreated": "2024-06-12 16:45:03",
    "payment": {
        "object": "payment", "id": "pay_080225913252", "dateCreated": "2024-06-12",
        "customer": "cus_G7Dvo4iphUNk", "subscription": "sub_VXJBYgP2u0eO", "installment": None,
        "paymentLink": None, "dueDate": "2024-06-12", "originalDueDate": "2024-06-12", "value": 49.9,
        "netValue": 47.41, "description": "Plano Pro", "billingType": "CREDIT_CARD",
        "externalReference": json.dumps({"clerkUserId": "user_asaas", "planId": "plan_pro"}),
        "status": "RECEIVED", "confirmedDate": "2024-06-12", "paymentDate": "2024-06-12",
        "clientPaymentDate": "2024-06-12", "creditDate": "2024-07-12", "deleted": False,
        "creditCard": {"creditCardNumber": "8829", "creditCardBrand": "MASTERCARD"},
        "discount": {"value": 0.0, "dueDateLimitDays": 0, "type": "FIXED"},
        "refunds": None, "someFieldAddedLater": {"nested": True},
    },
}  # fmt: skip

ASAAS_SUBSCRIPTION = {
    "id": "evt_6561b631fa5580caadd00bbe3b858607&9193",
    "event": "SUBSCRIPTION_CREATED",
    "dateCreated": "2024-10-16 11:11:04",
    "subscription": {
        "object": "subscription", "id": "sub_VXJBYgP2u0eO", "dateCreated": "16/10/2024",
        "customer": "cus_G7Dvo4iphUNk", "value": 49.9, "nextDueDate": "22/11/2024", "cycle": "MONTHLY",
        "billingType": "BOLETO", "deleted": False, "status": "ACTIVE", "externalReference": "user_asaas",
    },
}  # fmt: skip


def asaas_event(event: str, event_id: str, date_created: str, status: str) -> dict:
    payload = copy.deepcopy(ASAAS_PAYMENT)
    payload.update({"id": event_id, "event": event, "dateCreated": date_created})
    payload["payment"]["status"] = status
    return payload


def post_asaas(ingress, payload, token=ASAAS_TOKEN):
    return ingress.post(
        "/webhooks/asaas", content=as_body(payload), headers={"asaas-access-token": token}
    )


def queued_events(settings, queue="storage"):
    """The event lists of the messages waiting in a queue of the test (nothing consumes them)."""
    client = redis.Redis.from_url(settings.require_redis_url())
    raw = client.hvals(f"{settings.redis_namespace}:{queue}.msgs")
    return [json.loads(m)["args"][0] for m in raw]


async def test_asaas_with_a_wrong_or_missing_token_is_401_and_nothing_is_enqueued(
    ingress, settings
):
    assert post_asaas(ingress, ASAAS_PAYMENT, token="wrong").status_code == 401
    assert ingress.post("/webhooks/asaas", json=ASAAS_PAYMENT).status_code == 401
    malformed = ingress.post("/webhooks/asaas", content=b"not json", headers={"asaas-access-token": "wrong"})
    assert (malformed.status_code, malformed.json()["error"]) == (401, "unauthorized")
    assert queued_messages(settings) == 0


async def test_asaas_payloads_as_documented_become_subscription_event_rows(conn, ingress, worker):
    await make_user(conn, "user_asaas", credits=0)
    await plan(conn, "plan_pro", 300)
    for payload in (ASAAS_PAYMENT, ASAAS_SUBSCRIPTION):
        response = post_asaas(ingress, payload)
        assert response.status_code == 200 and response.json()["status"] == "accepted"
    worker.drain()

    rows = {r["id"]: r for r in await conn.fetch('SELECT * FROM "SubscriptionEvent"')}
    payment = rows["evt_05b708f961d739ea7eba7e4db318f621&368604920"]
    assert (payment["eventType"], payment["status"], payment["planKey"]) == (
        "PAYMENT_RECEIVED",
        "RECEIVED",
        "plan_pro",
    )
    assert payment["occurredAt"] == datetime(
        2024, 6, 12, 19, 45, 3
    )  # 16:45:03 in São Paulo (UTC-3)
    assert payment["clerkUserId"] == "user_asaas" and payment["userId"] is not None
    assert payment["metadata"]["payment"]["someFieldAddedLater"] == {"nested": True}
    subscription = rows["evt_6561b631fa5580caadd00bbe3b858607&9193"]
    assert (subscription["eventType"], subscription["status"]) == ("SUBSCRIPTION_CREATED", "ACTIVE")
    assert subscription["occurredAt"] == datetime(2024, 10, 16, 14, 11, 4)
    assert await balance(conn, "user_asaas") == 300


async def test_same_asaas_webhook_twice_is_one_row_and_one_grant(conn, ingress, worker):
    await make_user(conn, "user_asaas", credits=0)
    await plan(conn, "plan_pro", 300)
    assert [post_asaas(ingress, ASAAS_PAYMENT).status_code for _ in range(2)] == [200, 200]
    confirmed = asaas_event("PAYMENT_CONFIRMED", "evt_aaa&1", "2024-06-12 16:40:00", "CONFIRMED")
    assert post_asaas(ingress, confirmed).status_code == 200
    worker.drain()

    assert await count(conn, '"SubscriptionEvent"') == 2
    assert await balance(conn, "user_asaas") == 300
    assert await journal(conn) == [("grant/pay_080225913252", "grant", 300)]


async def test_asaas_refund_after_payment_reverses_once(conn, ingress, worker):
    await make_user(conn, "user_asaas", credits=20)
    await plan(conn, "plan_pro", 300)
    post_asaas(ingress, ASAAS_PAYMENT)
    worker.drain()
    refund = asaas_event("PAYMENT_REFUNDED", "evt_bbb&2", "2024-06-20 09:00:00", "REFUNDED")
    for _ in range(2):
        assert post_asaas(ingress, refund).status_code == 200
    worker.drain()

    assert await balance(conn, "user_asaas") == 20
    kinds = [kind for _, kind, _ in await journal(conn)]
    assert kinds == ["grant", "grant_reversal"]


async def test_asaas_events_we_do_not_record_are_acknowledged_with_200(ingress, settings):
    transfer = {
        "id": "evt_t&1",
        "event": "TRANSFER_CREATED",
        "dateCreated": "2024-01-01 10:00:00",
        "transfer": {},
    }
    response = post_asaas(ingress, transfer)
    assert (response.status_code, response.json()["status"]) == (200, "ignored")
    assert queued_messages(settings) == 0


# Authenticated, but unreadable or invalid: each must be answered 200, or Asaas stops the queue.
MALFORMED_ASAAS = {
    b"{not json": "asaas_unreadable",
    b'[{"id": "evt_in_a_list&1", "event": "PAYMENT_RECEIVED"}]': "asaas_unreadable",
    as_body({"event": "PAYMENT_RECEIVED", "dateCreated": "2024-06-12 16:45:03"}): "asaas_unreadable",
    as_body({**ASAAS_PAYMENT, "id": "evt_bad_payment&1", "payment": "pay_080225913252"}): "validation_error",
    as_body({**ASAAS_PAYMENT, "id": "evt_bad_date&1", "dateCreated": "yesterday at noon"}): "validation_error",
    # no date, and a lone surrogate that neither UTF-8 nor jsonb can hold (stored as U+FFFD)
    b'{"id": "evt_surrogate&1", "event": "PAYMENT_RECEIVED", "payment": {"note": "\\ud800"}}': "validation_error",
}  # fmt: skip


async def test_malformed_asaas_payloads_are_200_stored_once_as_rejections_and_the_queue_flows(
    conn, ingress, worker, broker, settings
):
    await make_user(conn, "user_asaas", credits=0)
    await plan(conn, "plan_pro", 300)
    headers = {"asaas-access-token": ASAAS_TOKEN}
    for _ in range(2):  # Asaas redelivers; both deliveries may be applied at once
        for body in MALFORMED_ASAAS:
            answer = ingress.post("/webhooks/asaas", content=body, headers=headers)
            assert (answer.status_code, answer.json()["status"]) == (200, "rejected"), answer.text
    assert post_asaas(ingress, ASAAS_PAYMENT).status_code == 200  # the next event is not held up
    worker.drain()
    for body in MALFORMED_ASAAS:  # and once more, after the first ones were stored
        assert ingress.post("/webhooks/asaas", content=body, headers=headers).status_code == 200
    worker.drain()

    assert await balance(conn, "user_asaas") == 300
    assert await count(conn, '"SubscriptionEvent"') == 1
    rows = await conn.fetch("SELECT event_id, event_type, reason, detail, payload FROM worker.rejection")
    assert sorted(r["reason"] for r in rows) == sorted(MALFORMED_ASAAS.values())  # one row each
    by_id = {r["event_id"]: r for r in rows}
    bad_payment = by_id["evt_bad_payment&1"]
    assert (bad_payment["event_type"], bad_payment["reason"]) == ("billing.event", "validation_error")
    assert bad_payment["detail"].startswith("payment:")
    assert bad_payment["payload"]["payment"] == "pay_080225913252"
    assert by_id["evt_bad_date&1"]["detail"] == "dateCreated: not an Asaas date"
    assert by_id["evt_surrogate&1"]["payload"]["payment"] == {"note": "\ufffd"}
    hashed = {r["detail"]: r for r in rows if r["event_id"].startswith("asaas_body:")}
    assert set(hashed) == {"the body is not valid JSON", "the body is not a JSON object",
                           "id: missing, or not an Asaas event id"}  # fmt: skip
    assert hashed["the body is not valid JSON"]["payload"] == "{not json"
    assert ASAAS_TOKEN not in str([dict(r) for r in rows])

    flush_stats(broker)
    totals = redis.Redis.from_url(settings.require_redis_url()).hgetall(
        Keys(settings.redis_namespace).totals
    )
    events = {k.decode(): int(v) for k, v in totals.items() if k.startswith(b"events|billing|")}
    assert events == {"events|billing|rejected|asaas_unreadable": 3,
                      "events|billing|rejected|validation_error": 3,
                      "events|billing|duplicate|": 2 * len(MALFORMED_ASAAS),
                      "events|billing|applied|": 1}  # fmt: skip


# What else an Asaas payload says becomes fields of its billing.event (issue 17): payloads shaped
# as Asaas documents them ("Parcela 2 de 3." is how Asaas describes an installment).
ASAAS_INSTALLMENT_PAYMENT = {
    "id": "evt_05b708f961d739ea7eba7e4db318f621&7761645",
    "event": "PAYMENT_CONFIRMED",
    "dateCreated": "2024-11-15 08:09:19",
    "payment": {
        "object": "payment", "id": "pay_ypbjh88hwo91pyu2", "dateCreated": "2024-11-15",
        "customer": "cus_000006350698", "subscription": None,
        "installment": "2765d086-c7c5-5cca-898a-4262d212587c", "installmentNumber": 2,
        "paymentLink": None, "value": 33.33, "netValue": 32.34, "originalValue": None,
        "interestValue": None, "description": "Parcela 2 de 3. Pacote de 300 créditos",
        "billingType": "CREDIT_CARD", "status": "CONFIRMED", "dueDate": "2024-12-15",
        "originalDueDate": "2024-12-15", "paymentDate": None, "clientPaymentDate": "2024-11-15",
        "confirmedDate": "2024-11-15", "creditDate": "2025-01-14", "externalReference": "user_asaas",
        "deleted": False, "anticipated": False, "refunds": None, "chargeback": None,
    },
}  # fmt: skip

ASAAS_SUBSCRIPTION_UPDATED = {
    "id": "evt_6561b631fa5580caadd00bbe3b858607&9207",
    "event": "SUBSCRIPTION_UPDATED",
    "dateCreated": "2024-11-02 09:30:00",
    "subscription": {
        "object": "subscription", "id": "sub_VXJBYgP2u0eO", "dateCreated": "16/10/2024",
        "customer": "cus_G7Dvo4iphUNk", "paymentLink": None, "value": 479.0, "nextDueDate": "12/06/2025",
        "cycle": "YEARLY", "description": "Plano Pro anual", "billingType": "CREDIT_CARD",
        "deleted": False, "status": "ACTIVE", "sendPaymentByPostalService": False,
        "externalReference": json.dumps({"clerkUserId": "user_asaas", "planId": "plan_pro_yearly"}),
    },
}  # fmt: skip


def partially_refunded() -> dict:
    payload = asaas_event("PAYMENT_PARTIALLY_REFUNDED", "evt_ccc&3", "2024-06-22 10:00:00", "RECEIVED")
    payload["payment"]["refunds"] = [
        {"dateCreated": "2024-06-20 10:28:40", "status": "DONE", "value": 10.0,
         "description": "Reembolso parcial", "transactionReceiptUrl": "https://www.asaas.com/comprovantes/6677732109104548"},
        {"dateCreated": "2024-06-21 11:00:00", "status": "CANCELLED", "value": 20.0, "description": None},
        {"dateCreated": "2024-06-22 09:59:00", "status": "PENDING", "value": 5.45, "description": None},
    ]  # fmt: skip
    return payload


def charged_back() -> dict:
    payload = asaas_event("PAYMENT_CHARGEBACK_REQUESTED", "evt_ddd&4", "2024-07-01 12:00:00",
                          "CHARGEBACK_REQUESTED")  # fmt: skip
    payload["payment"]["chargeback"] = {"status": "REQUESTED", "reason": "PROCESS_ERROR"}
    return payload


NEW_FIELDS = ("customerId", "installmentId", "installmentNumber", "installmentCount", "valueCents",
              "refundedCents", "chargebackStatus", "paymentCreatedAt", "cycle", "nextDueDate")  # fmt: skip


async def test_asaas_payloads_fill_the_billing_events_customer_installment_money_and_dates(
    ingress, settings
):
    payloads = [ASAAS_PAYMENT, ASAAS_INSTALLMENT_PAYMENT, partially_refunded(), charged_back(),
                ASAAS_SUBSCRIPTION_UPDATED]  # fmt: skip
    for payload in payloads:
        response = post_asaas(ingress, payload)
        assert (response.status_code, response.json()["status"]) == (200, "accepted"), response.text
    queued = {e["id"]: e for events in queued_events(settings, "billing") for e in events}
    fields = {key: {k: e[k] for k in NEW_FIELDS if k in e} for key, e in queued.items()}

    subscription_payment = "2024-06-12T03:00:00+00:00"  # created 2024-06-12, São Paulo midnight
    assert fields == {
        ASAAS_PAYMENT["id"]: {"customerId": "cus_G7Dvo4iphUNk", "valueCents": 4990,
                              "paymentCreatedAt": subscription_payment},
        ASAAS_INSTALLMENT_PAYMENT["id"]: {
            "customerId": "cus_000006350698", "installmentId": "2765d086-c7c5-5cca-898a-4262d212587c",
            "installmentNumber": 2, "installmentCount": 3, "valueCents": 3333,
            "paymentCreatedAt": "2024-11-15T03:00:00+00:00"},
        "evt_ccc&3": {"customerId": "cus_G7Dvo4iphUNk", "valueCents": 4990, "refundedCents": 1545,
                      "paymentCreatedAt": subscription_payment},  # 10.00 done + 5.45 pending
        "evt_ddd&4": {"customerId": "cus_G7Dvo4iphUNk", "valueCents": 4990, "chargebackStatus": "REQUESTED",
                      "paymentCreatedAt": subscription_payment},
        ASAAS_SUBSCRIPTION_UPDATED["id"]: {"customerId": "cus_G7Dvo4iphUNk", "valueCents": 47900,
                                           "cycle": "YEARLY", "nextDueDate": "2025-06-12T03:00:00+00:00"},
    }  # fmt: skip
    updated = queued[ASAAS_SUBSCRIPTION_UPDATED["id"]]
    assert (updated["subscriptionId"], updated["clerkUserId"], updated["planId"], updated["status"]) == (
        "sub_VXJBYgP2u0eO", "user_asaas", "plan_pro_yearly", "ACTIVE")
    installment = queued[ASAAS_INSTALLMENT_PAYMENT["id"]]
    assert (installment["clerkUserId"], installment["status"]) == ("user_asaas", "CONFIRMED")
    assert "subscriptionId" not in installment and "planId" not in installment
    assert queued[ASAAS_PAYMENT["id"]]["subscriptionId"] == "sub_VXJBYgP2u0eO"
    assert all(queued[p["id"]]["metadata"] == p for p in payloads)


async def test_asaas_value_that_is_not_a_number_is_200_and_stored_as_a_rejection(
    conn, ingress, worker
):
    payload = copy.deepcopy(ASAAS_PAYMENT)
    payload.update({"id": "evt_value_text&1"})
    payload["payment"]["value"] = "49,90"
    for _ in range(2):  # Asaas redelivers
        answer = post_asaas(ingress, payload)
        assert (answer.status_code, answer.json()["status"], answer.json()["detail"]) == (
            200, "rejected", "payment.value: not a number")
    worker.drain()

    rows = await conn.fetch(
        "SELECT event_id, event_type, reason, detail, payload FROM worker.rejection"
    )
    assert [(r["event_id"], r["event_type"], r["reason"], r["detail"]) for r in rows] == [
        ("evt_value_text&1", "billing.event", "validation_error", "payment.value: not a number")]
    assert rows[0]["payload"]["payment"]["value"] == "49,90"
    assert await count(conn, '"SubscriptionEvent"') == 0


# --- Clerk -------------------------------------------------------------------------------------


def clerk_payload(
    event_type: str, clerk_id: str, *, updated_ms: int, email: str = "clerk@example.com"
) -> dict:
    data = {
        "id": clerk_id, "object": "user", "first_name": "Maria", "last_name": "Souza", "username": None,
        "primary_email_address_id": "idn_2",
        "email_addresses": [{"id": "idn_1", "email_address": "old@example.com"},
                            {"id": "idn_2", "email_address": email}],
        "created_at": 1_700_000_000_000, "updated_at": updated_ms, "unsafe_metadata": {},
    }  # fmt: skip
    if event_type == "user.deleted":
        data = {"id": clerk_id, "object": "user", "deleted": True}
    return {"data": data, "object": "event", "type": event_type, "timestamp": updated_ms + 5,
            "instance_id": "ins_123"}  # fmt: skip


def post_clerk(ingress, payload, msg_id, **kw):
    body = as_body(payload)
    return ingress.post(
        "/webhooks/clerk", content=body, headers=clerk_headers(body, msg_id=msg_id, **kw)
    )


async def test_clerk_user_created_with_a_valid_signature_creates_the_user_once(
    conn, ingress, worker
):
    payload = clerk_payload("user.created", "user_clerk1", updated_ms=1_700_000_000_000)
    assert post_clerk(ingress, payload, "msg_2abc").status_code == 200
    assert post_clerk(ingress, payload, "msg_2abc").status_code == 200  # Svix redelivery
    worker.drain()

    assert await user_row(conn, "user_clerk1") == {
        "clerkId": "user_clerk1", "email": "clerk@example.com", "name": "Maria Souza", "isActive": True,
        "credits": 100,
    }  # fmt: skip
    assert await count(conn, '"User"') == 1
    created_at = await conn.fetchval('SELECT "createdAt" FROM "User" WHERE "clerkId" = $1', "user_clerk1")
    assert created_at == datetime(2023, 11, 14, 22, 13, 20)  # Clerk's data.created_at, in UTC


async def test_clerk_bad_or_stale_signatures_are_401_and_nothing_is_enqueued(ingress, settings):
    payload = clerk_payload("user.created", "user_clerk2", updated_ms=1_700_000_000_000)
    body = as_body(payload)
    wrong_secret = "whsec_" + "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo="
    cases = [
        clerk_headers(body, msg_id="msg_1", secret=wrong_secret),
        clerk_headers(body, msg_id="msg_1", timestamp=int(time.time()) - 6 * 60),
        clerk_headers(body, msg_id="msg_1", timestamp=int(time.time()) + 6 * 60),
        {**clerk_headers(body, msg_id="msg_1"), "svix-id": "msg_other"},
        {**clerk_headers(body, msg_id="msg_1"), "svix-signature": "v1,not-base64!"},
        {"content-type": "application/json"},
    ]
    for headers in cases:
        response = ingress.post("/webhooks/clerk", content=body, headers=headers)
        assert (response.status_code, response.json()["error"]) == (401, "invalid_signature"), (
            headers
        )
    tampered = ingress.post("/webhooks/clerk", content=body.replace(b"Maria", b"Mario"),
                            headers=clerk_headers(body, msg_id="msg_1"))  # fmt: skip
    assert tampered.status_code == 401
    assert queued_messages(settings) == 0


async def test_clerk_any_one_of_several_signatures_may_match(conn, ingress, worker):
    payload = clerk_payload("user.created", "user_clerk3", updated_ms=1_700_000_000_000)
    rotated = ("v1,c29tZS1vbGQtc2lnbmF0dXJlLWZyb20tYS1yb3RhdGVkLXNlY3JldA==", "v2,ignored")
    assert post_clerk(ingress, payload, "msg_3", extra_signatures=rotated).status_code == 200
    worker.drain()
    assert (await user_row(conn, "user_clerk3"))["email"] == "clerk@example.com"


async def test_clerk_events_in_any_order_end_in_the_same_state(conn, ingress, worker):
    t = 1_700_000_000_000
    deleted = clerk_payload("user.deleted", "user_clerk4", updated_ms=t + 2000)
    updated = clerk_payload(
        "user.updated", "user_clerk4", updated_ms=t + 1000, email="new@example.com"
    )
    created = clerk_payload("user.created", "user_clerk4", updated_ms=t)
    for msg_id, payload in (("msg_d", deleted), ("msg_u", updated), ("msg_c", created)):
        assert post_clerk(ingress, payload, msg_id).status_code == 200
        worker.drain()

    row = await user_row(conn, "user_clerk4")
    assert (row["email"], row["name"], row["isActive"], row["credits"]) == (None, None, False, 100)


async def test_clerk_event_types_we_do_not_handle_are_acknowledged(ingress, settings):
    payload = {
        "data": {"id": "sess_1"},
        "object": "event",
        "type": "session.created",
        "timestamp": 1,
    }
    response = post_clerk(ingress, payload, "msg_session")
    assert (response.status_code, response.json()["status"]) == (200, "ignored")
    assert queued_messages(settings) == 0


# --- Vercel Blob -------------------------------------------------------------------------------


def blob_callback(url: str, pathname: str, token_payload: dict | None) -> dict:
    return {"type": "blob.upload-completed", "payload": {
        "blob": {"url": url, "downloadUrl": url + "?download=1", "pathname": pathname,
                 "contentType": "image/png", "contentDisposition": 'attachment; filename="cat.png"'},
        "tokenPayload": json.dumps(token_payload) if token_payload is not None else None,
    }}  # fmt: skip


def post_blob(ingress, payload, **kw):
    body = as_body(payload)
    return ingress.post("/webhooks/vercel-blob", content=body, headers=vercel_headers(body, **kw))




async def test_blob_upload_with_size_only_in_token_payload_is_stored_once(
    conn, ingress, worker, blob_server
):
    await make_user(conn, "user_blob")
    payload = blob_callback(  # the blob server answers 404: the app's declared size is the fallback
        blob_server.url("/u/cat.png"), "u/cat.png", {"clerkUserId": "user_blob", "size": 1234}
    )
    first, second = post_blob(ingress, payload), post_blob(ingress, payload)
    worker.drain()

    assert first.status_code == second.status_code == 200
    assert first.json()["id"] == second.json()["id"]
    row = await conn.fetchrow('SELECT * FROM "StorageObject"')
    assert (row["id"], row["size"], row["name"], row["pathname"]) == (
        first.json()["id"],
        1234,
        "cat.png",
        "u/cat.png",
    )
    assert await count(conn, '"StorageObject"') == 1


async def test_blob_size_missing_is_read_with_head_retrying_a_failure(
    conn, ingress, worker, blob_server
):
    await make_user(conn, "user_blob")
    blob_server.sizes["/u/dog.png"] = 98765
    blob_server.failures_left = 1
    payload = blob_callback(
        blob_server.url("/u/dog.png"), "u/dog.png", {"clerkUserId": "user_blob"}
    )
    assert post_blob(ingress, payload).status_code == 200
    worker.drain()

    assert blob_server.heads == ["/u/dog.png", "/u/dog.png"]
    assert await conn.fetchval('SELECT size FROM "StorageObject"') == 98765


async def test_blob_size_from_head_wins_over_the_token_payloads(conn, ingress, worker, blob_server):
    await make_user(conn, "user_blob")
    blob_server.sizes["/u/big.png"] = 5_000_000
    payload = blob_callback(
        blob_server.url("/u/big.png"), "u/big.png", {"clerkUserId": "user_blob", "size": 10}
    )
    assert post_blob(ingress, payload).status_code == 200
    worker.drain()
    assert await conn.fetchval('SELECT size FROM "StorageObject"') == 5_000_000


async def live_blobs(conn, pathname):
    rows = await conn.fetch('SELECT id, size, "createdAt" FROM "StorageObject" WHERE pathname = $1 '
                            'AND "deletedAt" IS NULL', pathname)  # fmt: skip
    return [(r["id"], r["size"]) for r in rows]


async def test_blob_overwrite_of_a_pathname_leaves_one_live_row_with_the_new_size(
    conn, ingress, worker, blob_server
):
    """`allowOverwrite`: the same url and pathname, other bytes. Each upload is its own event
    (the HEAD's ETag and Last-Modified, the size, tell them apart); a redelivery is not."""
    await make_user(conn, "user_blob")
    path = "/users/user_blob/avatar.png"
    payload = blob_callback(blob_server.url(path), path[1:], {"clerkUserId": "user_blob"})
    blob_server.sizes[path] = 100
    blob_server.headers[path] = {"ETag": '"v1"', "Last-Modified": "Sun, 01 Nov 2026 12:00:00 GMT"}
    first = post_blob(ingress, payload).json()["id"]
    worker.drain()
    blob_server.sizes[path] = 200
    blob_server.headers[path] = {"ETag": '"v2"', "Last-Modified": "Sun, 01 Nov 2026 12:05:00 GMT"}
    second = post_blob(ingress, payload).json()["id"]
    again = post_blob(ingress, payload).json()["id"]  # Vercel retries the callback
    worker.drain()

    assert first != second == again
    assert await live_blobs(conn, path[1:]) == [(second, 200)]
    assert await count(conn, '"StorageObject"') == 2
    replaced_at = await conn.fetchval('SELECT "deletedAt" FROM "StorageObject" WHERE id = $1', first)
    assert replaced_at == datetime(2026, 11, 1, 12, 5)  # the new upload's time

    # Without ETag or Last-Modified (another store, a proxy), the size alone tells them apart.
    blob_server.headers[path] = {}
    blob_server.sizes[path] = 300
    assert post_blob(ingress, payload).status_code == 200
    worker.drain()
    assert [size for _, size in await live_blobs(conn, path[1:])] == [300]


async def test_blob_upload_delete_and_upload_again_leaves_one_live_row(
    conn, broker, ingress, worker, blob_server
):
    await make_user(conn, "user_blob")
    path = "/users/user_blob/avatar.png"
    payload = blob_callback(blob_server.url(path), path[1:], {"clerkUserId": "user_blob"})
    blob_server.sizes[path] = 100
    blob_server.headers[path] = {"Last-Modified": "Sun, 01 Nov 2026 12:00:00 GMT"}
    first = post_blob(ingress, payload).json()["id"]
    worker.drain()
    Publisher(broker).publish({"type": "storage.object_deleted", "id": first, "clerkUserId": "user_blob",
                               "deletedAt": "2026-11-01T12:01:00Z"})  # fmt: skip
    worker.drain()
    assert await live_blobs(conn, path[1:]) == []

    # the same bytes again (same size, same ETag): a new upload all the same
    blob_server.headers[path] = {"Last-Modified": "Sun, 01 Nov 2026 12:02:00 GMT"}
    second = post_blob(ingress, payload).json()["id"]
    worker.drain()
    assert await live_blobs(conn, path[1:]) == [(second, 100)]
    assert second != first


async def test_blob_with_no_size_and_no_head_is_accepted_not_503(ingress, settings, blob_server):
    payload = blob_callback(
        blob_server.url("/missing.png"), "missing.png", {"clerkUserId": "user_blob"}
    )
    response = post_blob(ingress, payload)
    assert (response.status_code, response.json()["status"]) == (200, "accepted")
    [event] = [e for m in queued_events(settings) for e in m]
    assert event["id"] == response.json()["id"] and "size" not in event


async def test_blob_with_no_size_and_no_head_waits_then_applies_once_the_blob_answers(
    conn, ingress, worker, settings, blob_server
):
    await make_user(conn, "user_blob")
    payload = blob_callback(blob_server.url("/late.png"), "late.png", {"clerkUserId": "user_blob"})
    object_id = post_blob(ingress, payload).json()["id"]
    await settle(worker, conn)

    [row] = await waiting_rows(conn)
    assert (row["event_id"], row["queue"], row["state"], row["reason"], row["waits_for"]) == (
        object_id, "storage", "waiting", "no_size", f"blob:{object_id}",
    )  # fmt: skip
    assert "HTTP 404" in row["detail"]
    assert await count(conn, '"StorageObject"') == 0

    blob_server.sizes["/late.png"] = 4321
    try:
        clock.advance(timedelta(milliseconds=settings.waiting_retry_ms + 1_000))
        await settle(worker, conn)
    finally:
        clock.reset()
    assert await waiting_rows(conn) == []
    assert await conn.fetchval('SELECT size FROM "StorageObject" WHERE id = $1', object_id) == 4321
    [row] = await waiting_rows(conn, None)
    assert row["state"] == "applied"


async def test_blob_bad_signature_or_missing_user_is_refused(ingress, settings):
    payload = blob_callback(
        "https://store.example/a.png", "a.png", {"clerkUserId": "user_blob", "size": 1}
    )
    assert post_blob(ingress, payload, token="another-token").status_code == 401
    assert ingress.post("/webhooks/vercel-blob", json=payload).status_code == 401
    no_user = post_blob(ingress, blob_callback("https://store.example/b.png", "b.png", {"size": 1}))
    assert (no_user.status_code, no_user.json()["error"]) == (400, "invalid_payload")
    assert queued_messages(settings) == 0
