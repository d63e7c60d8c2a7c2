"""docs/openapi.json: current with the models, served by the ingress, and true of its answers.

The answers of the real ingress (uvicorn, real PostgreSQL and Redis) are validated against the
committed document with `jsonschema` — an implementation independent of the pydantic models the
document comes from — after closing every object schema (`additionalProperties: false`), so a
field an endpoint sends that the document does not name fails too.
"""

from __future__ import annotations

import copy
import json
import re
import time
from typing import Any

import httpx
import pytest
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from tests.integration.helpers import held_balance, make_user, usage
from tests.integration.ingress.providers import API_TOKEN
from worker.ingress.app import create_app
from worker.ingress.openapi import openapi_document, render
from worker.settings import ROOT

AUTH = {"Authorization": f"Bearer {API_TOKEN}"}
DOC_PATH = ROOT / "docs" / "openapi.json"
DOC_URI = "urn:pedro-worker:openapi"


def committed() -> dict[str, Any]:
    return json.loads(DOC_PATH.read_text())


def test_the_committed_document_is_current():
    """Regenerate with `./run schema --openapi --out docs/openapi.json`."""
    assert DOC_PATH.read_text() == render()


def test_every_v1_route_is_documented_and_every_documented_operation_exists(settings):
    routes = {(route.path, method.lower()) for route in create_app(settings).routes
              if route.path.startswith("/v1/") and route.path != "/v1/openapi.json"
              for method in route.methods - {"HEAD"}}  # fmt: skip
    # Starlette's {hold_id} is the document's {holdId}, {clerk_user_id} its {clerkUserId}
    documented = {(path.replace("{holdId}", "{hold_id}").replace("{clerkUserId}", "{clerk_user_id}"), method)
                  for path, item in committed()["paths"].items() for method in item}  # fmt: skip
    assert routes == documented


def _walk(node: Any):
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from _walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from _walk(value)


def test_every_schema_is_valid_json_schema_and_every_reference_resolves():
    doc = committed()
    for name, schema in doc["components"]["schemas"].items():
        Draft202012Validator.check_schema(schema)
    for node in _walk(doc):
        ref = node.get("$ref")
        if isinstance(ref, str):
            target: Any = doc
            for part in ref.removeprefix("#/").split("/"):
                target = target[part]  # KeyError: a dangling reference
    operation_ids = [op["operationId"] for item in doc["paths"].values() for op in item.values()]
    assert len(operation_ids) == len(set(operation_ids))


class Contract:
    """The committed document, every object schema closed, as a jsonschema registry."""

    def __init__(self, doc: dict[str, Any]) -> None:
        self.doc = copy.deepcopy(doc)
        for node in _walk(self.doc["components"]["schemas"]):
            if "properties" in node and "additionalProperties" not in node:
                node["additionalProperties"] = False
        resource = Resource.from_contents(self.doc, default_specification=DRAFT202012)
        self.registry = Registry().with_resource(DOC_URI, resource)
        self.templates = {t: re.compile("^" + re.sub(r"\{[^}]+\}", "[^/]+", t) + "$") for t in self.doc["paths"]}

    def template(self, path: str) -> str:
        [template] = [t for t, pattern in self.templates.items() if pattern.match(path)]
        return template

    def check(self, method: str, template: str, answer: httpx.Response) -> dict[str, Any]:
        """Validate one real answer against what the document says of its status."""
        documented = self.doc["paths"][template][method]["responses"]
        where = f"{method} {template} {answer.status_code}"
        assert str(answer.status_code) in documented, f"{where}: status not documented"
        spec = documented[str(answer.status_code)]
        schema = spec["content"]["application/json"]["schema"]  # a $ref, or an anyOf of $refs
        schema = json.loads(json.dumps(schema).replace('"#/components/', f'"{DOC_URI}#/components/'))
        body = answer.json()
        errors = sorted(Draft202012Validator(schema, registry=self.registry).iter_errors(body), key=str)
        assert not errors, f"{where}: {[e.message for e in errors]}\n{body}"
        for header in spec.get("headers", {}):
            if header in ("x-request-id", "Retry-After", "WWW-Authenticate"):
                assert header in answer.headers, f"{where}: no {header} header"
        return body


class Api:
    """The real ingress, every answer checked against the contract."""

    def __init__(self, client: httpx.Client, contract: Contract) -> None:
        self.client, self.contract = client, contract

    def call(self, method: str, path: str, *, headers: dict[str, str] = AUTH, **kw: Any) -> dict[str, Any]:
        answer = self.client.request(method.upper(), path, headers=headers, **kw)
        return self.contract.check(method, self.contract.template(path.split("?")[0]), answer) | {
            "_status": answer.status_code, "_replayed": answer.headers.get("idempotent-replayed")}  # fmt: skip

    def post(self, path: str, body: Any = None, **kw: Any) -> dict[str, Any]:
        return self.call("post", path, **({"json": body} if body is not None else {}), **kw)

    def get(self, path: str, **kw: Any) -> dict[str, Any]:
        return self.call("get", path, **kw)


@pytest.fixture
def contract() -> Contract:
    return Contract(committed())


@pytest.fixture
def api(ingress, contract) -> Api:
    return Api(ingress, contract)


