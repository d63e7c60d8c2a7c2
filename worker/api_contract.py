"""The /v1 API's answers as the app receives them: pydantic models of the JSON bodies the ingress
sends back, beside the requests' models (worker/events.py, worker/credit_api.py).

`docs/openapi.json` is generated from all of them (worker/ingress/openapi.py), and so is the
TypeScript client's types (clients/typescript). Every body carries `requestId`, the value of
the `x-request-id` header; every error is `{error, detail, requestId}`, and some errors add
fields (402's `available`, 409 `over_capture`'s `held` and `requested`, …).

The endpoints build these bodies as plain dicts of the same shape (POST /v1/events is a hot
path: a model per event result would double the cost of checking it);
tests/integration/ingress/test_openapi.py validates the running ingress's answers against the
generated document, with every object closed to fields it does not name.
"""

from __future__ import annotations

from typing import Annotated, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, RootModel

from .credit_api import BalanceView, HoldAnswer, HoldView, MovementsPage, UserBalanceView
from .events import EVENT_MODELS

RequestId = Annotated[
    str,
    Field(description="The request's id, as in the `x-request-id` header: the caller's own when it "
          "sent a sane one (`[A-Za-z0-9._:-]{1,128}`), else one made up. Every log line of the "
          "request carries it."),
]  # fmt: skip

# --- POST /v1/events ------------------------------------------------------------------------------


class Event(RootModel[Annotated[Union[EVENT_MODELS], Field(discriminator="type")]]):  # type: ignore[valid-type]
    """Any event of the contract (worker/events.py), by its `type`. Its `id` is its idempotency
    key: the same id again is a duplicate, applied once."""


class EventBatch(BaseModel):
    """`{"events": [...]}`: the same as a bare array."""

    model_config = ConfigDict(extra="forbid")

    events: list[Event] = Field(min_length=1, description="At most `PEDRO_INGRESS_MAX_BATCH` (1000) events.")


EventsRequest = Annotated[
    Union[Event, Annotated[list[Event], Field(min_length=1)], EventBatch],
    Field(description="One event, an array of at most `PEDRO_INGRESS_MAX_BATCH` (1000) events, or "
          '`{"events": [...]}`. Each event is validated on its own: the valid ones are queued even '
          "when others are not."),
]  # fmt: skip

EventIndex = Annotated[int, Field(ge=0, description="The event's position in the request, from 0.")]
SentId = Annotated[
    str | None,
    Field(description="The event's `id` as sent (null when it sent no string)."),
]


class EventAccepted(BaseModel):
    """Durably queued (in Redis): the worker applies it exactly once, or records why it refused
    it (docs/ledger.md). Publishing it again is harmless: its `id` is its idempotency key."""

    index: EventIndex
    id: SentId
    status: Literal["accepted"]


class EventRejected(BaseModel):
    """Not queued: it breaks the contract. Fix it and publish it again."""

    index: EventIndex
    id: SentId
    status: Literal["rejected"]
    reason: Literal["validation_error", "unknown_event_type"]
    detail: str = Field(description="Which fields are wrong and why (never their values).")


class EventResult(RootModel[Annotated[Union[EventAccepted, EventRejected], Field(discriminator="status")]]):
    """One event's result, by `status`."""


class EventsAccepted(BaseModel):
    """202: at least one event of the request is queued; `results` has every event, in order."""

    accepted: int = Field(ge=1)
    rejected: int = Field(ge=0)
    results: list[EventResult]
    requestId: RequestId


# --- errors ---------------------------------------------------------------------------------------


class ErrorBody(BaseModel):
    """Every 4xx/5xx answer. `error` is for programs, `detail` for people; neither echoes a
    secret or the input. Some errors add fields: EventsRefused, InsufficientCredits,
    OverCapture, HoldExpired."""

    error: str = Field(description="What went wrong, for programs: `unauthorized`, `unknown_hold`, …")
    detail: str = Field(description="What went wrong, for people.")
    requestId: RequestId


class EventsRefused(ErrorBody):
    """422 from POST /v1/events: no event of the request is valid, none was queued. `error` is
    the one event's reason, or `validation_error` for a batch."""

    error: Literal["validation_error", "unknown_event_type"]
    accepted: Literal[0]
    rejected: int = Field(ge=1)
    results: list[EventResult]


class InsufficientCredits(ErrorBody):
    """402 from POST /v1/holds: the user has fewer credits available than asked. Nothing held:
    don't start the work."""

    error: Literal["insufficient_credits"]
    available: int = Field(description="What a hold may take now.")


class OverCapture(ErrorBody):
    """409 from a capture above the hold when the hold's `overCapture` is `reject`. The hold is
    still open: capture at most `held`, or release it."""

    error: Literal["over_capture"]
    held: int
    requested: int


class HoldExpired(ErrorBody):
    """409 from a capture of a hold past its expiry: its credits were released (by this request
    or before), nothing was charged. `hold` and `balance` are as they are now."""

    error: Literal["hold_expired"]
    hold: HoldView
    balance: BalanceView


# --- the credit API's answers -----------------------------------------------------------------------


class HoldResponse(HoldAnswer):
    """A hold as it is now, and its user's balance. `Idempotent-Replayed: true` when the request
    changed nothing (the same hold placed again, a capture or release of a resolved hold)."""

    requestId: RequestId


class BalanceResponse(UserBalanceView):
    """A user's balance (holds past their expiry counted as released)."""

    requestId: RequestId


class MovementsResponse(MovementsPage):
    """One page of a user's journal movements, newest first."""

    requestId: RequestId
