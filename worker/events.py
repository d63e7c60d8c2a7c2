"""The event contract: pydantic v2 models for everything the app publishes.

Every event has `type`, `version` and an `id` that is its idempotency key. Validation is strict
(no coercion of "5" into 5, unknown fields refused) so that a bad publisher hears about it at
once. `docs/events.schema.json` is generated from these models (`pedro-worker schema`).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal, Union

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

from .codec import compact, payload_hash

MAX_DETAILS_BYTES = 16 * 1024
INT32_MAX = 2**31 - 1

EVENT_ID_CHARS, EVENT_ID_MAX = r"A-Za-z0-9_:.\-", 191
EventId = Annotated[
    str,
    StringConstraints(min_length=1, max_length=EVENT_ID_MAX, pattern=rf"^[{EVENT_ID_CHARS}]+$"),
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


# The app's "OperationType" enum grows with Prisma migrations ("Add more as features evolve (e.g.,
# VIDEO_GENERATION)"), so the contract takes any label PostgreSQL could hold and the worker checks
# it against the database's enum (read at boot, refreshed): a label the database lacks waits
# (`unknown_operation_type`) until a migration adds it, instead of being refused for good.
KNOWN_OPERATION_TYPES = ("AI_TEXT_CHAT", "AI_IMAGE_GENERATION")  # the seed's labels (examples)
OperationType = Annotated[
    str,
    StringConstraints(min_length=1, max_length=63, pattern=r"^[A-Z][A-Z0-9_]*$"),
    Field(
        description='A label of the app\'s "OperationType" enum, as the database has it now: a label '
        "the database lacks waits (unknown_operation_type) until a migration adds it.",
        examples=list(KNOWN_OPERATION_TYPES),
    ),
]


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
        return payload_hash(self.model_dump(mode="json"))


def _check_json(value: dict[str, Any] | None, limit: int, what: str) -> dict[str, Any] | None:
    if value is not None:
        try:
            data = compact(value)
        except ValueError:
            raise ValueError(f"{what} must not contain NaN or Infinity") from None
        if len(data) > limit:
            raise ValueError(f"{what} is {len(data)} bytes, the limit is {limit}")
        if b"\\u0000" in data:  # PostgreSQL's jsonb cannot store NUL characters
            raise ValueError(f"{what} must not contain NUL characters")
    return value


def _check_details(value: dict[str, Any] | None) -> dict[str, Any] | None:
    return _check_json(value, MAX_DETAILS_BYTES, "details")


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
    holdId: EventId | None = Field(
        None,
        description="The hold (POST /v1/holds) this usage captures: the usage is charged against it "
        "and the rest of the hold is released. A hold that expired or was released meanwhile: "
        "recorded as a plain usage.",
    )

    def payload_hash(self) -> str:
        """Without `holdId` when absent (it came after the first releases): a usage recorded
        before it stays a duplicate when it is replayed."""
        data = self.model_dump(mode="json")
        if data["holdId"] is None:
            del data["holdId"]  # cheaper than model_dump(exclude=…): this is the batch path
        return payload_hash(data)


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
    expiresAt: UtcDatetime | None = Field(
        None, description="A positive adjustment's credits expire then (default: never)."
    )
    priority: Annotated[StrictInt, Field(ge=0, le=1000)] | None = Field(
        None, description="A positive adjustment's grant priority, lower used first (default 15)."
    )

    def payload_hash(self) -> str:
        """Without `expiresAt` and `priority` when absent (they came after the first releases): an
        adjustment recorded before them stays a duplicate when it is replayed."""
        absent = {k for k in ("expiresAt", "priority") if getattr(self, k) is None}
        return payload_hash(self.model_dump(mode="json", exclude=absent))

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

def _text(max_length: int, min_length: int = 1, pattern: str | None = None) -> Any:
    """A string type that PostgreSQL can store (no NUL) within these bounds."""
    constraints = StringConstraints(min_length=min_length, max_length=max_length, pattern=pattern)
    return Annotated[str, constraints, AfterValidator(_no_nul)]


# --- users (Clerk) ------------------------------------------------------------------------------


class _UserProfile(_Event):
    email: _text(320, 3, r"^[^@\s]+@[^@\s]+$") | None = Field(None, description="The primary email address.")
    name: _text(500) | None = None
    updatedAt: UtcDatetime = Field(
        description="The profile's version (Clerk's updated_at): older never overwrites newer."
    )
    createdAt: UtcDatetime | None = Field(
        None,
        description='When the Clerk user was created (Clerk\'s created_at): "User".createdAt when '
        "the worker creates the row; absent -> when it inserts it. Not part of the payload hash.",
    )

    def payload_hash(self) -> str:
        """Without `createdAt`: a property of the Clerk user, fixed for good, that came after the
        first releases; so a profile event keeps the hash they recorded (a replay or a Clerk retry
        across an upgrade stays a duplicate, not an idempotency conflict)."""
        return payload_hash(self.model_dump(mode="json", exclude={"createdAt"}))


class UserCreated(_UserProfile):
    """A Clerk user signed up: "User" + "CreditBalance", and the starter credits once per Clerk
    user id (a journal movement `starter/<clerkUserId>`)."""

    type: Literal["user.created"]


class UserUpdated(_UserProfile):
    """A Clerk user's email or name changed (creates the user too if its create is late)."""

    type: Literal["user.updated"]


