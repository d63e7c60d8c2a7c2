"""The event contract: pydantic v2 models for everything the app publishes.

Every event has `type`, `version` and an `id` that is its idempotency key. Validation is strict
(no coercion of "5" into 5, unknown fields refused) so that a bad publisher hears about it at
once. `docs/events.schema.json` is generated from these models (`pedro-worker schema`).
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictInt,
    StringConstraints,
    TypeAdapter,
    ValidationError,
    field_validator,
)

MAX_DETAILS_BYTES = 16 * 1024
INT32_MAX = 2**31 - 1

EventId = Annotated[
    str,
    StringConstraints(min_length=1, max_length=191, pattern=r"^[A-Za-z0-9_:.\-]+$"),
    Field(description="Idempotency key: 1-191 characters of [A-Za-z0-9_:.-]."),
]
ClerkUserId = Annotated[str, StringConstraints(min_length=1, max_length=191, pattern=r"^[A-Za-z0-9_\-]+$")]


def _iso_string(value: Any) -> Any:
    if not isinstance(value, str | datetime):
        raise ValueError("must be an ISO-8601 string with a time zone")
    return value


def _to_utc(value: datetime) -> datetime:
    return value.astimezone(UTC)


UtcDatetime = Annotated[
    AwareDatetime,
    BeforeValidator(_iso_string),
    AfterValidator(_to_utc),
    Field(description="ISO-8601 with a time zone; stored as UTC."),
]


class OperationType(StrEnum):
    """Mirrors the app's "OperationType" enum (labels in the same order)."""

    AI_TEXT_CHAT = "AI_TEXT_CHAT"
    AI_IMAGE_GENERATION = "AI_IMAGE_GENERATION"


class _Event(BaseModel):
    # Not model-wide strict: events arrive as JSON-decoded dicts, so datetimes and enums are
    # strings. Numbers are StrictInt: "5" or true is never a credit amount.
    model_config = ConfigDict(extra="forbid", frozen=True)

    version: Literal[1] = 1
    id: EventId
    clerkUserId: ClerkUserId

    def payload_hash(self) -> str:
        """sha256 of the canonical JSON of the validated event: same key + different hash
        means the publisher reused an id for a different event."""
        canonical = json.dumps(
            self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"), ensure_ascii=False
        )
        return hashlib.sha256(canonical.encode()).hexdigest()


def _check_details(value: dict[str, Any] | None) -> dict[str, Any] | None:
    if value is not None:
        try:
            text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
        except ValueError:
            raise ValueError("details must not contain NaN or Infinity") from None
        if len(text.encode()) > MAX_DETAILS_BYTES:
            raise ValueError(f"details is {len(text.encode())} bytes, the limit is {MAX_DETAILS_BYTES}")
        if "\\u0000" in text:  # PostgreSQL's jsonb cannot store NUL characters
            raise ValueError("details must not contain NUL characters")
    return value


def _no_nul(value: str) -> str:
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    return value


Details = Annotated[dict[str, Any] | None, AfterValidator(_check_details)]
Credits = Annotated[StrictInt, Field(ge=0, le=INT32_MAX)]


class UsageRecorded(_Event):
    """An AI operation happened: debit its cost and write a "UsageHistory" row."""

    type: Literal["usage.recorded"]
    operationType: OperationType
    credits: Credits | None = Field(
        None, description='Cost; absent -> "AdminSettings".featureCosts, then code defaults.'
    )
    details: Details = None
    occurredAt: UtcDatetime


class UsageRefunded(_Event):
    """Give back some or all of a usage's credits (a negative "UsageHistory" row)."""

    type: Literal["usage.refunded"]
    refundOf: EventId
    credits: Annotated[StrictInt, Field(gt=0, le=INT32_MAX)] | None = Field(
        None, description="Credits to give back; absent -> everything not yet refunded."
    )
    occurredAt: UtcDatetime | None = None


class CreditsAdjusted(_Event):
    """An admin grant (positive) or correction (negative)."""

    type: Literal["credits.adjusted"]
    delta: Annotated[StrictInt, Field(ge=-INT32_MAX, le=INT32_MAX)]
    reason: Annotated[str, StringConstraints(min_length=1, max_length=500), AfterValidator(_no_nul)]
    occurredAt: UtcDatetime | None = None

    @field_validator("delta")
    @classmethod
    def _non_zero(cls, value: int) -> int:
        if value == 0:
            raise ValueError("delta must not be zero")
        return value


UsageEvent = Annotated[UsageRecorded | UsageRefunded | CreditsAdjusted, Field(discriminator="type")]
usage_event_adapter: TypeAdapter[UsageRecorded | UsageRefunded | CreditsAdjusted] = TypeAdapter(
    UsageEvent
)

# type -> queue. Later event families (users, billing, storage) add their types here.
QUEUE_OF_TYPE: dict[str, str] = {
    "usage.recorded": "usage",
    "usage.refunded": "usage",
    "credits.adjusted": "usage",
}


def describe_validation_error(exc: ValidationError) -> str:
    """`occurredAt: Input should have timezone info; credits: ...` — never the input values."""
    parts = []
    for error in exc.errors(include_input=False, include_url=False):
        loc = [str(p) for p in error["loc"]]
        if loc and "." in loc[0]:  # the discriminator tag of the union, e.g. "usage.recorded"
            loc = loc[1:]
        parts.append(f"{'.'.join(loc) or 'event'}: {error['msg']}")
    return "; ".join(parts)[:2000]


def validate_event(raw: Any) -> BaseModel:
    """Validate any published event by its type (raises pydantic's ValidationError)."""
    return usage_event_adapter.validate_python(raw)


def json_schemas() -> dict[str, Any]:
    """JSON Schema of every event, for the TypeScript app."""
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "pedro-worker events",
        "oneOf": [{"$ref": f"#/$defs/{m.__name__}"} for m in (UsageRecorded, UsageRefunded, CreditsAdjusted)],
        "$defs": {
            m.__name__: m.model_json_schema(mode="validation")
            for m in (UsageRecorded, UsageRefunded, CreditsAdjusted)
        },
    }
