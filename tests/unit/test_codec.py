"""Fast JSON (worker/codec.py) reads what `json.loads` reads and hashes canonically."""

from __future__ import annotations

import hashlib
import json

import pytest
from dramatiq.encoder import DecodeError
from hypothesis import given
from hypothesis import strategies as st

from worker import codec

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4),
    max_leaves=20,
)


@given(json_values)
def test_decoding_gives_what_json_loads_gives(value):
    for text in (json.dumps(value), json.dumps(value, ensure_ascii=False)):
        assert codec.decode(text.encode()) == json.loads(text)


@pytest.mark.parametrize("text", ['{"a": NaN}', '{"a": -Infinity}', '{"a": 1e400}', '"\\ud800"',
                                  '{"a": 100000000000000000000000000}', '{"a": 1, "a": 2}'])  # fmt: skip
def test_what_only_the_standard_library_reads_still_decodes(text):
    decoded, expected = codec.decode(text.encode()), json.loads(text)
    assert json.dumps(decoded) == json.dumps(expected)


def test_non_finite_numbers_have_no_raw_hash():
    assert codec.raw_hash(codec.decode(b'{"id": "x", "credits": NaN}')) is None
    assert codec.raw_hash(codec.decode(b'{"id": "x", "credits": null}')) is not None


def test_a_message_that_is_not_json_is_a_decode_error():
    with pytest.raises(DecodeError):
        codec.MessageEncoder().decode(b"\xff{not json")
    with pytest.raises(DecodeError):
        codec.MessageEncoder().decode(b'{"unterminated": ')


@given(json_values)
def test_canonical_json_is_sorted_compact_utf8(value):
    expected = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert json.loads(codec.canonical(value)) == json.loads(expected)
    if not any(isinstance(v, float) for v in _leaves(value)):  # floats may spell exponents differently
        assert codec.canonical(value) == expected.encode()


def test_the_payload_hash_is_what_earlier_releases_recorded():
    # A changed hash would turn every replay of an event decided before an upgrade into a conflict:
    # earlier releases hashed json.dumps(sort_keys=True, separators=(",", ":"), ensure_ascii=False).
    event = {"type": "usage.recorded", "id": "e1", "clerkUserId": "u", "credits": 5, "details": {"b": 1, "a": "é"}}
    stdlib = json.dumps(event, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert codec.payload_hash(event) == hashlib.sha256(stdlib.encode()).hexdigest()
    assert codec.payload_hash(event) == "1acfdcd896ff1a863937892980306a29cb04271214d7239c8ccee44168b5fd3b"


def _leaves(value):
    if isinstance(value, dict):
        for v in value.values():
            yield from _leaves(v)
    elif isinstance(value, list):
        for v in value:
            yield from _leaves(v)
    else:
        yield value


@pytest.mark.parametrize("value", [{"n": float("nan")}, {"n": [1, float("inf")]}, {"n": codec.NonFinite("-inf")}])
def test_compact_json_refuses_what_json_cannot_carry(value):
    with pytest.raises(ValueError):
        codec.compact(value)


@given(json_values)
def test_compact_json_reads_back_as_the_same_value(value):
    assert json.loads(codec.compact(value)) == value


def test_messages_carry_the_json_form_of_datetimes_and_other_event_values():
    import uuid
    from datetime import UTC, datetime
    from decimal import Decimal

    from worker.events import validate_event

    event = {"type": "usage.recorded", "id": "e-1", "clerkUserId": "u", "operationType": "AI_TEXT_CHAT",
             "credits": 5, "occurredAt": datetime(2026, 11, 1, 12, 30, tzinfo=UTC),
             "details": {"request": uuid.UUID(int=1), "price": Decimal("0.25")}}  # fmt: skip
    data = codec.MessageEncoder().decode(codec.MessageEncoder().encode({"args": [[event]]}))
    sent = data["args"][0][0]
    assert sent["occurredAt"] == "2026-11-01T12:30:00Z"
    assert sent["details"] == {"request": "00000000-0000-0000-0000-000000000001", "price": "0.25"}
    assert validate_event(sent).payload_hash() == validate_event({**event, "details": sent["details"]}).payload_hash()
    with pytest.raises(TypeError, match="not JSON serializable"):
        codec.MessageEncoder().encode({"args": [object()]})
    assert codec.MessageEncoder().encode({"x": float("nan")}) == b'{"x":NaN}'  # as before


@given(st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4),
    max_leaves=20,
))  # fmt: skip
def test_a_message_decodes_to_what_the_standard_librarys_encoding_decodes_to(value):
    """msgspec writes messages; NaN and ±Infinity (which it would write as null) still arrive as
    the standard library writes them, so the worker can refuse them."""
    data = {"args": [value], "options": {}}
    expected = json.dumps(data, separators=(",", ":")).encode()
    encoded = codec.MessageEncoder().encode(data)
    assert json.dumps(codec.decode(encoded)) == json.dumps(codec.decode(expected))
