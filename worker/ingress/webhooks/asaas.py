"""POST /webhooks/asaas: Asaas payment and subscription events -> `billing.event`.

Asaas authenticates with the token set on the webhook (header `asaas-access-token`), retries
until it gets HTTP 200 and pauses the webhook's queue (all later events too) after repeated
failures, so we answer 200 as soon as the event is in Redis, and never refuse an authenticated
payload: one we cannot read (not JSON, no event name or id, a field we cannot convert, an event
that breaks our contract) is answered 200 and enqueued as a rejection the billing actor stores
in `worker.rejection` (keyed by its Asaas id, else a hash of the body: a redelivery is stored
once). Only a wrong token (401) or an unreachable Redis (503) is not a 200. Its event `id`
(e.g. `evt_05b7…&368604920`) is our idempotency key and the "SubscriptionEvent" id. Payloads
grow new fields over time: unknown ones are kept (in metadata) and ignored.

Dates: the top-level `dateCreated` is `YYYY-MM-DD HH:mm:ss` in São Paulo time without a zone;
payment dates are `YYYY-MM-DD`, subscription dates sometimes `DD/MM/YYYY`. All become UTC.
Money: Asaas sends reais as JSON numbers (49.9); the event carries integer cents.

`externalReference` (the event's own object's) names the Clerk user, either as the bare Clerk
user id or as JSON `{"clerkUserId": "...", "planId": "...", "installmentCount": 3}`
(docs/ingress.md). A payment also brings its customer, subscription, installment plan,
payment link, value, refunds and chargeback; a subscription its customer, value, cycle and
next due date: each becomes a field of the `billing.event` when Asaas sent it.
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import UTC, datetime, time
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, NamedTuple, get_args
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse

from ...events import BillingCycle, ProviderEventId, describe_validation_error, validate_event
from ..auth import require_asaas_token
from ..context import ingress
from ..http import read_body
from .common import accept, answer_rejected, ignore, rejection

SAO_PAULO = ZoneInfo("America/Sao_Paulo")
RECORDED_PREFIXES = ("PAYMENT_", "SUBSCRIPTION_", "CHECKOUT_")
_FORMATS = ("%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d", "%d/%m/%Y %H:%M:%S", "%d/%m/%Y")
_CLERK_USER_ID = re.compile(r"^[A-Za-z0-9_\-]{1,191}$")
# where an event's time is read when the top-level dateCreated is missing, in order
_FALLBACK_DATES = ("confirmedDate", "paymentDate", "clientPaymentDate", "dateCreated")
_EVENT_ID: TypeAdapter[str] = TypeAdapter(ProviderEventId)
_CYCLES = frozenset(get_args(BillingCycle))
# "Parcela 3 de 3. Este boleto refere-se…" (as Asaas writes an installment's description),
# also "3/3" and "3 of 3"; not a date's "06/12/2024" (a digit or '/' on either side)
_INSTALLMENT_OF = re.compile(
    r"(?<![\d/])(\d{1,3})\s*(?:de|of|/)\s*(\d{1,3})(?![\d/])", re.IGNORECASE
)
_CANCELLED_REFUND = "CANCELLED"  # a refund's statuses: PENDING, CANCELLED, DONE

# rejection reasons: which event it is cannot be told / an Asaas event we cannot turn into ours
UNREADABLE = "asaas_unreadable"
INVALID = "validation_error"


class Refused(Exception):
    """An authenticated payload we cannot turn into a `billing.event`: stored as a rejection.
    `detail` names what is wrong, never the values."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason, self.detail = reason, detail


class AsaasWebhook(BaseModel):
    """The fields we read; everything else is tolerated."""

    model_config = ConfigDict(extra="allow")

    id: str
    event: str
    dateCreated: str | None = None
    payment: dict[str, Any] | None = None
    subscription: dict[str, Any] | None = None
    checkout: dict[str, Any] | None = None


class ExternalReference(NamedTuple):
    """What an `externalReference` names; None where it names nothing."""

    clerk_user_id: str | None = None
    plan_id: str | None = None
    installment_count: int | None = None


def parse_asaas_datetime(text: str) -> datetime:
    """An Asaas date or date-time as UTC: zone-less values are São Paulo local time.
    Raises ValueError for anything else (a date UTC cannot hold, too)."""
    text = text.strip()
    try:
        for fmt in _FORMATS:
            try:
                naive = datetime.strptime(text, fmt)
            except ValueError:
                continue
            return naive.replace(tzinfo=SAO_PAULO).astimezone(UTC)
        parsed = datetime.fromisoformat(text)  # ISO-8601 with a zone, should Asaas ever send one
        return (parsed if parsed.tzinfo else parsed.replace(tzinfo=SAO_PAULO)).astimezone(UTC)
    except OverflowError:  # 9999-12-31 23:59:59 in São Paulo is past datetime.max in UTC
        raise ValueError("out of range") from None


