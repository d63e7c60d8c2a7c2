"""JSON on the hot path: message decoding and the canonical payload hash, with msgspec.

Measured (docs/performance.md): the standard library's `json` was a third of the worker's CPU
on replays — decoding messages in dramatiq and `json.dumps(sort_keys=True)` for every payload
hash. msgspec does both several times faster, with the same results:

* **Decoding** accepts exactly what `json.loads` accepts. msgspec refuses a few inputs the
  standard library takes (`NaN`, `Infinity`, numbers too large for a double, lone surrogates);
  those messages are decoded by `json.loads` instead, so no message that decoded before fails
  now. The non-finite numbers it returns are `NonFinite` floats, which `canonical` refuses.
* **Canonical JSON** is compact, keys sorted, UTF-8 unescaped: the same bytes as
  `json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)` except for the
  spelling of floats with an exponent (`1e20` instead of `1e+20`) — stable either way, since
  hashes are compared with hashes made by this same function.

* **Encoding messages** (the publishing side: 1.4 µs per event with the standard library, 0.2
  with msgspec) gives what dramatiq's `JSONEncoder` gives, but for the spelling of floats and
  that non-ASCII text is written as UTF-8 rather than escaped — the worker decodes the same
  values. msgspec would silently write `NaN` as `null`, so any output with a `null` in it (or
  that msgspec refuses) is encoded by the standard library instead, which writes `NaN` as
  `NaN`: the worker then rejects that event with a reason, as it always did. Values JSON has no
  type for but an event's fields accept — `datetime` (an aware `occurredAt`), `date`, `UUID`,
  `Decimal`, enums — are written in their JSON form (ISO 8601 and so on, as pydantic writes
  them), so `Publisher.publish(event)` takes the same Python values `validate_event` does.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Any

import msgspec
import pydantic_core
from dramatiq.encoder import DecodeError, JSONEncoder, MessageData


class NonFinite(float):
    """NaN or ±Infinity from a message: valid for `json.loads`, never for a canonical hash."""


def _refuse(value: Any) -> Any:
    raise TypeError(f"no canonical JSON for {type(value).__name__}")


_decoder = msgspec.json.Decoder()
_canonical = msgspec.json.Encoder(order="sorted", enc_hook=_refuse)


def decode(data: bytes | str) -> Any:
    """`json.loads`, fast. Raises ValueError (json.JSONDecodeError or UnicodeDecodeError)."""
    try:
        return _decoder.decode(data)
    except msgspec.DecodeError:
        text = data.decode("utf-8") if isinstance(data, bytes) else data
        return json.loads(text, parse_constant=NonFinite)


def _nan_safe(fast: msgspec.json.Encoder, value: Any, slow: Callable[[Any], bytes]) -> bytes:
    """`fast.encode(value)`, unless msgspec refuses it or its output has a `null` in it (maybe a
    NaN or ±Infinity that msgspec silently wrote as `null`): then `slow(value)`, the standard
    library, which either refuses them or writes `NaN`, as the caller chose."""
    try:
        data = fast.encode(value)
    except (TypeError, ValueError, OverflowError):
        data = b""
    return data if data and b"null" not in data else slow(value)


_compact = msgspec.json.Encoder(enc_hook=_refuse)


def _compact_slow(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def compact(value: Any) -> bytes:
    """Compact JSON of a JSON value (what is stored in a jsonb column). ValueError for NaN or
    ±Infinity, which JSON cannot carry (checked by the standard library: `_nan_safe`)."""
    return _nan_safe(_compact, value, _compact_slow)


def canonical(value: Any) -> bytes:
    """Canonical JSON bytes of a JSON value. TypeError for anything else (or a NonFinite)."""
    return _canonical.encode(value)


def payload_hash(value: Any) -> str:
    """sha256 (hex) of the canonical JSON: the idempotency check's payload fingerprint."""
    return hashlib.sha256(canonical(value)).hexdigest()


def raw_hash(raw: Any) -> str | None:
    """`payload_hash` of an event as it arrived, or None when it has no canonical JSON."""
    try:
        return payload_hash(raw)
    except (TypeError, ValueError, OverflowError):
        return None


def _json_form(value: Any) -> Any:
    """The JSON form of a Python value json.dumps has no rule for (datetime, UUID, Decimal…)."""
    try:
        return pydantic_core.to_jsonable_python(value)
    except pydantic_core.PydanticSerializationError:
        raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable") from None


_message = msgspec.json.Encoder(enc_hook=_json_form)


def _message_slow(data: Any) -> bytes:
    return json.dumps(data, separators=(",", ":"), default=_json_form).encode("utf-8")


class MessageEncoder(JSONEncoder):
    """dramatiq's JSON encoder, fast both ways (module docstring; installed in worker/broker.py)."""

    def encode(self, data: MessageData) -> bytes:
        return _nan_safe(_message, data, _message_slow)  # a NaN goes out as NaN: module docstring

    def decode(self, data: bytes) -> MessageData:
        try:
            return decode(data)
        except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
            raise DecodeError(f"failed to decode message {data!r}", data, exc) from None
