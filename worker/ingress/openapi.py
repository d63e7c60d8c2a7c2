"""The /v1 API as an OpenAPI 3.1 document (`docs/openapi.json`, served at GET /v1/openapi.json).

Every schema comes from the pydantic models — the events (worker/events.py), the credit API's
requests and views (worker/credit_api.py), the answers and errors (worker/api_contract.py) —
through one pydantic schema generator, so the document cannot drift from what the ingress
validates and sends. What is written here is only what the models cannot say: the operations,
their parameters, and which status answers which body, with the error codes it may carry.

Regenerate the committed copy with `pedro-worker schema --openapi --out docs/openapi.json`
(tests/integration/ingress/test_openapi.py checks it is current, and that the running ingress's
answers validate against it); the TypeScript client's types come from that file
(clients/typescript, `npm run generate`).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import Field, TypeAdapter
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaMode
from starlette.requests import Request
from starlette.responses import Response

from .. import __version__
from .. import api_contract as answers
from ..credit_api import CaptureRequest, HoldRequest
from ..events import ClerkUserId, EventId
from .credits_api import _DEFAULT_PAGE, _MAX_PAGE

SCHEMAS = "#/components/schemas/{model}"

# Every component: (name, mode, type). Requests are described as the ingress validates them,
# answers as it serializes them.
_COMPONENTS: tuple[tuple[str, JsonSchemaMode, Any], ...] = (
    ("EventsRequest", "validation", answers.EventsRequest),
    ("Event", "validation", answers.Event),
    ("HoldRequest", "validation", HoldRequest),
    ("CaptureRequest", "validation", CaptureRequest),
    ("EventsAccepted", "serialization", answers.EventsAccepted),
    ("EventsRefused", "serialization", answers.EventsRefused),
    ("HoldResponse", "serialization", answers.HoldResponse),
    ("BalanceResponse", "serialization", answers.BalanceResponse),
    ("MovementsResponse", "serialization", answers.MovementsResponse),
    ("ErrorBody", "serialization", answers.ErrorBody),
    ("InsufficientCredits", "serialization", answers.InsufficientCredits),
    ("OverCapture", "serialization", answers.OverCapture),
    ("HoldExpired", "serialization", answers.HoldExpired),
)


class _Schema(GenerateJsonSchema):
    def field_title_should_be_set(self, schema: Any) -> bool:
        return False  # "Clerkuserid" titles say nothing and clutter the generated types

    def field_is_required(self, field: Any, total: bool) -> bool:
        # The ingress's answers are whole model dumps: a field with a default is still always
        # there (null at worst), so the client's types need no `?`.
        if self.mode == "serialization":
            return not field.get("serialization_exclude")
        return super().field_is_required(field, total)


def _schemas() -> dict[str, Any]:
    inputs = [(name, mode, TypeAdapter(model)) for name, mode, model in _COMPONENTS]
    top, defs = TypeAdapter.json_schemas(inputs, ref_template=SCHEMAS, schema_generator=_Schema)
    schemas = dict(defs.get("$defs", {}))
    for (name, _mode), schema in top.items():
        if schema.get("$ref") != SCHEMAS.format(model=name):  # not a model: a union, named here
            schemas[name] = schema
    return dict(sorted(schemas.items()))


def _parameter(name: str, where: str, of: Any, description: str, default: Any = None) -> dict[str, Any]:
    schema = TypeAdapter(of).json_schema(schema_generator=_Schema)
    if default is not None:
        schema["default"] = default
    return {"name": name, "in": where, "description": description, "required": where == "path", "schema": schema}


_PARAMETERS = {
    "holdId": _parameter("holdId", "path", EventId, "The hold's id (its idempotency key)."),
    "clerkUserId": _parameter("clerkUserId", "path", ClerkUserId, "The user's Clerk id."),
    "cursor": _parameter("cursor", "query", str, "The previous page's `nextCursor`; absent: the newest movements."),
    "limit": _parameter("limit", "query", Annotated[int, Field(ge=1, le=_MAX_PAGE)], "Movements per page.",
                        default=_DEFAULT_PAGE),
}  # fmt: skip

# component name -> the header's name in an answer
_HEADER_NAMES = {"RequestId": "x-request-id", "RetryAfter": "Retry-After", "IdempotentReplayed": "Idempotent-Replayed",
                 "WWWAuthenticate": "WWW-Authenticate"}  # fmt: skip
_HEADERS = {
    "RequestId": {"description": "The request's id (also `requestId` in every JSON body).",
                  "schema": {"type": "string"}},
    "RetryAfter": {"description": "Seconds to wait before retrying.", "schema": {"type": "integer"}},
    "IdempotentReplayed": {"description": "`true` when the request changed nothing: the hold was placed, "
                           "captured or released already, and this is its state now.",
                           "schema": {"type": "string", "enum": ["true"]}},
    "WWWAuthenticate": {"description": 'Bearer realm="pedro-worker"', "schema": {"type": "string"}},
}  # fmt: skip


@dataclass(frozen=True)
class Answer:
    """One status of an operation: its body's schema (one component, or any of several) and
    the error codes or cases it stands for."""

    description: str
    schemas: Sequence[str] = ("ErrorBody",)
    headers: Sequence[str] = ()  # besides x-request-id, which every answer has

    def render(self) -> dict[str, Any]:
        refs = [{"$ref": SCHEMAS.format(model=s)} for s in self.schemas]
        schema = refs[0] if len(refs) == 1 else {"anyOf": refs}
        headers = {_HEADER_NAMES[h]: {"$ref": f"#/components/headers/{h}"} for h in ("RequestId", *self.headers)}
        return {"description": self.description, "headers": headers,
                "content": {"application/json": {"schema": schema}}}  # fmt: skip


UNAUTHORIZED = Answer("`unauthorized`: the bearer token is missing or not one of `PEDRO_API_TOKENS`.",
                      headers=["WWWAuthenticate"])  # fmt: skip
INTERNAL = Answer("`internal_error`: an unexpected error (logged with the request id).")
BAD_JSON = "`invalid_json`: the body is not JSON"
TOO_LARGE = Answer("`payload_too_large`: the body is over the limit.")
NOT_READY = ("`not_configured`: the server has no `PEDRO_API_TOKENS`, or no database for the credit API; "
             "`database_unavailable` (`Retry-After`): PostgreSQL is unreachable")  # fmt: skip
BUSY = "`balance_busy` (`Retry-After`): another transaction holds the user's balance longer than `PEDRO_LOCK_WAIT_MS`"
UNKNOWN_HOLD = Answer("`unknown_hold`: no hold has this id; `not_found`: not a hold id at all.")
UNKNOWN_USER = Answer("`unknown_user`: no such user (its `user.created` may not be in yet); `not_found`: "
                      "not a Clerk user id at all.")  # fmt: skip
HOLD = Answer("The hold as it is now and the user's balance.", ["HoldResponse"], ["IdempotentReplayed"])


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    operation_id: str
    tag: str
    summary: str
    description: str
    answers: dict[int, Answer]
    parameters: Sequence[str] = ()
    body: str | None = None
    body_required: bool = True

    def render(self) -> dict[str, Any]:
        op: dict[str, Any] = {"operationId": self.operation_id, "tags": [self.tag], "summary": self.summary,
                              "description": self.description}  # fmt: skip
        if self.parameters:
            op["parameters"] = [{"$ref": f"#/components/parameters/{p}"} for p in self.parameters]
        if self.body is not None:
            schema = {"$ref": SCHEMAS.format(model=self.body)}
            op["requestBody"] = {"required": self.body_required, "content": {"application/json": {"schema": schema}}}
        common = {401: UNAUTHORIZED, 500: INTERNAL}
        op["responses"] = {str(status): answer.render() for status, answer in sorted((self.answers | common).items())}
        return op


def _credit_unavailable(*, writes: bool) -> Answer:
    return Answer("; ".join([NOT_READY, *([BUSY] if writes else [])]) + ". Retry after `Retry-After` seconds.",
                  headers=["RetryAfter"])  # fmt: skip


OPERATIONS: tuple[Operation, ...] = (
    Operation(
        "post", "/v1/events", "publishEvents", "events", "Publish events",
        "Queue one event or a batch for the worker, which applies each exactly once (its `id` is its "
        "idempotency key: publishing it again is harmless, so retry freely). The answer comes once Redis "
        "has the valid events; `accepted` means queued, not applied.",
        body="EventsRequest",
        answers={
            202: Answer("At least one event is queued; `results` has every event's result, in input order.",
                        ["EventsAccepted"]),
            400: Answer(f"{BAD_JSON}; `invalid_body`: not an event, an array or `{{\"events\": [...]}}`, or an "
                        "empty batch."),
            413: Answer("`payload_too_large`: the body is over `PEDRO_INGRESS_MAX_BODY_BYTES` (4 MiB); "
                        "`batch_too_large`: more than `PEDRO_INGRESS_MAX_BATCH` (1000) events."),
            422: Answer("No event of the request is valid: nothing was queued. `results` says why, per event.",
                        ["EventsRefused"]),
            503: Answer("`queue_unavailable` (`Retry-After`): Redis is unreachable, or fewer of its replicas than "
                        "`PEDRO_REDIS_WAIT_REPLICAS` acknowledged in time; nothing was accepted — retry (the same ids: "
                        "a copy that did reach Redis is then a duplicate); "
                        "`not_configured`: the server has no `PEDRO_API_TOKENS`.", headers=["RetryAfter"]),
        },
    ),
    Operation(
        "post", "/v1/holds", "placeHold", "holds", "Hold credits",
        "Set credits aside before the AI call, in one transaction under the user's balance lock: two "
        "concurrent requests never spend the same credits. The held credits leave "
        "`\"CreditBalance\".creditsRemaining` at once. The same `id` again answers the hold as it is now "
        "(201, `Idempotent-Replayed`); an unused hold is released at `ttlSeconds`.",
        body="HoldRequest",
        answers={
            201: Answer("The hold (placed now, or before with the same request).", ["HoldResponse"],
                        ["IdempotentReplayed"]),
            400: Answer(f"{BAD_JSON}."),
            402: Answer("`insufficient_credits`: fewer credits available than asked; nothing held.",
                        ["InsufficientCredits"]),
            404: Answer("`unknown_user`: no such user (its `user.created` may not be in yet)."),
            409: Answer("`idempotency_conflict`: the id was used already for another request or event."),
            413: TOO_LARGE,
            422: Answer("`validation_error`: the body breaks the contract; `unknown_operation_type`: the "
                        "database's `\"OperationType\"` has no such label; `no_cost` / `bad_feature_cost`: no "
                        "`credits` given and no usable cost configured for `operationType`."),
            503: _credit_unavailable(writes=True),
        },
    ),
    Operation(
        "get", "/v1/holds/{holdId}", "getHold", "holds", "Read a hold",
        "The hold as it is now, and its user's balance.",
        parameters=["holdId"],
        answers={200: Answer("The hold and the user's balance.", ["HoldResponse"]), 404: UNKNOWN_HOLD,
                 503: _credit_unavailable(writes=False)},  # fmt: skip
    ),
    Operation(
        "post", "/v1/holds/{holdId}/capture", "captureHold", "holds", "Capture a hold",
        "Charge what the work used against the hold (a `\"UsageHistory\"` row whose id is the hold's) and "
        "give back the rest. A hold resolved already answers its resolution (200, `Idempotent-Replayed`).",
        parameters=["holdId"], body="CaptureRequest", body_required=False,
        answers={
            200: HOLD,
            400: Answer(f"{BAD_JSON}."),
            404: UNKNOWN_HOLD,
            409: Answer("`hold_expired`: the hold is past its expiry, its credits are back and nothing was "
                        "charged; `over_capture`: more than held under `overCapture: reject` (the hold stays "
                        "open); `balance_out_of_range`: the balance would leave PostgreSQL's integer range.",
                        ["HoldExpired", "OverCapture", "ErrorBody"]),
            413: TOO_LARGE,
            422: Answer("`validation_error`: the body breaks the contract; `operation_type_required`: neither "
                        "the hold nor the capture names an `operationType`; `unknown_operation_type`."),
            503: _credit_unavailable(writes=True),
        },
    ),
    Operation(
        "post", "/v1/holds/{holdId}/release", "releaseHold", "holds", "Release a hold",
        "Give everything held back (the work did not happen). A hold resolved already answers its "
        "resolution (200, `Idempotent-Replayed`).",
        parameters=["holdId"],
        answers={200: HOLD, 404: UNKNOWN_HOLD, 503: _credit_unavailable(writes=True)},
    ),
    Operation(
        "get", "/v1/users/{clerkUserId}/balance", "getBalance", "users", "Read a user's balance",
        "`remaining` is `\"CreditBalance\".creditsRemaining` (open holds already out of it), `available` "
        "what a new hold may take, `waiting` the user's events the worker keeps until they can apply.",
        parameters=["clerkUserId"],
        answers={200: Answer("The balance.", ["BalanceResponse"]), 404: UNKNOWN_USER,
                 503: _credit_unavailable(writes=False)},  # fmt: skip
    ),
    Operation(
        "get", "/v1/users/{clerkUserId}/movements", "listMovements", "users", "List a user's movements",
        "The user's journal movements (usage, refunds, grants, holds, expiries…), newest first, one page at "
        "a time: pass `nextCursor` as `cursor` for the next (older) page; null on the last.",
        parameters=["clerkUserId", "cursor", "limit"],
        answers={
            200: Answer("One page of movements.", ["MovementsResponse"]),
            400: Answer(f"`invalid_cursor`: not a cursor this API gave; `invalid_limit`: not 1..{_MAX_PAGE}."),
            404: UNKNOWN_USER,
            503: _credit_unavailable(writes=False),
        },
    ),
)


def openapi_document() -> dict[str, Any]:
    """The OpenAPI 3.1 document of the /v1 API (docs/openapi.json)."""
    paths: dict[str, dict[str, Any]] = {}
    for op in OPERATIONS:
        paths.setdefault(op.path, {})[op.method] = op.render()
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "pedro-worker API",
            "version": __version__,
            "description": "The app's door to pedro-worker: publish credit events (applied exactly once by "
            "the worker), hold / capture / release credits around an AI call, read a user's balance and "
            "movements. Every error is `{error, detail, requestId}` (docs/ingress.md). Generated from the "
            "pydantic models: `pedro-worker schema --openapi`.",
        },
        "tags": [
            {"name": "events", "description": "The queue path: usage, refunds, adjustments, users, billing, storage."},
            {"name": "holds", "description": "Credits held before the work and charged after (docs/ledger.md#holds)."},
            {"name": "users", "description": "What the app shows a user."},
        ],
        "security": [{"bearerAuth": []}],
        "paths": paths,
        "components": {
            "schemas": _schemas(),
            "parameters": _PARAMETERS,
            "headers": _HEADERS,
            "securitySchemes": {
                "bearerAuth": {"type": "http", "scheme": "bearer",
                               "description": "One of the server's `PEDRO_API_TOKENS`."},  # fmt: skip
            },
        },
    }


def render() -> str:
    """The document as committed: indented JSON, one trailing newline."""
    return json.dumps(openapi_document(), indent=2) + "\n"


@functools.cache
def _served() -> bytes:
    return json.dumps(openapi_document(), separators=(",", ":")).encode()


async def openapi_json(_request: Request) -> Response:
    """GET /v1/openapi.json (no auth: it holds no secret)."""
    return Response(_served(), media_type="application/json")
