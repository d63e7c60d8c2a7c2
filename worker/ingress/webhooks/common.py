"""What the three webhook handlers share: contract check, enqueue-and-answer, ignore."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse

from ...events import describe_validation_error, validate_event
from ..context import ingress
from ..http import HttpError, enqueue, json_response, log


def checked(event: dict[str, Any]) -> dict[str, Any]:
    """The converted event if it satisfies our contract, else 400 invalid_payload."""
    try:
        validate_event(event)
    except ValidationError as exc:
        raise HttpError(400, "invalid_payload", describe_validation_error(exc)) from None
    return event


async def accept(request: Request, provider: str, event: dict[str, Any]) -> JSONResponse:
    """HTTP 200 once the event is in Redis (503 if Redis is unreachable)."""
    await enqueue(ingress(request).publisher, [event])
    log.info("webhook_accepted", provider=provider, event_id=event["id"], event_type=event["type"])
    return json_response(request, {"status": "accepted", "id": event["id"]})


def ignore(request: Request, provider: str, kind: Any) -> JSONResponse:
    """HTTP 200 for a provider event we do not handle, so the provider does not retry it."""
    log.info("webhook_ignored", provider=provider, event_type=str(kind)[:64])
    return json_response(request, {"status": "ignored"})
