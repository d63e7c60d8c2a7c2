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

`externalReference` (payment, else subscription) names the Clerk user, either as the bare
Clerk user id or as JSON `{"clerkUserId": "...", "planId": "..."}` (docs/ingress.md).
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse

from ...events import ProviderEventId, describe_validation_error, validate_event
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


def parse_asaas_datetime(text: str) -> datetime:
    """An Asaas date or date-time as UTC: zone-less values are São Paulo local time."""
    text = text.strip()
    for fmt in _FORMATS:
        try:
            naive = datetime.strptime(text, fmt)
        except ValueError:
            continue
        return naive.replace(tzinfo=SAO_PAULO).astimezone(UTC)
    parsed = datetime.fromisoformat(text)  # ISO-8601 with a zone, should Asaas ever send one
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=SAO_PAULO)).astimezone(UTC)


def parse_external_reference(value: Any) -> tuple[str | None, str | None]:
    """(Clerk user id, plan id) from `externalReference`: a bare Clerk user id or JSON."""
    if not isinstance(value, str) or not value.strip():
        return None, None
    text = value.strip()
    if text.startswith("{"):
        try:
            data = json.loads(text)
        except ValueError:
            return None, None
        clerk = data.get("clerkUserId") if isinstance(data, dict) else None
        plan = data.get("planId") if isinstance(data, dict) else None
        clerk = clerk if isinstance(clerk, str) and _CLERK_USER_ID.match(clerk) else None
        return clerk, str(plan) if isinstance(plan, str | int) and str(plan) else None
    return (text if _CLERK_USER_ID.match(text) else None), None


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


def to_billing_event(payload: Any) -> dict[str, Any] | None:
    """Our `billing.event` for an Asaas webhook payload, or None for events we do not record.
    Raises `Refused` for a payload we cannot read."""
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
        hook = AsaasWebhook.model_validate(payload)
    except ValidationError as exc:
        raise Refused(INVALID, describe_validation_error(exc)) from None
    payment = hook.payment or {}
    subscription = hook.subscription or {}
    kind = "payment" if hook.payment else "subscription" if hook.subscription else "checkout"
    subject = hook.payment or hook.subscription or hook.checkout or {}
    clerk, plan = parse_external_reference(subject.get("externalReference"))
    event = {
        "type": "billing.event", "id": hook.id, "provider": "asaas", "eventType": hook.event,
        "status": str(subject.get("status") or hook.event)[:64],
        "occurredAt": _event_time(hook, kind, subject).isoformat(),
        "paymentId": payment.get("id"),
        "subscriptionId": payment.get("subscription") if hook.payment else subscription.get("id"),
        "paymentLinkId": subject.get("paymentLink"),
        "planId": plan, "clerkUserId": clerk, "metadata": payload,
    }  # fmt: skip
    event = {key: value for key, value in event.items() if value is not None}
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
