"""What the three webhook handlers share: contract check, enqueue-and-answer, ignore, and
(Asaas) answer-and-store-as-a-rejection."""

from __future__ import annotations

import json
from typing import Any

from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse

from ...events import INGRESS_REJECTION, describe_validation_error, validate_event
from ...ledger.apply import safe_payload
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
    await enqueue(ingress(request), [event])
    log.info("webhook_accepted", provider=provider, event_id=event["id"], event_type=event["type"])
    return json_response(request, {"status": "accepted", "id": event["id"]})


def ignore(request: Request, provider: str, kind: Any) -> JSONResponse:
    """HTTP 200 for a provider event we do not handle, so the provider does not retry it."""
    log.info("webhook_ignored", provider=provider, event_type=str(kind)[:64])
    return json_response(request, {"status": "ignored"})


def rejection(key: str, event_type: str, reason: str, detail: str, payload: Any) -> dict[str, Any]:
    """What the worker stores as a `worker.rejection` row (worker/domain/each.py), with the
    payload bounded as every stored rejection is."""
    return {"type": INGRESS_REJECTION, "id": key, "eventType": event_type, "reason": reason,
            "detail": detail, "payload": json.loads(safe_payload(payload))}  # fmt: skip


async def answer_rejected(
    request: Request, provider: str, queue: str, refused: dict[str, Any]
) -> JSONResponse:
    """HTTP 200 for an authenticated payload we cannot read, once its rejection is in Redis
    (503 if Redis is unreachable): the provider must not retry it, nor stop its queue for it."""
    await enqueue(ingress(request), [refused], queue=queue)
    log.warning("webhook_rejected", provider=provider, event_id=refused["id"],
                reason=refused["reason"], detail=refused["detail"])  # fmt: skip
    return json_response(request, {"status": "rejected", "id": refused["id"],
                                   "reason": refused["reason"], "detail": refused["detail"]})  # fmt: skip
