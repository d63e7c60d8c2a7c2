"""The notifications' contract: pydantic v2 models of the body of every notification type.

Each delivery's body is `{"type", "timestamp", "data"}`; `data` is what the rules in
worker/notify/notices.py build, and tests/unit/test_notices.py checks every notice they make
against these models, so the contract cannot drift from the rules.
`docs/notifications.schema.json` is generated from them (`pedro-worker schema --notifications`;
tests/unit/test_notification_schema.py keeps it current). The app's side: docs/notifications.md.

The models forbid unknown fields, so a field a rule adds without adding it here fails the tests;
the published schema leaves `additionalProperties` open, so a receiver that validates with it
keeps working when a field is added later.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, TypeAdapter
from pydantic.json_schema import GenerateJsonSchema


def _open(schema: dict[str, Any]) -> None:
    schema.pop("additionalProperties", None)


class _Model(BaseModel):
    # strict: a credit amount is an integer, never "5" or true; times are ISO strings (below)
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, json_schema_extra=_open)


Timestamp = Annotated[AwareDatetime, Field(strict=False)]  # an ISO 8601 string in JSON
UserId = Annotated[str, Field(description='The app\'s "User".id.')]
ClerkUserId = Annotated[
    str,
    Field(description="The user's Clerk id. A user's notifications arrive in the order they "
          "were written."),
]  # fmt: skip
Balance = Annotated[
    int,
    Field(description='The user\'s balance ("CreditBalance"."creditsRemaining", open holds already '
          "out of it) once the transaction that wrote this notification committed. Below zero "
          "when the user used more than they had (overdraft policy `allow`) or a payment was "
          "reversed after its credits were spent."),
]  # fmt: skip
PreviousBalance = Annotated[int, Field(description="The balance before that transaction.")]
Cause = Annotated[
    str,
    Field(description="The key of the user's last journal movement in that transaction (a usage's "
          "event id, `hold/<hold id>`, `expire/<grant id>`, `grant_reversal/<grant id>`…): "
          "`pedro-worker user show` lists it."),
]  # fmt: skip
Movement = Annotated[
    str,
    Field(description="The journal movement's key (`worker.journal.event_id`): unique, once ever."),
]
Reference = Annotated[
    str | None,
    Field(description="What the movement refers to: its grant's id for grants, starts, "
          "reversals, restores and adjustments; the Clerk user id for starter credits; for an "
          "expiry, the grant that ended (or the refund or hold whose credits came back to it)."),
]  # fmt: skip
Reason = Annotated[
    str | None,
    Field(description="Why, in words, for a person to read: `plan <id>`, `pack <id>`, "
          "`PAYMENT_REFUNDED`, `plan credits expired`, an adjustment's `reason`…"),
]  # fmt: skip


class CreditsLow(_Model):
    """The balance crossed a low-balance threshold downward: from above it to at or below it.
    Once per threshold per period (a period starts with each grant that brings credits: a user
    who buys credits and runs low again hears it again). Email the user, show a banner, offer a
    pack."""

    userId: UserId
    clerkUserId: ClerkUserId
    balance: Balance
    previousBalance: PreviousBalance
    threshold: int = Field(
        description="The threshold crossed, in credits (a percentage setting as it came to for "
        "this user)."
    )
    thresholdSetting: str = Field(
        description="The threshold as configured (PEDRO_NOTIFY_LOW_THRESHOLDS): credits (`20`) or "
        "a percentage of the user's plan allowance (`10%`).",
        examples=["20", "10%"],
    )
    planCredits: int | None = Field(
        description="The credits of the user's newest live plan allowance, which percentage "
        "thresholds are of; null when the user has none (then only credit thresholds apply)."
    )
    period: str = Field(
        description="The id of the grant that names the period: the user's newest live grant (a "
        "plan allowance, a pack, the starter credits…); `none` when the user has no grant."
    )
    cause: Cause


class CreditsDepleted(_Model):
    """The balance went from above zero to zero or below. Once per such crossing: again only
    after the balance went back above zero. Lock the paid features; show how to get credits."""

    userId: UserId
    clerkUserId: ClerkUserId
    balance: Balance
    previousBalance: PreviousBalance
    cause: Cause


class CreditsGranted(_Model):
    """The user received credits: a plan or pack payment (`grant`), the next month of a plan
    (`grant_start`), the starter credits of a new user (`starter`), credits given back after a
    won dispute (`grant_restore`), a positive admin adjustment (`adjustment`). Once per
    movement. Say "payment received"; unlock features if the balance is above zero again."""

    userId: UserId
    clerkUserId: ClerkUserId
    credits: int = Field(
        ge=1, description="The credits received (a debt the user had is paid from them first)."
    )
    kind: Literal["grant", "grant_start", "starter", "grant_restore", "adjustment"] = Field(
        description="The journal movement's kind (docs/ledger.md, Journal and reconcile)."
    )
    reference: Reference
    reason: Reason
    movement: Movement
    balance: Balance


class CreditsReversed(_Model):
    """Credits of a payment were taken back: a refund, a chargeback, undone cash. Once per
    movement (a payment reversed in steps sends one per step). The balance may be below zero."""

    userId: UserId
    clerkUserId: ClerkUserId
    credits: int = Field(ge=1, description="The credits taken back.")
    kind: Literal["grant_reversal"]
    reference: Reference
    reason: Reason
    movement: Movement
    balance: Balance


class CreditsExpiring(_Model):
    """A grant with credits left expires soon (PEDRO_NOTIFY_EXPIRING_DAYS ahead). Once per
    grant. Remind the user to use them."""

    userId: UserId
    clerkUserId: str | None = Field(
        description='The user\'s Clerk id; null only when the app\'s "User" row is gone.'
    )
    grantId: str = Field(
        description="The grant: `plan/<payment>/<n>`, `rollover/<grant>`, `pack/<payment>/0`, "
        "`adjustment/<event id>`…"
    )
    source: str = Field(
        description="What gave it (docs/ledger.md, Grants).", examples=["plan", "rollover", "pack"]
    )
    credits: int = Field(
        ge=1, description="The credits left in it when this was written: what expires unless used."
    )
    expiresAt: Timestamp = Field(description="When it expires (ISO 8601, UTC).")


class CreditsExpired(_Model):
    """Credits expired: a grant ended with credits left (a month of a plan, a pack with
    `validMonths`, an adjustment with `expiresAt`), or credits given back to a grant that had
    already ended (a refund, a released hold) expired at once. Once per movement."""

    userId: UserId
    clerkUserId: ClerkUserId
    credits: int = Field(ge=1, description="The credits that expired.")
    kind: Literal["grant_expiry"]
    reference: Reference
    reason: Reason
    movement: Movement
    balance: Balance


class HoldExpired(_Model):
    """A credit hold (POST /v1/holds) reached its `ttlSeconds` without a capture or release: its
    credits went back to the user. Once per hold. Nothing was charged for the work it was held
    for: if that work did happen, record it with a `usage.recorded`."""

    userId: UserId
    clerkUserId: ClerkUserId
    holdId: str = Field(description="The hold's id.")
    credits: int = Field(ge=0, description="The credits the hold gave back.")
    balance: Balance


class UsageRejected(_Model):
    """An event of the usage queue (`usage.recorded`, `usage.refunded`, `credits.adjusted`) was
    rejected and will never apply (`worker.rejection`). Once per event id and reason. Fix the
    publisher; to try again publish a new event (a new id): a replay stays rejected."""

    eventId: str | None = Field(
        description="The event's id; null when it had no readable one (then each distinct "
        "payload is notified once)."
    )
    eventType: str | None = Field(description="The event's `type` as sent; null when it had none.")
    clerkUserId: str | None = Field(
        description="The `clerkUserId` the event named, as sent: not checked (a rejected event "
        "may name no user, or one that does not exist)."
    )
    reason: str = Field(
        description="Why (docs/ledger.md, Rejection reasons).",
        examples=["validation_error", "idempotency_conflict", "insufficient_credits"],
    )
    detail: str | None = Field(
        description="More, for a developer: the fields that failed validation (never their "
        "values), the balance and change that did not fit…"
    )


class EventWaiting(_Model):
    """An event has waited longer than PEDRO_NOTIFY_WAITING_AFTER_S for something it needs (a
    user that does not exist yet, a plan, a cost…) in `worker.waiting`. Once per event. Usually
    the app did not publish something: a `user.created`, a plan's credits (docs/ledger.md,
    Waiting)."""

    eventId: str = Field(description="The waiting event's id.")
    family: str = Field(
        description="Its queue: `usage`, `users`, `billing` or `storage`.", examples=["usage"]
    )
    eventType: str = Field(description="The event's `type`.", examples=["usage.recorded"])
    clerkUserId: str | None = Field(description="The user it is about, when it names one.")
    reason: str = Field(
        description="Why it waits (docs/ledger.md, Waiting).",
        examples=["unknown_user", "no_cost", "no_plan", "refund_before_usage"],
    )
    waitsFor: str = Field(
        description="What releases it: `user:<clerk id>`, `cost:<label>`, `plan:<id>`, "
        "`usage:<id>`…",
        examples=["user:user_2abc"],
    )
    detail: str | None = Field(description="A sentence for whoever fixes it.")
    since: Timestamp = Field(description="When it first waited (ISO 8601, UTC).")


class UserProvisioned(_Model):
    """The worker created the user's balance, from a Clerk `user.created` or `user.updated` (a
    user whose balance the app created itself is not announced). Once per Clerk user id. The
    starter credits, when given, also come as a `credits.granted` of kind `starter`."""

    userId: UserId
    clerkUserId: ClerkUserId
    email: str | None = Field(description="The email the Clerk event carried; null when none.")
    starterCredits: int = Field(
        ge=0,
        description="The starter credits given now (0: none configured, or this Clerk id had "
        "them before).",
    )


DATA_MODELS: dict[str, type[_Model]] = {
    "credits.low": CreditsLow,
    "credits.depleted": CreditsDepleted,
    "credits.granted": CreditsGranted,
    "credits.reversed": CreditsReversed,
    "credits.expiring": CreditsExpiring,
    "credits.expired": CreditsExpired,
    "hold.expired": HoldExpired,
    "usage.rejected": UsageRejected,
    "event.waiting": EventWaiting,
    "user.provisioned": UserProvisioned,
}

_TIMESTAMP = "When the change happened (ISO 8601, UTC): the time of the transaction that made it."
_DATA = "The type's payload."


class CreditsLowNotification(_Model):
    """The body of a `credits.low` delivery."""

    type: Literal["credits.low"]
    timestamp: Timestamp = Field(description=_TIMESTAMP)
    data: CreditsLow = Field(description=_DATA)


class CreditsDepletedNotification(_Model):
    """The body of a `credits.depleted` delivery."""

    type: Literal["credits.depleted"]
    timestamp: Timestamp = Field(description=_TIMESTAMP)
    data: CreditsDepleted = Field(description=_DATA)


class CreditsGrantedNotification(_Model):
    """The body of a `credits.granted` delivery."""

    type: Literal["credits.granted"]
    timestamp: Timestamp = Field(description=_TIMESTAMP)
    data: CreditsGranted = Field(description=_DATA)


class CreditsReversedNotification(_Model):
    """The body of a `credits.reversed` delivery."""

    type: Literal["credits.reversed"]
    timestamp: Timestamp = Field(description=_TIMESTAMP)
    data: CreditsReversed = Field(description=_DATA)


class CreditsExpiringNotification(_Model):
    """The body of a `credits.expiring` delivery."""

    type: Literal["credits.expiring"]
    timestamp: Timestamp = Field(description=_TIMESTAMP)
    data: CreditsExpiring = Field(description=_DATA)


class CreditsExpiredNotification(_Model):
    """The body of a `credits.expired` delivery."""

    type: Literal["credits.expired"]
    timestamp: Timestamp = Field(description=_TIMESTAMP)
    data: CreditsExpired = Field(description=_DATA)


class HoldExpiredNotification(_Model):
    """The body of a `hold.expired` delivery."""

    type: Literal["hold.expired"]
    timestamp: Timestamp = Field(description=_TIMESTAMP)
    data: HoldExpired = Field(description=_DATA)


class UsageRejectedNotification(_Model):
    """The body of a `usage.rejected` delivery."""

    type: Literal["usage.rejected"]
    timestamp: Timestamp = Field(description=_TIMESTAMP)
    data: UsageRejected = Field(description=_DATA)


class EventWaitingNotification(_Model):
    """The body of a `event.waiting` delivery."""

    type: Literal["event.waiting"]
    timestamp: Timestamp = Field(description=_TIMESTAMP)
    data: EventWaiting = Field(description=_DATA)


class UserProvisionedNotification(_Model):
    """The body of a `user.provisioned` delivery."""

    type: Literal["user.provisioned"]
    timestamp: Timestamp = Field(description=_TIMESTAMP)
    data: UserProvisioned = Field(description=_DATA)


Notification = Annotated[
    Union[
        CreditsLowNotification,
        CreditsDepletedNotification,
        CreditsGrantedNotification,
        CreditsReversedNotification,
        CreditsExpiringNotification,
        CreditsExpiredNotification,
        HoldExpiredNotification,
        UsageRejectedNotification,
        EventWaitingNotification,
        UserProvisionedNotification,
    ],
    Field(discriminator="type"),
]
notification_adapter: TypeAdapter[Any] = TypeAdapter(Notification)


class _Schema(GenerateJsonSchema):
    # No per-field titles ("Clerkuserid"): type generators (json-schema-to-typescript) would make
    # a named type of each one.
    def field_title_should_be_set(self, schema: Any) -> bool:
        return False


def json_schema() -> dict[str, Any]:
    """JSON Schema of every notification's body, for the app (docs/notifications.schema.json)."""
    generated = notification_adapter.json_schema(mode="serialization", schema_generator=_Schema)
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "pedro-worker notifications",
        "description": "The body of a notification (docs/notifications.md): its `type` says what "
        "`data` holds. Signed per Standard Webhooks; dedupe on the `webhook-id` header.",
        "oneOf": generated["oneOf"],
        "discriminator": generated["discriminator"],
        "$defs": generated["$defs"],
    }
