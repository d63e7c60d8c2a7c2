"""The synchronous credit API (bearer auth, like POST /v1/events): holds, balance, movements.

    POST /v1/holds                      {id, clerkUserId, credits | operationType, ttlSeconds,
                                         overCapture, details} -> 201 {hold, balance}
                                         | 402 {error: insufficient_credits, available}
    GET  /v1/holds/{id}                 -> 200 {hold, balance}
    POST /v1/holds/{id}/capture         {credits?, operationType?, details?} -> 200 {hold, balance}
    POST /v1/holds/{id}/release         -> 200 {hold, balance}
    GET  /v1/users/{clerkUserId}/balance    -> {remaining, held, available, waiting}
    GET  /v1/users/{clerkUserId}/movements  ?cursor=&limit= -> {movements (newest first), nextCursor}

Unlike the events, these answer from PostgreSQL at once: a hold is one transaction under the
user's balance lock (worker/domain/holds.py), so two requests never spend the same credits.
A balance held longer than `lock_wait_ms` answers 503 `balance_busy` (retry), PostgreSQL
unreachable 503 `database_unavailable`. docs/api.md has the contract and the app's side.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any, TypeVar

import asyncpg
from pydantic import BaseModel, TypeAdapter, ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse

from .. import clock
from ..credit_api import CaptureRequest, HoldRequest, Movement, MovementsPage
from ..errors import DATABASE_OUTAGES
from ..domain import holds
from ..events import ClerkUserId, EventId, describe_validation_error
from ..repo import holds as repo
from ..repo import users as users_repo
from .auth import require_bearer
from .context import Ingress, ingress
from .http import HttpError, error_response, json_response, log, parse_json, read_body

M = TypeVar("M", bound=BaseModel)
_DEFAULT_PAGE, _MAX_PAGE = 50, 200


def _pool(state: Ingress) -> asyncpg.Pool:
    if state.pool is None:
        raise HttpError(503, "database_unavailable", "the credit API needs PEDRO_DATABASE_URL")
    return state.pool


async def _body(request: Request, model: type[M], *, optional: bool = False) -> M:
    raw = await read_body(request, 64 * 1024)
    data: Any = {} if optional and not raw.strip() else parse_json(raw)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise HttpError(422, "validation_error", describe_validation_error(exc)) from None


_ID_RULES: dict[str, TypeAdapter[str]] = {"hold_id": TypeAdapter(EventId), "clerk_user_id": TypeAdapter(ClerkUserId)}


def _path_id(request: Request, name: str) -> str:
    try:
        return _ID_RULES[name].validate_python(request.path_params[name])
    except ValidationError:
        raise HttpError(404, "not_found", f"no such {name}") from None


def _authorized(request: Request) -> Ingress:
    """The ingress's state, once the bearer token is checked (first, before anything is read)."""
    state = ingress(request)
    require_bearer(request, state.settings.api_tokens)
    return state


async def _run(request: Request, state: Ingress,
               work: Callable[[asyncpg.Connection], Awaitable[JSONResponse]]) -> JSONResponse:  # fmt: skip
    try:
        async with _pool(state).acquire() as conn:
            return await work(conn)
    except holds.HoldRefused as refused:
        log.info("hold_refused", status=refused.status, error=refused.error)
        return error_response(request, refused.status, refused.error, refused.detail, **refused.extra)
    except asyncpg.LockNotAvailableError:
        raise HttpError(503, "balance_busy", "the user's balance is busy; retry", headers={"Retry-After": "1"}) from None
    except DATABASE_OUTAGES as exc:  # down, restarting, failing over: the client sends it again (idempotent)
        log.error("database_unavailable", error=type(exc).__name__)
        raise HttpError(503, "database_unavailable", "PostgreSQL is unreachable; retry later",
                        headers={"Retry-After": "2"}) from None  # fmt: skip


def _answer(request: Request, answer: holds.Answer) -> JSONResponse:
    body = answer.body.model_dump(mode="json")
    headers = {"Idempotent-Replayed": "true"} if answer.replayed else None
    if answer.error is not None:
        return error_response(request, answer.status, answer.error, f"hold {answer.body.hold.id} has expired",
                              headers=headers, **body)  # fmt: skip
    return json_response(request, body, answer.status, headers=headers)


