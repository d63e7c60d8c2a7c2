"""The event contract refuses bad input with a reason that names the field."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from worker.events import describe_validation_error, json_schemas, usage_event_adapter
from worker.settings import ROOT

GOOD = {"type": "usage.recorded", "id": "evt_1:a.b-c", "clerkUserId": "user_2abc",
        "operationType": "AI_TEXT_CHAT", "occurredAt": "2026-11-01T09:00:00-03:00"}  # fmt: skip


def reason(**changes) -> str:
    event = {**GOOD, **changes}
    event = {k: v for k, v in event.items() if v is not ...}
    with pytest.raises(ValidationError) as info:
        usage_event_adapter.validate_python(event)
    return describe_validation_error(info.value)


def test_a_valid_event_is_normalised_to_utc():
    event = usage_event_adapter.validate_python(GOOD)
    assert event.occurredAt.isoformat() == "2026-11-01T12:00:00+00:00"


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"id": ...}, "id"),
        ({"clerkUserId": ...}, "clerkUserId"),
        ({"operationType": "ai chat; drop"}, "operationType"),
        ({"credits": "5"}, "credits"),
        ({"credits": True}, "credits"),
        ({"credits": -1}, "credits"),
        ({"credits": 2**31}, "credits"),
        ({"credits": 1.5}, "credits"),
        ({"occurredAt": "2026-11-01T09:00:00"}, "occurredAt"),
        ({"occurredAt": 1_700_000_000}, "occurredAt"),
        ({"details": {"blob": "x" * 17_000}}, "details"),
        ({"details": ["not", "an", "object"]}, "details"),
        ({"id": "'; DROP TABLE \"User\"; --"}, "id"),
        ({"id": "x" * 192}, "id"),
        ({"id": "emoji-\U0001f600"}, "id"),
        ({"unexpected": 1}, "unexpected"),
        ({"version": 2}, "version"),
    ],
)
def test_bad_usage_events_are_refused_naming_the_field(changes, field):
    assert field in reason(**changes)


def test_the_reason_never_echoes_the_input():
    assert "DROP TABLE" not in reason(id="'; DROP TABLE \"User\"; --")


def test_unknown_type_is_refused():
    with pytest.raises(ValidationError):
        usage_event_adapter.validate_python({**GOOD, "type": "usage.teleported"})


def test_same_event_has_the_same_hash_whatever_the_time_zone_spelling():
    a = usage_event_adapter.validate_python(GOOD)
    b = usage_event_adapter.validate_python({**GOOD, "occurredAt": "2026-11-01T12:00:00Z"})
    c = usage_event_adapter.validate_python({**GOOD, "credits": 3})
    assert a.payload_hash() == b.payload_hash() != c.payload_hash()


def test_docs_json_schema_is_up_to_date():
    """Regenerate with `./run schema --out docs/events.schema.json`."""
    on_disk = json.loads((ROOT / "docs" / "events.schema.json").read_text())
    assert on_disk == json.loads(json.dumps(json_schemas()))


@pytest.mark.parametrize(
    "details", [{"text": "nul\x00byte"}, {"score": float("nan")}, {"x": float("inf")}]
)
def test_details_postgres_cannot_store_are_refused(details):
    assert "details" in reason(details=details)


def test_a_billing_event_hashes_as_before_the_fields_read_out_of_its_metadata():
    from worker.events import BillingEvent

    base = {"type": "billing.event", "id": "evt_1&2", "clerkUserId": "user_1", "eventType": "PAYMENT_RECEIVED",
            "status": "RECEIVED", "occurredAt": "2026-11-01T12:00:00+00:00", "paymentId": "pay_1",
            "metadata": {"payment": {"value": 49.9}}}  # fmt: skip
    richer = base | {"valueCents": 4990, "customerId": "cus_1", "cycle": "MONTHLY"}
    assert BillingEvent.model_validate(base).payload_hash() == BillingEvent.model_validate(richer).payload_hash()
    other = base | {"metadata": {"payment": {"value": 50}}}
    assert BillingEvent.model_validate(base).payload_hash() != BillingEvent.model_validate(other).payload_hash()
