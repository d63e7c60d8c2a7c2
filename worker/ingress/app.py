"""The ingress ASGI app: authenticate, validate, enqueue; and the synchronous credit API.

    GET  /v1/openapi.json      the /v1 API as OpenAPI 3.1, no auth (openapi.py; docs/openapi.json)
    POST /v1/events            bearer token; one event or a batch (events_api.py)
    /v1/holds…, /v1/users/…    bearer token; holds, balance, movements (credits_api.py): the
                               one part that writes the ledger itself, in one transaction per
                               request under the user's balance lock (worker/domain/holds.py)
    POST /webhooks/asaas       asaas-access-token header (webhooks/asaas.py)
    POST /webhooks/clerk       Svix signature (webhooks/clerk.py)
    POST /webhooks/vercel-blob x-vercel-signature (webhooks/vercel_blob.py)
    GET  /healthz              the process is up
    GET  /readyz               PostgreSQL and Redis reachable (and Redis's replicas there, with WAIT)
    GET  /ops/, GET /metrics   the ops dashboard and Prometheus metrics (worker/ops/web.py; they
                               read the waiting events from PostgreSQL, and release or drop them)

Starlette (routing, requests, responses; no hidden validation layer: the contract lives in
worker/events.py) served by uvicorn; docs/ingress.md says why.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
import httpx
import redis
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from .. import db, gc_tuning
from ..broker import build_broker
from ..ops.web import ops_routes
from ..publisher import Publisher
from ..settings import Settings, get_settings
from .auth import clerk_verifier
from .context import Ingress, ingress
from .credits_api import capture_hold, get_balance, get_hold, get_movements, post_hold, release_hold
from .events_api import post_events
from .grouping import EnqueueGroups
from .http import HttpError, RequestContext, json_response, on_http_error, on_starlette_error
from .openapi import openapi_json
from .webhooks.asaas import asaas_webhook
from .webhooks.clerk import clerk_webhook
from .webhooks.vercel_blob import vercel_blob_webhook

_CHECK_TIMEOUT_S = 2.0


async def healthz(request: Request) -> JSONResponse:
    return json_response(request, {"status": "ok"})


async def _postgres_ok(settings: Settings) -> str:
    if settings.database_url is None:
        return "not_configured"
    try:
        conn = await asyncpg.connect(
            settings.database_url.get_secret_value(), timeout=_CHECK_TIMEOUT_S
        )
        try:
            await asyncio.wait_for(db.fetchval(conn, "ping"), _CHECK_TIMEOUT_S)
        finally:
            await conn.close()
    except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
        return "unreachable"
    return "ok"


async def _redis_ok(state: Ingress) -> str:
    """`ok`, `unreachable`, or — when an accepted event must wait for replicas
    (PEDRO_REDIS_WAIT_REPLICAS) — `replicas_missing` while fewer are connected: POST /v1/events
    would answer 503, so the ingress is not ready."""
    wanted = state.settings.redis_wait_replicas
    try:
        if not wanted:
            await run_in_threadpool(state.broker.client.ping)
            return "ok"
        replication = await run_in_threadpool(state.broker.client.info, "replication")
    except (redis.RedisError, OSError):
        return "unreachable"
    return "ok" if int(replication.get("connected_slaves", 0)) >= wanted else "replicas_missing"


async def readyz(request: Request) -> JSONResponse:
    state = ingress(request)
    postgres, redis_state = await asyncio.gather(_postgres_ok(state.settings), _redis_ok(state))
    checks = {"postgres": postgres, "redis": redis_state}
    ready = all(v == "ok" for v in checks.values())
    return json_response(request, {"status": "ready" if ready else "not_ready", "checks": checks},
                         200 if ready else 503)  # fmt: skip


def build_ingress(settings: Settings) -> Ingress:
    """The broker (no database pool) with short Redis timeouts: an unreachable Redis must turn
    into a quick 503, not a hung request."""
    timeout = settings.ingress_redis_timeout_ms / 1000
    broker = build_broker(settings, worker=False, socket_timeout=timeout)
    publisher = Publisher(broker, validate=False)
    return Ingress(
        settings,
        broker,
        publisher,
        clerk_verifier(settings.clerk_webhook_secret),
        EnqueueGroups(publisher, settings),
    )


def create_app(settings: Settings | None = None) -> Starlette:
    """The ingress app for these settings (default: from the environment)."""
    state = build_ingress(settings or get_settings())

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        async with httpx.AsyncClient(headers={"user-agent": "pedro-worker-ingress"}) as client:
            state.http = client
            if state.settings.database_url is not None:
                # created lazily: an ingress whose database is down still starts and enqueues
                state.pool = await db.request_pool(state.settings, max_size=state.settings.ingress_pool_max_size)
            gc_tuning.tune()  # as in a worker process, once booted (worker/gc_tuning.py)
            try:
                yield
            finally:
                if state.pool is not None:
                    await state.pool.close()
        await state.groups.aclose()
        state.broker.close()

    app = Starlette(
        routes=[
            Route("/v1/openapi.json", openapi_json, methods=["GET"]),
            Route("/v1/events", post_events, methods=["POST"]),
            Route("/v1/holds", post_hold, methods=["POST"]),
            Route("/v1/holds/{hold_id}", get_hold, methods=["GET"]),
            Route("/v1/holds/{hold_id}/capture", capture_hold, methods=["POST"]),
            Route("/v1/holds/{hold_id}/release", release_hold, methods=["POST"]),
            Route("/v1/users/{clerk_user_id}/balance", get_balance, methods=["GET"]),
            Route("/v1/users/{clerk_user_id}/movements", get_movements, methods=["GET"]),
            Route("/webhooks/asaas", asaas_webhook, methods=["POST"]),
            Route("/webhooks/clerk", clerk_webhook, methods=["POST"]),
            Route("/webhooks/vercel-blob", vercel_blob_webhook, methods=["POST"]),
            Route("/healthz", healthz, methods=["GET"]),
            Route("/readyz", readyz, methods=["GET"]),
            *ops_routes(state.settings),  # GET /ops/ dashboard, GET /metrics (worker/ops/web.py)
        ],
        middleware=[Middleware(RequestContext)],
        exception_handlers={HttpError: on_http_error, HTTPException: on_starlette_error},
        lifespan=lifespan,
    )
    app.state.ingress = state
    return app
