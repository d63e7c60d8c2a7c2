"""POST /webhooks/asaas: Asaas payment and subscription events -> `billing.event`.

Asaas authenticates with the token set on the webhook (header `asaas-access-token`), retries
until it gets HTTP 200 and pauses the webhook's queue after repeated failures, so we answer 200
as soon as the event is in Redis. Its event `id` (e.g. `evt_05b7…&368604920`) is our idempotency
key and the "SubscriptionEvent" id. Payloads grow new fields over time: unknown ones are kept
(in metadata) and ignored.

Dates: the top-level `dateCreated` is `YYYY-MM-DD HH:mm:ss` in São Paulo time without a zone;
payment dates are `YYYY-MM-DD`, subscription dates sometimes `DD/MM/YYYY`. All become UTC.

`externalReference` (payment, else subscription) names the Clerk user, either as the bare
Clerk user id or as JSON `{"clerkUserId": "...", "planId": "..."}` (docs/ingress.md).
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse

from ...events import describe_validation_error
from ..auth import require_asaas_token
from ..context import ingress
from ..http import HttpError, parse_json, read_body
from .common import accept, checked, ignore

SAO_PAULO = ZoneInfo("America/Sao_Paulo")
RECORDED_PREFIXES = ("PAYMENT_", "SUBSCRIPTION_", "CHECKOUT_")
_FORMATS = ("%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d", "%d/%m/%Y %H:%M:%S", "%d/%m/%Y")
_CLERK_USER_ID = re.compile(r"^[A-Za-z0-9_\-]{1,191}$")
# where an event's time is read when the top-level dateCreated is missing, in order
_FALLBACK_DATES = ("confirmedDate", "paymentDate", "clientPaymentDate", "dateCreated")


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


def _event_time(hook: AsaasWebhook, subject: dict[str, Any]) -> datetime:
    candidates = [hook.dateCreated] + [subject.get(name) for name in _FALLBACK_DATES]
    for value in candidates:
        if isinstance(value, str) and value.strip():
            try:
                return parse_asaas_datetime(value)
            except ValueError:
                raise HttpError(
                    400, "invalid_payload", f"unreadable Asaas date {value[:40]!r}"
                ) from None
    raise HttpError(400, "invalid_payload", "the event has no dateCreated")


def to_billing_event(payload: Any) -> dict[str, Any] | None:
    """Our `billing.event` for an Asaas webhook payload, or None for events we do not record."""
    try:
        hook = AsaasWebhook.model_validate(payload)
    except ValidationError as exc:
        raise HttpError(400, "invalid_payload", describe_validation_error(exc)) from None
    if not hook.event.startswith(RECORDED_PREFIXES):
        return None
    payment = hook.payment or {}
    subscription = hook.subscription or {}
    subject = hook.payment or hook.subscription or hook.checkout or {}
    clerk, plan = parse_external_reference(subject.get("externalReference"))
    event = {
        "type": "billing.event", "id": hook.id, "provider": "asaas", "eventType": hook.event,
        "status": str(subject.get("status") or hook.event)[:64],
        "occurredAt": _event_time(hook, subject).isoformat(),
        "paymentId": payment.get("id"),
        "subscriptionId": payment.get("subscription") if hook.payment else subscription.get("id"),
        "paymentLinkId": subject.get("paymentLink"),
        "planId": plan, "clerkUserId": clerk, "metadata": payload,
    }  # fmt: skip
    return checked({key: value for key, value in event.items() if value is not None})


async def asaas_webhook(request: Request) -> JSONResponse:
    state = ingress(request)
    require_asaas_token(request, state.settings.asaas_webhook_token)
    payload = parse_json(await read_body(request, state.settings.ingress_max_body_bytes))
    event = to_billing_event(payload)
    if event is None:
        return ignore(request, "asaas", payload.get("event"))
    return await accept(request, "asaas", event)