async def post_hold(request: Request) -> JSONResponse:
    state = _authorized(request)
    hold_request = await _body(request, HoldRequest)

    async def work(conn: asyncpg.Connection) -> JSONResponse:
        return _answer(request, await holds.place(conn, hold_request, state.settings, state.labels))

    return await _run(request, state, work)


async def get_hold(request: Request) -> JSONResponse:
    state = _authorized(request)
    hold_id = _path_id(request, "hold_id")

    async def work(conn: asyncpg.Connection) -> JSONResponse:
        row = (await repo.find_holds(conn, [hold_id])).get(hold_id)
        if row is None:
            raise HttpError(404, "unknown_hold", f"no hold {hold_id}")
        balance = await holds.read_balance(conn, row.hold.clerk_user_id, clock.now())
        assert balance is not None
        return json_response(request, {"hold": holds.hold_view(row).model_dump(mode="json"),
                                       "balance": balance.model_dump(exclude={"waiting"})})  # fmt: skip

    return await _run(request, state, work)


async def capture_hold(request: Request) -> JSONResponse:
    state = _authorized(request)
    hold_id = _path_id(request, "hold_id")
    capture = await _body(request, CaptureRequest, optional=True)

    async def work(conn: asyncpg.Connection) -> JSONResponse:
        return _answer(request, await holds.capture(conn, hold_id, capture, state.settings, state.labels))

    return await _run(request, state, work)


async def release_hold(request: Request) -> JSONResponse:
    state = _authorized(request)
    hold_id = _path_id(request, "hold_id")

    async def work(conn: asyncpg.Connection) -> JSONResponse:
        return _answer(request, await holds.release(conn, hold_id, state.settings))

    return await _run(request, state, work)


async def get_balance(request: Request) -> JSONResponse:
    state = _authorized(request)
    clerk = _path_id(request, "clerk_user_id")

    async def work(conn: asyncpg.Connection) -> JSONResponse:
        found = await holds.read_balance(conn, clerk, clock.now())
        if found is None:
            raise HttpError(404, "unknown_user", f"no user {clerk}")
        return json_response(request, found.model_dump())

    return await _run(request, state, work)


def _cursor(value: str | None) -> tuple[datetime, str] | None:
    if not value:
        return None
    try:
        at, event_id = json.loads(base64.urlsafe_b64decode(value.encode() + b"=" * (-len(value) % 4)))
        return datetime.fromisoformat(at), str(event_id)
    except (ValueError, TypeError):
        raise HttpError(400, "invalid_cursor", "the cursor is not one this API gave") from None


def _next_cursor(at: datetime, event_id: str) -> str:
    return base64.urlsafe_b64encode(json.dumps([at.isoformat(), event_id]).encode()).decode().rstrip("=")


async def get_movements(request: Request) -> JSONResponse:
    state = _authorized(request)
    clerk = _path_id(request, "clerk_user_id")
    after = _cursor(request.query_params.get("cursor"))
    limit_text = request.query_params.get("limit", str(_DEFAULT_PAGE))
    if not limit_text.isdigit() or not 1 <= int(limit_text) <= _MAX_PAGE:
        raise HttpError(400, "invalid_limit", f"limit is 1..{_MAX_PAGE}")
    limit = int(limit_text)

    async def work(conn: asyncpg.Connection) -> JSONResponse:
        user_id = await users_repo.find_user_id(conn, clerk)
        if user_id is None:
            raise HttpError(404, "unknown_user", f"no user {clerk}")
        rows = await repo.user_movements(conn, user_id, limit + 1, after)
        page = [Movement(id=r["event_id"], kind=r["kind"], credits=r["delta"], reference=r["reference"],
                         reason=r["reason"], at=r["created_at"]) for r in rows[:limit]]  # fmt: skip
        more = len(rows) > limit
        last = rows[limit - 1] if more else None
        cursor = _next_cursor(last["created_at"], last["event_id"]) if last is not None else None
        return json_response(request, MovementsPage(movements=page, nextCursor=cursor).model_dump(mode="json"))

    return await _run(request, state, work)