class UserDeleted(_Event):
    """A Clerk user was deleted: "User".isActive = false for good, email and name cleared (the
    address is free for a new sign-up); no row is deleted."""

    type: Literal["user.deleted"]
    deletedAt: UtcDatetime


# --- billing (Asaas) ----------------------------------------------------------------------------

MAX_METADATA_BYTES = 64 * 1024

ProviderEventId = Annotated[
    str,
    StringConstraints(min_length=1, max_length=191, pattern=r"^[A-Za-z0-9_:.\-&]+$"),
    Field(description="The provider's event id, verbatim (Asaas ids contain '&'): idempotency key."),
]
ProviderId = Annotated[str, StringConstraints(min_length=1, max_length=191, pattern=r"^[A-Za-z0-9_:.\-]+$")]


Cents = Annotated[StrictInt, Field(ge=0, le=10**13)]
BillingCycle = Literal["WEEKLY", "BIWEEKLY", "MONTHLY", "BIMONTHLY", "QUARTERLY", "SEMIANNUALLY", "YEARLY"]


def _check_metadata(value: dict[str, Any] | None) -> dict[str, Any] | None:
    return _check_json(value, MAX_METADATA_BYTES, "metadata")


class BillingEvent(_Event):
    """A billing provider's webhook event, parsed by the ingress (docs/ingress.md): one
    "SubscriptionEvent" row; a confirmed or received subscription payment grants its plan's
    credits once, a refund or chargeback reverses that grant once."""

    type: Literal["billing.event"]
    id: ProviderEventId
    clerkUserId: ClerkUserId | None = Field(None, description="From externalReference, when it names one.")
    provider: Literal["asaas"] = "asaas"
    eventType: _text(64, 1, r"^[A-Z][A-Z0-9_]*$")
    status: _text(64)
    occurredAt: UtcDatetime
    paymentId: ProviderId | None = None
    subscriptionId: ProviderId | None = None
    paymentLinkId: ProviderId | None = None
    planId: _text(191) | None = Field(
        None, description="The plan externalReference names (\"Plan\".id, or an Asaas id in \"Plan\".asaasId)."
    )
    customerId: ProviderId | None = Field(None, description="The Asaas customer (cus_...).")
    installmentId: ProviderId | None = Field(None, description="The installment plan a payment belongs to.")
    installmentNumber: Annotated[StrictInt, Field(ge=1, le=1000)] | None = None
    installmentCount: Annotated[StrictInt, Field(ge=1, le=1000)] | None = Field(
        None, description="How many installments the plan has (externalReference, else the description)."
    )
    valueCents: Cents | None = Field(
        None, description="The payment's value (a SUBSCRIPTION_ event: the subscription's), in cents."
    )
    refundedCents: Cents | None = Field(
        None, description="What has been refunded of the payment so far (its refunds that are not cancelled)."
    )
    chargebackStatus: _text(64) | None = Field(
        None, description="payment.chargeback.status: REQUESTED, IN_DISPUTE, DISPUTE_LOST, REVERSED, DONE."
    )
    paymentCreatedAt: UtcDatetime | None = Field(
        None, description="When Asaas created the payment: payment.dateCreated, the start of that São Paulo day."
    )
    cycle: BillingCycle | None = Field(None, description="The subscription's billing cycle.")
    nextDueDate: UtcDatetime | None = Field(None, description="The subscription's next due date.")
    metadata: Annotated[dict[str, Any] | None, AfterValidator(_check_metadata)] = Field(
        None, description="The provider's payload, stored as SubscriptionEvent.metadata."
    )

    def payload_hash(self) -> str:
        """Without the fields the ingress reads out of `metadata` since issue 17 (the payload
        itself is hashed): an Asaas redelivery or a replay of an event recorded before them stays
        a duplicate, not an idempotency conflict."""
        return payload_hash(self.model_dump(mode="json", exclude=_DERIVED_BILLING_FIELDS))