def parse_external_reference(value: Any) -> ExternalReference:
    """What `externalReference` names: a bare Clerk user id, or JSON with `clerkUserId`,
    `planId` and `installmentCount` (each optional). Anything else names nothing."""
    if not isinstance(value, str) or not value.strip():
        return ExternalReference()
    text = value.strip()
    if not text.startswith("{"):
        return ExternalReference(text if _CLERK_USER_ID.match(text) else None)
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        return ExternalReference()
    if not isinstance(data, dict):
        return ExternalReference()
    clerk, plan = data.get("clerkUserId"), data.get("planId")
    plan_ok = isinstance(plan, str | int) and not isinstance(plan, bool) and str(plan) != ""
    return ExternalReference(
        clerk if isinstance(clerk, str) and _CLERK_USER_ID.match(clerk) else None,
        str(plan) if plan_ok else None,
        _positive_int(data.get("installmentCount")),
    )


def _positive_int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 1 else None


def _optional_datetime(value: Any) -> datetime | None:
    """An Asaas date as UTC, or None when there is none or it cannot be read."""
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        return parse_asaas_datetime(value)
    except ValueError:
        return None


def _start_of_sao_paulo_day(value: Any) -> datetime | None:
    """The first instant, in UTC, of the São Paulo day an Asaas date names."""
    moment = _optional_datetime(value)
    if moment is None:
        return None
    day = moment.astimezone(SAO_PAULO).date()
    return datetime.combine(day, time(), SAO_PAULO).astimezone(UTC)


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


def to_cents(value: Any, where: str) -> int | None:
    """Reais (a JSON number) as integer cents, half-up: 49.9 -> 4990, 0.005 -> 1. None stays
    None; anything that is not a finite number is refused, naming `where`."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise Refused(INVALID, f"{where}: not a number")
    amount = Decimal(str(value))
    if not amount.is_finite():
        raise Refused(INVALID, f"{where}: not a number")
    if amount.adjusted() > 20:  # far past any contract bound; quantize would need more digits
        raise Refused(INVALID, f"{where}: out of range")
    return int((amount * 100).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def _refunded_cents(refunds: Any) -> int | None:
    """What the payment's refunds that are not cancelled add up to; None without refunds."""
    if not isinstance(refunds, list) or not refunds:
        return None
    total = 0
    for index, refund in enumerate(refunds):
        if not isinstance(refund, dict):
            raise Refused(INVALID, f"payment.refunds[{index}]: not an object")
        if refund.get("status") == _CANCELLED_REFUND:
            continue
        where = f"payment.refunds[{index}].value"
        cents = to_cents(refund.get("value"), where)
        if cents is None:  # a refund of nothing cannot be told from a refund we cannot read
            raise Refused(INVALID, f"{where}: not a number")
        total += cents
    return total


def _chargeback_status(chargeback: Any) -> str | None:
    status = chargeback.get("status") if isinstance(chargeback, dict) else None
    return status[:64] if isinstance(status, str) and status.strip() else None


def _installment_count(payment: dict[str, Any], number: int | None) -> int | None:
    """How many installments the payment's plan has, as its description says ("Parcela 2 de
    3."): only for a payment of an installment plan, and only when the description agrees with
    its installmentNumber."""
    description = payment.get("description")
    if not payment.get("installment") or not isinstance(description, str):
        return None
    match = _INSTALLMENT_OF.search(description)
    if match is None:
        return None
    nth, count = int(match[1]), int(match[2])
    if not 1 <= nth <= count or (number is not None and nth != number):
        return None
    return count


