"""HTTP plumbing every endpoint shares: request ids, JSON errors, bounded bodies, enqueueing.

- Every response carries `x-request-id` (the caller's, when it sent a sane one), and every log
  line written while serving the request has `request_id=` (structlog contextvars).
- Every error is JSON `{error, detail, requestId}` with a 4xx/5xx status, including 404/405
  and unexpected exceptions.
- Bodies are read up to `ingress_max_body_bytes`, refused with 413 beyond it (declared or not).
- `enqueue` answers only after Redis acknowledged the messages; Redis unreachable -> 503.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import redis
import structlog
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..logs import get_logger
from ..publisher import build_message
from ..redis_client import ReplicasNotAcknowledged
from .context import Ingress

log = get_logger("pedro.ingress")

_SANE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


class HttpError(Exception):
    """An error answer: status, machine-readable `error`, human `detail` (never a secret)."""

    def __init__(
        self, status: int, error: str, detail: str, headers: Mapping[str, str] | None = None
    ):
        super().__init__(detail)
        self.status, self.error, self.detail, self.headers = (
            status,
            error,
            detail,
            dict(headers or {}),
        )


def request_id(request: Request) -> str:
    return request.scope.get("state", {}).get("request_id", "")


def log_fields(request: Request, **fields: Any) -> None:
    """Add fields to this request's `http_request` line (one line per request, not two)."""
    request.scope["state"]["log"].update(fields)


def json_response(
    request: Request, body: dict[str, Any], status: int = 200, **kw: Any
) -> JSONResponse:
    return JSONResponse({**body, "requestId": request_id(request)}, status_code=status, **kw)


def error_response(
    request: Request, status: int, error: str, detail: str, *, headers: Mapping[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:  # fmt: skip
    return json_response(
        request, {"error": error, "detail": detail, **extra}, status, headers=headers
    )


async def on_http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HttpError)
    log.info("http_refused", status=exc.status, error=exc.error, detail=exc.detail)
    return error_response(request, exc.status, exc.error, exc.detail, headers=exc.headers or None)


async def on_starlette_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    error = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    return error_response(request, exc.status_code, error, str(exc.detail), headers=exc.headers)


class RequestContext:
    """Pure ASGI middleware: request id, one `http_request` log line (with what the endpoint
    added by `log_fields`), JSON 500s."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = dict(scope.get("headers") or []).get(b"x-request-id", b"").decode("latin-1")
        rid = incoming if _SANE_REQUEST_ID.match(incoming) else uuid.uuid4().hex
        state = scope.setdefault("state", {})
        state["request_id"], state["log"] = rid, {}
        status = 500
        started = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                MutableHeaders(scope=message)["x-request-id"] = rid
            await send(message)

        with structlog.contextvars.bound_contextvars(request_id=rid):
            try:
                await self.app(scope, receive, send_with_id)
            except Exception:
                log.exception("http_unhandled_error", path=scope.get("path"))
                if status == 500:
                    response = error_response(
                        Request(scope), 500, "internal_error", "unexpected error"
                    )
                    await response(scope, receive, send_with_id)
            finally:
                log.info("http_request", method=scope.get("method"), path=scope.get("path"), status=status,
                         duration_ms=round((time.perf_counter() - started) * 1000, 1), **state["log"])  # fmt: skip


async def read_body(request: Request, limit: int) -> bytes:
    """The raw body (needed as-is for signatures), refused with 413 past `limit` bytes."""
    too_large = HttpError(413, "payload_too_large", f"the body limit is {limit} bytes")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise too_large
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large
        chunks.append(chunk)
    return b"".join(chunks)


def parse_json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (ValueError, RecursionError):
        raise HttpError(400, "invalid_json", "the body is not valid JSON") from None


async def enqueue(
    state: Ingress, events: Sequence[Mapping[str, Any]], *, queue: str | None = None
) -> None:
    """Send the events to Redis and return once it has them; 503 if Redis is unreachable.
    Each goes to its type's queue, with the events of concurrent requests (grouping.py), or all
    in one message of their own onto `queue` when it is given."""
    try:
        if queue is None:
            await state.groups.enqueue(events)
        else:
            message = build_message(queue, [dict(event) for event in events])
            await state.publisher.enqueue_pipelined_async(state.groups.client, [message])
    except ReplicasNotAcknowledged as exc:  # PEDRO_REDIS_WAIT_REPLICAS (worker/redis_client.py)
        log.error("enqueue_not_replicated", acknowledged=exc.acknowledged, wanted=exc.wanted,
                  events=len(events))  # fmt: skip
        raise HttpError(503, "queue_unavailable", "Redis's replicas did not acknowledge the events in time: "
                        "not accepted, retry later (sending them again is harmless)",
                        headers={"Retry-After": "1"}) from None  # fmt: skip
    except (redis.RedisError, OSError) as exc:
        log.error("enqueue_failed", error=type(exc).__name__, events=len(events))
        raise HttpError(503, "queue_unavailable", "the queue is unreachable; nothing was accepted, retry later",
                        headers={"Retry-After": "5"}) from None  # fmt: skip
