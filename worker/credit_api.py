"""The synchronous credit API's contract (POST /v1/holds …, GET /v1/users/…): pydantic models
for what the app sends and what it gets back. Validation is as strict as the events'
(worker/events.py): unknown fields refused, no "5" for 5.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, model_validator

from .codec import payload_hash
from .events import INT32_MAX, ClerkUserId, Details, EventId, OperationType
from .ledger.holds import DEFAULT_TTL_S, MAX_TTL_S

OverCapture = Literal["reject", "cap", "overflow"]


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class HoldRequest(_Request):
    """Set credits aside for an AI call in progress: `credits`, or the cost of `operationType`."""

    id: EventId = Field(description="The hold's idempotency key (shares the namespace of event ids).")
    clerkUserId: ClerkUserId
    credits: Annotated[StrictInt, Field(gt=0, le=INT32_MAX)] | None = Field(
        None, description="Credits to hold; absent -> the cost of operationType."
    )
    operationType: OperationType | None = Field(
        None, description="What the credits are for: the capture's \"UsageHistory\" operationType."
    )
    ttlSeconds: Annotated[StrictInt, Field(ge=1, le=MAX_TTL_S)] = Field(
        DEFAULT_TTL_S, description="The hold expires (is released) after this many seconds."
    )
    overCapture: OverCapture = Field(
        "overflow",
        description="A capture above the hold: reject it (409), cap it at the hold, or charge it "
        "all (overflow: the balance may go below zero).",
    )
    details: Details = None

    @model_validator(mode="after")
    def _credits_or_operation_type(self) -> HoldRequest:
        if self.credits is None and self.operationType is None:
            raise ValueError("give credits, operationType, or both")
        return self

    def request_hash(self) -> str:
        return payload_hash(self.model_dump(mode="json"))


class CaptureRequest(_Request):
    """Charge the usage against the hold; what was held beyond it comes back."""

    credits: Annotated[StrictInt, Field(ge=0, le=INT32_MAX)] | None = Field(
        None, description="Credits used; absent -> the whole hold."
    )
    operationType: OperationType | None = Field(
        None, description="Absent -> the hold's (one of them is required)."
    )
    details: Details = Field(None, description="Absent -> the hold's.")


class HoldView(BaseModel):
    id: str
    clerkUserId: str
    credits: int
    status: Literal["held", "captured", "released", "expired"]
    expiresAt: datetime
    createdAt: datetime
    captured: int | None = None
    usageId: str | None = Field(None, description='The capture\'s "UsageHistory" id.')
    resolvedAt: datetime | None = None
    resolvedBy: str | None = None


class BalanceView(BaseModel):
    remaining: int = Field(description='"CreditBalance".creditsRemaining: open holds already taken out.')
    held: int = Field(description="Credits in open holds.")
    available: int = Field(description="What a new hold or a usage may take now without going into debt.")


class HoldAnswer(BaseModel):
    hold: HoldView
    balance: BalanceView


class UserBalanceView(BalanceView):
    waiting: int = Field(description="The user's events waiting in the worker (worker.waiting).")


class Movement(BaseModel):
    id: str = Field(description="The journal key (the event id, or hold/…, capture/…, grant/…).")
    kind: str
    credits: int = Field(description="The balance change: negative spent, positive given.")
    reference: str | None = None
    reason: str | None = None
    at: datetime


class MovementsPage(BaseModel):
    movements: list[Movement]
    nextCursor: str | None = Field(None, description="Pass as ?cursor= for the next (older) page.")
