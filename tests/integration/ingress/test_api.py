"""POST /v1/events, health and failure modes, on the real ingress server with real Redis/PG."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import httpx
from pydantic import SecretStr

from tests.integration.family_helpers import queued_messages, user_created
from tests.integration.helpers import balance, make_user, usage
from tests.integration.ingress.providers import API_TOKEN, ASAAS_TOKEN
from worker.embedded import EmbeddedRedis, free_port
from worker.ingress.server import IngressServer

AUTH = {"Authorization": f"Bearer {API_TOKEN}"}


def test_missing_or_wrong_bearer_token_is_401_and_nothing_is_enqueued(ingress, settings):
    event = usage("user_x", id="no-auth")
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {API_TOKEN}"}):
        response = ingress.post("/v1/events", json=event, headers=headers)
        assert response.status_code == 401
        assert response.json()["error"] == "unauthorized" and "detail" in response.json()
    assert queued_messages(settings) == 0


async def test_batch_with_valid_and_invalid_events_applies_the_valid_ones_and_reports_each(
    conn, ingress, worker
):
    await make_user(conn, "user_b", credits=100)
    batch = [
        usage("user_b", id="ok-1", credits=10),
        usage("user_b", id="bad-op", op="ai time travel"),
        {"type": "no.such.type", "id": "weird"},
        user_created("user_new", t=0, email="new@example.com", id="msg_new"),
        usage("user_b", id="ok-2", credits=5),
    ]
    response = ingress.post("/v1/events", json=batch, headers=AUTH)
    worker.drain()

    assert response.status_code == 202
    body = response.json()
    assert (body["accepted"], body["rejected"]) == (3, 2)
    assert [(r["index"], r["id"], r["status"], r.get("reason")) for r in body["results"]] == [
        (0, "ok-1", "accepted", None),
        (1, "bad-op", "rejected", "validation_error"),
        (2, "weird", "rejected", "unknown_event_type"),
        (3, "msg_new", "accepted", None),
        (4, "ok-2", "accepted", None),
    ]
    assert "operationType" in body["results"][1]["detail"]
    assert await balance(conn, "user_b") == 85
    assert await balance(conn, "user_new") == 100


async def test_a_label_the_database_does_not_have_yet_is_accepted_and_waits_instead_of_a_422(
    conn, ingress, worker
):
    await make_user(conn, "user_v", credits=100)
    response = ingress.post("/v1/events", json=[usage("user_v", id="vid-1", op="VIDEO_GENERATION")], headers=AUTH)
    worker.drain()
    assert response.status_code == 202 and response.json()["accepted"] == 1
    row = await conn.fetchrow("SELECT reason, waits_for FROM worker.waiting WHERE event_id = 'vid-1'")
    assert (row["reason"], row["waits_for"]) == ("unknown_operation_type", "operation_type:VIDEO_GENERATION")


def test_invalid_single_event_is_422_with_error_and_detail(ingress, settings):
    response = ingress.post("/v1/events", json=usage("u", id="bad", credits="5"), headers=AUTH)
    assert response.status_code == 422
    body = response.json()
    assert body["error"] == "validation_error" and body["detail"].startswith("credits:")
    assert body["results"][0]["status"] == "rejected"
    assert queued_messages(settings) == 0


def test_bad_bodies_are_4xx_json_errors(ingress, ingress_settings):
    cases = [
        (b"{not json", 400, "invalid_json"),
        (b"42", 400, "invalid_body"),
        (b"[]", 400, "invalid_body"),
        (json.dumps([usage("u") for _ in range(1001)]).encode(), 413, "batch_too_large"),
        (b"[" + b" " * ingress_settings.ingress_max_body_bytes + b"]", 413, "payload_too_large"),
    ]
    for body, status, error in cases:
        response = ingress.post("/v1/events", content=body, headers=AUTH)
        assert (response.status_code, response.json()["error"]) == (status, error), body[:20]
    chunked = ingress.post("/v1/events", content=iter([b"[", b" " * ingress_settings.ingress_max_body_bytes, b"]"]),
                           headers=AUTH)  # fmt: skip
    assert (chunked.status_code, chunked.json()["error"]) == (413, "payload_too_large")


def test_every_response_carries_a_request_id_and_keeps_a_sane_one_from_the_caller(ingress):
    answers = [
        ingress.get("/healthz"), ingress.get("/no/such/path"), ingress.post("/v1/events", json={}),
        ingress.get("/v1/events"), ingress.post("/webhooks/asaas", json={}),
    ]  # fmt: skip
    assert [a.status_code for a in answers] == [200, 404, 401, 405, 401]
    for answer in answers:
        assert answer.headers["x-request-id"] == answer.json()["requestId"] != ""
    assert (
        ingress.get("/healthz", headers={"x-request-id": "trace-123"}).headers["x-request-id"]
        == "trace-123"
    )
    unsafe = "<script> " + "x" * 200
    assert (
        ingress.get("/healthz", headers={"x-request-id": unsafe}).headers["x-request-id"] != unsafe
    )


def test_readyz_is_200_when_postgres_and_redis_answer(ingress):
    response = ingress.get("/readyz")
    assert response.status_code == 200
    assert response.json()["checks"] == {"postgres": "ok", "redis": "ok"}


def test_redis_down_is_503_never_2xx_and_service_resumes_when_it_is_back(ingress_settings):
    with EmbeddedRedis() as own_redis:
        settings = ingress_settings.model_copy(update={"redis_url": SecretStr(own_redis.url)})
        with (
            IngressServer(settings) as server,
            httpx.Client(base_url=server.url, timeout=10) as client,
        ):
            assert (
                client.post("/v1/events", json=usage("u", id="before"), headers=AUTH).status_code
                == 202
            )
            own_redis.stop()
            started = time.monotonic()
            down = client.post("/v1/events", json=usage("u", id="during"), headers=AUTH)
            webhook = client.post("/webhooks/asaas", headers={"asaas-access-token": ASAAS_TOKEN},
                                  json={"id": "evt_1&1", "event": "PAYMENT_CREATED", "dateCreated": "2024-01-01 10:00:00"})  # fmt: skip
            malformed = client.post("/webhooks/asaas", headers={"asaas-access-token": ASAAS_TOKEN},
                                    content=b"{not json")  # its rejection cannot be queued either  # fmt: skip
            ready = client.get("/readyz")
            assert time.monotonic() - started < 10
            assert (down.status_code, down.json()["error"]) == (503, "queue_unavailable")
            assert webhook.status_code == 503
            assert (malformed.status_code, malformed.json()["error"]) == (503, "queue_unavailable")
            assert (ready.status_code, ready.json()["checks"]["redis"]) == (503, "unreachable")
            own_redis.start()
            assert (
                client.post("/v1/events", json=usage("u", id="after"), headers=AUTH).status_code
                == 202
            )


def test_ingress_command_serves_and_its_log_lines_carry_request_ids_never_secrets(ingress_settings):
    port = free_port()
    env = {
        **os.environ, "PEDRO_REDIS_URL": ingress_settings.require_redis_url(),
        "PEDRO_DATABASE_URL": ingress_settings.require_database_url(),
        "PEDRO_REDIS_NAMESPACE": ingress_settings.redis_namespace, "PEDRO_INGRESS_PORT": str(port),
        "PEDRO_API_TOKENS": API_TOKEN, "PEDRO_LOG_FORMAT": "json",
    }  # fmt: skip
    proc = subprocess.Popen(
        [sys.executable, "-m", "worker.cli", "ingress"], env=env, stderr=subprocess.PIPE, text=True
    )
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:
            for _ in range(200):
                try:
                    health = client.get("/healthz")
                    break
                except httpx.TransportError:
                    time.sleep(0.05)
            ids = {
                health.headers["x-request-id"],
                client.post("/v1/events", json=usage("u", id="cli-1"), headers=AUTH).headers["x-request-id"],
                client.post("/v1/events", json=usage("u", id="cli-2"), headers={"Authorization": "Bearer nope"})
                .headers["x-request-id"],
            }  # fmt: skip
    finally:
        proc.terminate()
        _, stderr = proc.communicate(timeout=20)
    # uvicorn shuts down gracefully, then re-raises SIGTERM so the exit status says why it stopped
    assert proc.returncode == -signal.SIGTERM
    lines = [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]
    request_lines = [line for line in lines if line.get("logger") == "pedro.ingress"]
    assert {"http_request", "http_refused"} <= {line["event"] for line in request_lines}
    # one line per request: what POST /v1/events accepted is on its http_request line
    assert any(line["event"] == "http_request" and line.get("accepted") == 1 for line in request_lines)
    assert all(line.get("request_id") in ids for line in request_lines)
    assert any(line["event"] == "Application shutdown complete." for line in lines)
    assert API_TOKEN not in stderr and "nope" not in stderr
