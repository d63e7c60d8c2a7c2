"""POST /webhooks/clerk: Clerk user events (delivered by Svix) -> `user.*` events.

The Svix signature is checked over the raw body first (auth.py). `svix-id` is the event id, so
a redelivery is a duplicate the worker recognises. The profile's version is Clerk's
`data.updated_at` (ms), the user's creation time `data.created_at` (ms, "User".createdAt); a
deletion's time is the envelope's `timestamp` (ms). Other Clerk event types (sessions,
organisations…) are acknowledged and ignored.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse

from ..auth import require_svix_signature
from ..context import ingress
from ..http import HttpError, parse_json, read_body
from .common import accept, checked, ignore

USER_EVENTS = ("user.created", "user.updated", "user.deleted")


def _from_millis(value: Any) -> str | None:
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return datetime.fromtimestamp(value / 1000, UTC).isoformat()
    return None


def primary_email(data: dict[str, Any]) -> str | None:
    """The address whose id is `primary_email_address_id` (else the first one)."""
    addresses = [a for a in data.get("email_addresses") or [] if isinstance(a, dict)]
    primary = data.get("primary_email_address_id")
    chosen = next(
        (a for a in addresses if a.get("id") == primary), addresses[0] if addresses else None
    )
    email = chosen.get("email_address") if chosen else None
    return email if isinstance(email, str) and email else None


def full_name(data: dict[str, Any]) -> str | None:
    parts = [data.get("first_name"), data.get("last_name")]
    name = " ".join(p.strip() for p in parts if isinstance(p, str) and p.strip())
    username = data.get("username")
    return name or (username if isinstance(username, str) and username else None)


def to_user_event(svix_id: str, payload: Any) -> dict[str, Any] | None:
    """Our user event for a Clerk webhook payload, or None for event types we do not handle."""
    if not isinstance(payload, dict) or payload.get("type") not in USER_EVENTS:
        return None
    data = payload.get("data")
    if not isinstance(data, dict):
        raise HttpError(400, "invalid_payload", "data must be an object")
    event: dict[str, Any] = {"type": payload["type"], "id": svix_id, "clerkUserId": data.get("id")}
    if payload["type"] == "user.deleted":
        event["deletedAt"] = _from_millis(payload.get("timestamp")) or _from_millis(
            data.get("updated_at")
        )
    else:
        event["updatedAt"] = _from_millis(data.get("updated_at")) or _from_millis(
            payload.get("timestamp")
        )
        name = full_name(data)
        event["email"] = primary_email(data)
        event["name"] = name[:500] if name else None
        created_at = _from_millis(data.get("created_at"))
        if created_at is not None:  # absent: the worker's insert time, as before
            event["createdAt"] = created_at
    return checked(event)


async def clerk_webhook(request: Request) -> JSONResponse:
    state = ingress(request)
    body = await read_body(request, state.settings.ingress_max_body_bytes)
    require_svix_signature(request, state.clerk, body)
    payload = parse_json(body)
    event = to_user_event(request.headers["svix-id"], payload)
    if event is None:
        return ignore(request, "clerk", payload.get("type") if isinstance(payload, dict) else None)
    return await accept(request, "clerk", event)