_DERIVED_BILLING_FIELDS = frozenset({
    "customerId", "installmentId", "installmentNumber", "installmentCount", "valueCents",
    "refundedCents", "chargebackStatus", "paymentCreatedAt", "cycle", "nextDueDate",
})  # fmt: skip


# --- storage ------------------------------------------------------------------------------------


class StorageObjectCreated(_Event):
    """A file was uploaded: insert its "StorageObject" once (`id` is the row's id). It is then
    the one live row of its user and pathname: an upload over the same pathname (a new id)
    soft-deletes the previous one."""

    type: Literal["storage.object_created"]
    provider: _text(64) = "vercel_blob"
    url: _text(2048, 8, r"^https?://")
    pathname: _text(1024)
    name: _text(512)
    contentType: _text(255) | None = None
    size: Annotated[StrictInt, Field(ge=0, le=INT32_MAX)] | None = Field(
        None,
        description="Bytes. Absent -> the worker reads it with HTTP HEAD on `url`, and the event "
        "waits (no_size) until it can.",
    )
    createdAt: UtcDatetime | None = Field(
        None, description="When it was uploaded. Absent -> when the worker inserts it."
    )


class StorageObjectDeleted(_Event):
    """Soft-delete a "StorageObject" of this user (`id` is the object's id): once per object and
    user, whatever `deletedAt` a retry carries; another user's delete is refused (`not_owner`).
    A delete that arrives before its create is kept and applied when the create lands."""

    type: Literal["storage.object_deleted"]
    deletedAt: UtcDatetime

    def payload_hash(self) -> str:
        """Without `deletedAt`: a delete is identified by its object and user, so an app retry
        with a fresh `deletedAt` is a duplicate, not an idempotency conflict."""
        return payload_hash(self.model_dump(mode="json", exclude={"deletedAt"}))


UserEvent = Annotated[UserCreated | UserUpdated | UserDeleted, Field(discriminator="type")]
user_event_adapter: TypeAdapter[UserCreated | UserUpdated | UserDeleted] = TypeAdapter(UserEvent)
billing_event_adapter: TypeAdapter[BillingEvent] = TypeAdapter(BillingEvent)
StorageEvent = Annotated[StorageObjectCreated | StorageObjectDeleted, Field(discriminator="type")]
storage_event_adapter: TypeAdapter[StorageObjectCreated | StorageObjectDeleted] = TypeAdapter(StorageEvent)

EVENT_MODELS: tuple[type[_Event], ...] = (
    UsageRecorded, UsageRefunded, CreditsAdjusted, UserCreated, UserUpdated, UserDeleted,
    BillingEvent, StorageObjectCreated, StorageObjectDeleted,
)  # fmt: skip
_any_event_adapter: TypeAdapter[Any] = TypeAdapter(
    Annotated[Union[EVENT_MODELS], Field(discriminator="type")]
)

# type -> queue.
QUEUE_OF_TYPE: dict[str, str] = {
    "usage.recorded": "usage",
    "usage.refunded": "usage",
    "credits.adjusted": "usage",
    "user.created": "users",
    "user.updated": "users",
    "user.deleted": "users",
    "billing.event": "billing",
    "storage.object_created": "storage",
    "storage.object_deleted": "storage",
}

# Not an event of the contract: what the ingress enqueues, straight onto a family's queue, for
# a provider payload it answered 200 but could not read (an Asaas webhook must never fail):
# {type, id (a stable key), eventType, reason, detail, payload}. The family's actor stores it
# as a `worker.rejection` row, once per (id, reason) (worker/domain/each.py). Not in
# QUEUE_OF_TYPE: `publish` and POST /v1/events refuse it.
INGRESS_REJECTION = "ingress.rejection"


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
    return _any_event_adapter.validate_python(raw)


def json_schemas() -> dict[str, Any]:
    """JSON Schema of every event, for the TypeScript app."""
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "pedro-worker events",
        "oneOf": [{"$ref": f"#/$defs/{m.__name__}"} for m in EVENT_MODELS],
        "$defs": {m.__name__: m.model_json_schema(mode="validation") for m in EVENT_MODELS},
    }
