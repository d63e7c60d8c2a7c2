"""docs/notifications.schema.json is what worker/notify/payloads.py generates, and covers every
notification type."""

from __future__ import annotations

import json

from worker.notify.config import TYPES
from worker.notify.payloads import DATA_MODELS, json_schema, notification_adapter
from worker.settings import ROOT


def test_docs_notification_schema_is_up_to_date():
    """Regenerate with `./run schema --notifications --out docs/notifications.schema.json`."""
    on_disk = json.loads((ROOT / "docs" / "notifications.schema.json").read_text())
    assert on_disk == json.loads(json.dumps(json_schema()))


def test_the_schema_has_every_notification_type_and_no_other():
    schema = json_schema()
    assert set(DATA_MODELS) == set(TYPES)
    assert set(schema["discriminator"]["mapping"]) == set(TYPES)
    assert len(schema["oneOf"]) == len(TYPES)


def test_the_published_schema_stays_open_to_fields_added_later():
    assert not any("additionalProperties" in d for d in json_schema()["$defs"].values())


def test_a_body_is_read_by_its_type():
    body = {"type": "credits.depleted", "timestamp": "2026-12-03T12:00:00.123456Z",
            "data": {"userId": "u1", "clerkUserId": "user_1", "balance": -3, "previousBalance": 4,
                     "cause": "evt_1"}}  # fmt: skip
    parsed = notification_adapter.validate_json(json.dumps(body))
    assert type(parsed).__name__ == "CreditsDepletedNotification"
    assert parsed.timestamp.isoformat() == "2026-12-03T12:00:00.123456+00:00"
