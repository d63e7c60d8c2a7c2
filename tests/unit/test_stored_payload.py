"""What a rejection stores as its payload (`safe_payload`): bounded, and JSON that jsonb takes."""

from __future__ import annotations

import json

from worker.ledger.apply import safe_payload


def test_stored_payload_is_json_that_jsonb_can_hold():
    raw = json.loads('{"lone": "\\ud800", "nul": "a\\u0000b", "pair": "\\ud83d\\ude00", "é": 1}')
    text = safe_payload(raw)
    text.encode("utf-8")  # no lone surrogate left
    assert json.loads(text) == {"lone": "\ufffd", "nul": "a\ufffdb", "pair": "😀", "é": 1}
    assert json.loads(safe_payload("x\udfff" * 70_000))["truncated"] is True
    unserializable = safe_payload({"x": float("nan"), "y": "\ud800"})  # repr'd: ASCII
    assert json.loads(unserializable.encode("ascii"))["unserializable"].startswith("{'x': nan")


def test_stored_payload_is_bounded():
    stored = json.loads(safe_payload({"blob": "x" * 100_000}))
    assert stored["truncated"] is True and len(stored["preview"]) == 1000
