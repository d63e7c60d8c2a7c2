"""POST /v1/events: the app hands over one event or a batch of up to `ingress_max_batch`.

Body: one event object, a JSON array of events, or `{"events": [...]}`. Each event is validated
against the contract (worker/events.py); the valid ones are enqueued even when others are not,
and the answer lists every event's result in input order:

    202 {"accepted": 2, "rejected": 1, "results": [
          {"index": 0, "id": "u1", "status": "accepted"},
          {"index": 1, "id": "u2", "status": "rejected", "reason": "validation_error", "detail": "..."},
          ...], "requestId": "..."}

When no event is valid the answer is 422 with the same results. "accepted" means durably in
Redis; the worker then applies each event exactly once (or records why it refused it). The
answers' models: worker/api_contract.py (EventsAccepted, EventsRefused; docs/openapi.json).
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse

from ..events import QUEUE_OF_TYPE, describe_validation_error, validate_event
from .auth import require_bearer
from .context import ingress
from .http import HttpError, enqueue, error_response, json_response, log, log_fields, parse_json, read_body


def _events_of(body: Any, limit: int) -> list[Any]:
    if isinstance(body, dict) and "type" not in body and isinstance(body.get("events"), list):
        events = body["events"]
    elif isinstance(body, list):
        events = body
    elif isinstance(body, dict):
        events = [body]
    else:
        raise HttpError(
            400, "invalid_body", 'expected an event object, an array of events or {"events": [...]}'
        )
    if not events:
        raise HttpError(400, "invalid_body", "the batch is empty")
    if len(events) > limit:
        raise HttpError(
            413, "batch_too_large", f"{len(events)} events; a batch holds at most {limit}"
        )
    return events


def check_event(index: int, raw: Any) -> dict[str, Any]:
    """One event's result; `status` is accepted or rejected (with reason and detail). A plain
    dict in the shape of api_contract.EventAccepted / EventRejected: building the models would
    double this function's cost (~3 µs per event), and the tests check the shape."""
    event_id = raw.get("id") if isinstance(raw, dict) else None
    result: dict[str, Any] = {"index": index, "id": event_id if isinstance(event_id, str) else None}
    event_type = raw.get("type") if isinstance(raw, dict) else None
    if not isinstance(event_type, str) or event_type not in QUEUE_OF_TYPE:
        return {**result, "status": "rejected", "reason": "unknown_event_type",
                "detail": f"unknown event type {str(event_type)[:64]!r}"}  # fmt: skip
    try:
        validate_event(raw)
    except ValidationError as exc:
        return {
            **result,
            "status": "rejected",
            "reason": "validation_error",
            "detail": describe_validation_error(exc),
        }
    return {**result, "status": "accepted"}


async def post_events(request: Request) -> JSONResponse:
    state = ingress(request)
    settings = state.settings
    require_bearer(request, settings.api_tokens)
    raw_events = _events_of(parse_json(await read_body(request, settings.ingress_max_body_bytes)),
                            settings.ingress_max_batch)  # fmt: skip
    results = [check_event(i, raw) for i, raw in enumerate(raw_events)]
    valid = [raw_events[r["index"]] for r in results if r["status"] == "accepted"]
    summary = {"accepted": len(valid), "rejected": len(results) - len(valid), "results": results}
    if not valid:
        log.info("events_refused", rejected=len(results))
        detail = (
            results[0]["detail"] if len(results) == 1 else f"all {len(results)} events are invalid"
        )
        return error_response(request, 422, results[0]["reason"] if len(results) == 1 else "validation_error",
                              detail, **summary)  # fmt: skip
    await enqueue(state, valid)
    log_fields(request, accepted=len(valid), rejected=summary["rejected"])
    return json_response(request, summary, 202)