def test_the_ingress_serves_the_committed_document_without_a_token(ingress):
    answer = ingress.get("/v1/openapi.json")
    assert answer.status_code == 200 and answer.headers["content-type"] == "application/json"
    assert answer.json() == committed() == openapi_document()


def test_a_closed_contract_refuses_a_field_it_does_not_name(contract):
    body = {"error": "unknown_hold", "detail": "no hold x", "requestId": "r", "extra": 1}
    answer = httpx.Response(404, json=body, headers={"x-request-id": "r"})
    with pytest.raises(AssertionError, match="extra"):
        contract.check("get", "/v1/holds/{holdId}", answer)


async def test_real_answers_of_the_credit_api_validate_against_the_document(conn, api, database_url):
    await make_user(conn, "oa_user", credits=100)
    hold = {"id": "oa_h1", "clerkUserId": "oa_user", "operationType": "AI_TEXT_CHAT", "credits": 30}

    placed = api.post("/v1/holds", hold)
    assert (placed["_status"], placed["hold"]["status"], placed["balance"]["available"]) == (201, "held", 70)
    assert api.post("/v1/holds", hold)["_replayed"] == "true"
    refused = api.post("/v1/holds", {**hold, "id": "oa_h2", "credits": 500})
    assert (refused["_status"], refused["error"], refused["available"]) == (402, "insufficient_credits", 70)
    assert api.post("/v1/holds", {**hold, "credits": 31})["error"] == "idempotency_conflict"
    assert api.post("/v1/holds", {**hold, "credits": "5"})["error"] == "validation_error"
    assert api.post("/v1/holds", content=b"{")["error"] == "invalid_json"
    assert api.post("/v1/holds", {**hold, "id": "oa_h3", "clerkUserId": "nobody"})["error"] == "unknown_user"
    assert api.post("/v1/holds", hold, headers={"Authorization": "Bearer nope"})["error"] == "unauthorized"

    assert api.get("/v1/holds/oa_h1")["hold"]["id"] == "oa_h1"
    assert api.get("/v1/holds/no_such_hold")["error"] == "unknown_hold"
    assert api.get("/v1/holds/not%20an%20id")["error"] == "not_found"

    api.post("/v1/holds", {**hold, "id": "oa_h4", "credits": 10, "overCapture": "reject"})
    over = api.post("/v1/holds/oa_h4/capture", {"credits": 11})
    assert (over["_status"], over["error"], over["held"], over["requested"]) == (409, "over_capture", 10, 11)
    captured = api.post("/v1/holds/oa_h1/capture", {"credits": 20})
    assert (captured["hold"]["status"], captured["hold"]["captured"]) == ("captured", 20)
    assert api.post("/v1/holds/oa_h4/release")["hold"]["status"] == "released"
    assert api.post("/v1/holds/no_such_hold/release")["error"] == "unknown_hold"

    api.post("/v1/holds", {**hold, "id": "oa_h5", "credits": 5, "ttlSeconds": 1})
    time.sleep(1.1)
    expired = api.post("/v1/holds/oa_h5/capture")
    assert (expired["_status"], expired["error"], expired["hold"]["status"]) == (409, "hold_expired", "expired")

    assert api.get("/v1/users/oa_user/balance")["remaining"] == 80
    assert api.get("/v1/users/nobody/balance")["error"] == "unknown_user"
    page = api.get("/v1/users/oa_user/movements", params={"limit": 2})
    assert len(page["movements"]) == 2 and page["nextCursor"]
    assert api.get("/v1/users/oa_user/movements", params={"cursor": page["nextCursor"]})["nextCursor"] is None
    assert api.get("/v1/users/oa_user/movements", params={"limit": 0})["error"] == "invalid_limit"
    assert api.get("/v1/users/oa_user/movements", params={"cursor": "nope"})["error"] == "invalid_cursor"

    async with held_balance(database_url, "oa_user"):
        busy = api.post("/v1/holds", {**hold, "id": "oa_h6"})
    assert (busy["_status"], busy["error"]) == (503, "balance_busy")


def test_real_answers_of_post_v1_events_validate_against_the_document(api):
    mixed = [usage("oa_u", id="oa-e1"), usage("oa_u", id="oa-e2", credits="5"), {"type": "nope", "id": 7}]
    accepted = api.post("/v1/events", mixed)
    assert accepted["_status"] == 202
    assert [(r["status"], r["id"]) for r in accepted["results"]] == [("accepted", "oa-e1"), ("rejected", "oa-e2"),
                                                                     ("rejected", None)]  # fmt: skip
    assert api.post("/v1/events", {"events": mixed[:1]})["accepted"] == 1
    for body in (mixed[1], mixed[1:]):
        refused = api.post("/v1/events", body)
        assert (refused["_status"], refused["accepted"], refused["error"]) == (422, 0, "validation_error")
    assert api.post("/v1/events", mixed[2])["error"] == "unknown_event_type"
    assert api.post("/v1/events", content=b"[]")["error"] == "invalid_body"
    assert api.post("/v1/events", content=b"{")["error"] == "invalid_json"
    assert api.post("/v1/events", [usage("oa_u") for _ in range(1001)])["error"] == "batch_too_large"
    assert api.post("/v1/events", mixed[0], headers={})["error"] == "unauthorized"