def _string(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _payment_fields(payment: dict[str, Any], reference: ExternalReference) -> dict[str, Any]:
    number = _positive_int(payment.get("installmentNumber"))
    return {
        "paymentId": payment.get("id"),
        "subscriptionId": payment.get("subscription"),
        "installmentId": payment.get("installment"),
        "installmentNumber": number,
        "installmentCount": reference.installment_count or _installment_count(payment, number),
        "valueCents": to_cents(payment.get("value"), "payment.value"),
        "refundedCents": _refunded_cents(payment.get("refunds")),
        "chargebackStatus": _chargeback_status(payment.get("chargeback")),
        "paymentCreatedAt": _iso(_start_of_sao_paulo_day(payment.get("dateCreated"))),
    }


def _subscription_fields(subscription: dict[str, Any]) -> dict[str, Any]:
    cycle = subscription.get("cycle")
    return {
        "subscriptionId": subscription.get("id"),
        "valueCents": to_cents(subscription.get("value"), "subscription.value"),
        "cycle": cycle if isinstance(cycle, str) and cycle in _CYCLES else None,
        "nextDueDate": _iso(_optional_datetime(subscription.get("nextDueDate"))),
    }


def _event_time(hook: AsaasWebhook, kind: str, subject: dict[str, Any]) -> datetime:
    candidates = [("dateCreated", hook.dateCreated)]
    candidates += [(f"{kind}.{name}", subject.get(name)) for name in _FALLBACK_DATES]
    for name, value in candidates:
        if isinstance(value, str) and value.strip():
            try:
                return parse_asaas_datetime(value)
            except ValueError:
                raise Refused(INVALID, f"{name}: not an Asaas date") from None
    raise Refused(INVALID, "dateCreated: missing, and no date in the event's object")


def event_key(payload: Any) -> str | None:
    """The payload's Asaas event id, if it is a usable one."""
    try:
        return _EVENT_ID.validate_python(payload.get("id") if isinstance(payload, dict) else None)
    except ValidationError:
        return None


def read_payload(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (ValueError, RecursionError):
        raise Refused(UNREADABLE, "the body is not valid JSON") from None


def _read_webhook(payload: Any) -> AsaasWebhook | None:
    """The webhook's envelope, or None for an event we do not record."""
    if not isinstance(payload, dict):
        raise Refused(UNREADABLE, "the body is not a JSON object")
    name = payload.get("event")
    if not isinstance(name, str) or not name:
        raise Refused(UNREADABLE, "event: missing, or not a string")
    if not name.startswith(RECORDED_PREFIXES):
        return None
    if event_key(payload) is None:
        raise Refused(UNREADABLE, "id: missing, or not an Asaas event id")
    try:
        return AsaasWebhook.model_validate(payload)
    except ValidationError as exc:
        raise Refused(INVALID, describe_validation_error(exc)) from None


def to_billing_event(payload: Any) -> dict[str, Any] | None:
    """Our `billing.event` for an Asaas webhook payload, or None for events we do not record.
    Raises `Refused` for a payload we cannot read."""
    hook = _read_webhook(payload)
    if hook is None:
        return None
    kind = "payment" if hook.payment else "subscription" if hook.subscription else "checkout"
    subject = hook.payment or hook.subscription or hook.checkout or {}
    reference = parse_external_reference(subject.get("externalReference"))
    event = {
        "type": "billing.event", "id": hook.id, "provider": "asaas", "eventType": hook.event,
        "status": str(subject.get("status") or hook.event)[:64],
        "occurredAt": _event_time(hook, kind, subject).isoformat(),
        "clerkUserId": reference.clerk_user_id, "planId": reference.plan_id,
        "customerId": _string(subject.get("customer")), "paymentLinkId": subject.get("paymentLink"),
    }  # fmt: skip
    if kind == "payment":
        event |= _payment_fields(subject, reference)
    elif kind == "subscription":
        event |= _subscription_fields(subject)
    event = {key: value for key, value in event.items() if value is not None}
    event["metadata"] = payload
    try:
        validate_event(event)
    except ValidationError as exc:
        raise Refused(INVALID, describe_validation_error(exc)) from None
    return event


def refusal(body: bytes, refused: Refused) -> dict[str, Any]:
    """The rejection the billing actor stores, keyed by the Asaas event id, else by a hash of
    the body: every delivery of the same payload has the same key, so it is stored once."""
    try:
        payload = json.loads(body)
    except (ValueError, RecursionError):
        payload = body.decode("utf-8", "replace")
    key = event_key(payload) or "asaas_body:" + hashlib.sha256(body).hexdigest()
    return rejection(key, "billing.event", refused.reason, refused.detail, payload)


async def asaas_webhook(request: Request) -> JSONResponse:
    state = ingress(request)
    require_asaas_token(request, state.settings.asaas_webhook_token)
    body = await read_body(request, state.settings.ingress_max_body_bytes)
    try:
        payload = read_payload(body)
        event = to_billing_event(payload)
    except Refused as exc:
        return await answer_rejected(request, "asaas", "billing", refusal(body, exc))
    if event is None:
        return ignore(request, "asaas", payload.get("event"))
    return await accept(request, "asaas", event)
