"""The ops dashboard and `/metrics` as Starlette routes.

`ops_routes(settings)` gives `Mount("/ops", …)` (page, login, JSON API, dead-letter, waiting
and notification actions, static files) and `Route("/metrics", …)`; the ingress adds them to its app, and
`create_app` serves them alone. Redis calls are blocking (the same code serves the CLI), so they
run in Starlette's thread pool; the waiting events (worker/ops/waiting.py), the credits
expiring or expired (worker/ops/grants.py), the credit holds (worker/ops/holds.py) and the
notifications' outbox (worker/ops/notifications.py) are read from PostgreSQL, each on a short
connection of its own, side by side.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import asyncpg
import dramatiq
import redis
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from .. import db
from ..broker import QUEUES
from ..errors import ConfigError
from ..logs import get_logger
from ..redis_client import redis_client
from ..settings import Settings
from . import pages
from .auth import SESSION_COOKIE, SESSION_TTL_S, OpsAuth, Principal
from .dlq import DeadLetter, DeadLetters
from .grants import expiry_view
from .holds import holds_view
from .metrics import CONTENT_TYPE_LATEST, render_metrics
from .notifications import configured_endpoints, deliveries_of, notifications_view, plan_redelivery
from .notifications import redeliver as redeliver_notification
from .outcomes import apply_exact_totals, outcomes_view
from .reconcile import BackgroundReconcile
from .stats import StatsReader, overview
from .waiting import OLDEST_SHOWN, NotWaiting, waiting_view
from .waiting import drop as drop_waiting
from .waiting import release as release_waiting

log = get_logger("pedro.ops.web")

STATIC_DIR = Path(__file__).parent / "static"
BASE = "/ops"
DLQ_PAGE = 50  # dead letters listed on the page (the CLI lists them all)
MAX_BODY = 256 * 1024
MAX_WAITING_IDS = 500  # events per waiting action

_SECURITY_HEADERS = {
    "content-security-policy": "default-src 'self'; img-src 'self' data:; style-src 'self'; "
    "script-src 'self'; connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cache-control": "no-store",
}


def _secure(response: Response) -> Response:
    response.headers.update(_SECURITY_HEADERS)
    return response


def _json(body: dict[str, Any], status: int = 200, **kwargs: Any) -> Response:
    return _secure(JSONResponse(body, status_code=status, **kwargs))


def _redis_down(exc: Exception) -> Response:
    log.warning("ops_redis_unavailable", error=type(exc).__name__)
    return _json({"error": f"Redis unreachable ({type(exc).__name__})"}, 503)


class OpsApp:
    def __init__(self, settings: Settings, queues: tuple[str, ...] = QUEUES) -> None:
        self.settings = settings
        self.auth = OpsAuth(settings)
        self.queues = queues
        self.reconciler = BackgroundReconcile(settings)
        self._client: redis.Redis | None = None
        self._broker: Any = None  # built on the first waiting release

    @property
    def client(self) -> redis.Redis:
        if self._client is None:
            self._client = redis_client(self.settings, socket_timeout=5, socket_connect_timeout=3)
        return self._client

    def reader(self) -> StatsReader:
        return StatsReader(
            self.client,
            self.settings.redis_namespace,
            heartbeat_timeout_ms=self.settings.heartbeat_timeout_ms,
            queues=self.queues,
        )

    def dead_letters(self) -> DeadLetters:
        return DeadLetters(self.client, self.settings.redis_namespace, self.queues)

    def routes(self) -> list[BaseRoute]:
        return [
            Mount(
                BASE,
                routes=[
                    Route("/", self.page),
                    Route("/login", self.login_form, methods=["GET"]),
                    Route("/login", self.login, methods=["POST"]),
                    Route("/logout", self.logout, methods=["POST"]),
                    Route("/api/overview", self.api_overview),
                    Route("/api/dlq/{action:str}", self.api_dlq, methods=["POST"]),
                    Route("/api/waiting/{action:str}", self.api_waiting, methods=["POST"]),
                    Route("/api/notifications/{action:str}", self.api_notifications, methods=["POST"]),
                    Mount("/static", app=StaticFiles(directory=STATIC_DIR), name="ops-static"),
                ],
            ),
            Route("/metrics", self.metrics),
        ]

    # --- auth -------------------------------------------------------------------------------

    def _challenge(self, request: Request, *, page: bool) -> Response:
        if not self.auth.configured:
            return _secure(HTMLResponse(pages.closed(base=BASE), status_code=503))
        log.info(
            "ops_auth_required",
            path=request.url.path,
            client=request.client.host if request.client else "",
        )
        if page and self.auth.uses_login_form:
            return _secure(RedirectResponse(f"{BASE}/login", status_code=303))
        headers = {"www-authenticate": 'Basic realm="pedro-worker ops"'} if self.auth.basic else {}
        return _json({"error": "authentication required"}, 401, headers=headers)

    async def login_form(self, request: Request) -> Response:
        return _secure(HTMLResponse(pages.login(base=BASE)))

    async def login(self, request: Request) -> Response:
        form = await _form(request)
        if not self.auth.check_token(form.get("token", "")):
            log.warning("ops_login_failed", client=request.client.host if request.client else "")
            return _secure(
                HTMLResponse(pages.login(base=BASE, error="Wrong token."), status_code=401)
            )
        response = RedirectResponse(f"{BASE}/", status_code=303)
        response.set_cookie(
            SESSION_COOKIE,
            self.auth.new_session(),
            max_age=SESSION_TTL_S,
            path="/",
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )
        log.info("ops_login", client=request.client.host if request.client else "")
        return _secure(response)

    async def logout(self, request: Request) -> Response:
        principal = self.auth.authenticate(request)
        form = await _form(request)
        if principal is None or not self.auth.check_csrf(
            request, principal, form.get("csrf_token")
        ):
            return _json({"error": "forbidden"}, 403)
        response = RedirectResponse(
            f"{BASE}/login" if self.auth.uses_login_form else f"{BASE}/", status_code=303
        )
        response.delete_cookie(SESSION_COOKIE, path="/")
        return _secure(response)

    # --- pages and API ----------------------------------------------------------------------

    async def page(self, request: Request) -> Response:
        principal = self.auth.authenticate(request)
        if principal is None:
            return self._challenge(request, page=True)
        html = pages.dashboard(
            base=BASE,
            csrf=self.auth.csrf_token(principal),
            refresh_s=self.settings.ops_refresh_s,
            namespace=self.settings.redis_namespace,
            logout=principal.kind == "session",
        )
        return _secure(HTMLResponse(html))

    async def api_overview(self, request: Request) -> Response:
        if self.auth.authenticate(request) is None:
            return self._challenge(request, page=False)
        queue = request.query_params.get("queue") or None
        reason = request.query_params.get("reason") or None
        try:
            view = await run_in_threadpool(self._overview, queue, reason)
        except redis.RedisError as exc:
            return _redis_down(exc)
        self.reconciler.maybe_start(self.client, view["ledger"]["reconcile"])
        view["waiting"], view["credits"], view["holds"], view["notifications"], outcomes = await asyncio.gather(
            waiting_view(self.settings, oldest=OLDEST_SHOWN), expiry_view(self.settings),
            holds_view(self.settings), notifications_view(self.settings), outcomes_view(self.settings),
        )  # fmt: skip
        apply_exact_totals(view, outcomes)
        return _json(view)

    def _overview(self, queue: str | None, reason: str | None) -> dict[str, Any]:
        view = overview(self.reader())
        dead = self.dead_letters()
        letters = dead.list(queue=queue, reason=reason, limit=DLQ_PAGE)
        view["dead_letters"] = [letter.summary(view["now_ms"]) for letter in letters]
        reasons = {r for letter in dead.list(limit=500) for r in letter.reasons}
        view["dead_letter_reasons"] = sorted(
            reasons | set(view["ledger"]["dead_lettered_by_reason"])
        )
        view["queue_names"] = list(self.queues)
        return view

    async def _post_action(
        self, request: Request, actions: tuple[str, ...]
    ) -> tuple[Principal, str, dict[str, Any]] | Response:
        """What every dashboard POST checks first: auth, CSRF, a known action, a JSON object body.
        Returns (principal, action, body), or the error response to send."""
        principal = self.auth.authenticate(request)
        if principal is None:
            return self._challenge(request, page=False)
        if not self.auth.check_csrf(request, principal):
            log.warning("ops_csrf_refused", path=request.url.path)
            return _json({"error": "missing or wrong CSRF token"}, 403)
        action = request.path_params["action"]
        if action not in actions:
            return _json({"error": "unknown action"}, 404)
        try:
            body = json.loads(await _body(request) or b"{}")
            if not isinstance(body, dict):
                raise ValueError
        except ValueError:
            return _json({"error": "body must be a JSON object"}, 400)
        return principal, action, body

    async def api_dlq(self, request: Request) -> Response:
        posted = await self._post_action(request, ("requeue", "purge"))
        if isinstance(posted, Response):
            return posted
        principal, action, body = posted
        try:
            done, missing = await run_in_threadpool(self._dlq_action, action, body, principal)
        except redis.RedisError as exc:
            return _redis_down(exc)
        except ValueError as exc:
            return _json({"error": str(exc)}, 400)
        return _json({"action": action, "done": done, "missing": missing})

    def _dlq_action(
        self, action: str, body: dict[str, Any], principal: Principal
    ) -> tuple[int, int]:
        dead = self.dead_letters()
        letters: list[DeadLetter | None]
        if body.get("all") is True:
            letters = list(
                dead.list(
                    queue=body.get("queue") or None, reason=body.get("reason") or None, limit=None
                )
            )
        else:
            items = body.get("items")
            if not isinstance(items, list) or not items:
                raise ValueError('give "items": [{"queue": …, "id": …}] or "all": true')
            letters = [
                dead.get(str(i.get("queue", "")), str(i.get("id", "")))
                if isinstance(i, dict)
                else None
                for i in items
            ]
        act = dead.requeue if action == "requeue" else dead.purge
        done = sum(1 for letter in letters if letter is not None and act(letter))
        log.info(
            "ops_dlq_action",
            action=action,
            done=done,
            missing=len(letters) - done,
            by=principal.kind,
        )
        return done, len(letters) - done

    async def api_waiting(self, request: Request) -> Response:
        """POST release {"event_ids": […]}: back to their queues now; POST drop {"event_ids":
        […], "reason": "why"}: recorded as a rejection `dropped` by the dashboard's user."""
        posted = await self._post_action(request, ("release", "drop"))
        if isinstance(posted, Response):
            return posted
        principal, action, body = posted
        ids, why = body.get("event_ids"), str(body.get("reason") or "").strip()
        if not isinstance(ids, list) or not 0 < len(ids) <= MAX_WAITING_IDS or not all(
            isinstance(i, str) and i for i in ids
        ):
            return _json({"error": f'give "event_ids": [1 to {MAX_WAITING_IDS} event ids]'}, 400)
        if action == "drop" and not why:
            return _json({"error": 'a drop needs a "reason": why it is dropped'}, 400)
        if self.settings.database_url is None:
            return _json({"error": "DATABASE_URL not set"}, 503)
        try:
            if action == "release":
                result = await self._release_waiting(ids)
            else:
                by = f"dashboard ({principal.kind})"
                result = await self._drop_waiting(ids, by, why)
        except NotWaiting as exc:
            return _json({"error": f"not waiting: {exc}", "not_waiting": exc.states}, 409)
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            log.warning("ops_waiting_action_failed", action=action, error=type(exc).__name__)
            return _json({"error": f"PostgreSQL unreachable ({type(exc).__name__})"}, 503)
        except (redis.RedisError, dramatiq.errors.BrokerError) as exc:
            return _redis_down(exc)
        log.info("ops_waiting_action", action=action, by=principal.kind, **result)
        return _json({"action": action, **result})

    async def _release_waiting(self, ids: list[str]) -> dict[str, int]:
        from ..broker import build_broker

        if self._broker is None:
            self._broker = build_broker(self.settings, worker=False)
        small = self.settings.model_copy(update={"pool_min_size": 1, "pool_max_size": 1})
        pool = await db.create_pool(small)
        try:
            report = await release_waiting(pool, self._broker, self.settings, ids)
        finally:
            await pool.close()
        return {"done": report.sent, "in_flight": report.in_flight,
                "missing": len(report.not_waiting)}  # fmt: skip

    async def _drop_waiting(self, ids: list[str], by: str, why: str) -> dict[str, int]:
        conn = await db.connect(self.settings.require_database_url())
        try:
            dropped = await drop_waiting(conn, ids, by=by, why=why)
        finally:
            await conn.close()
        return {"done": len(dropped), "missing": 0}

    async def api_notifications(self, request: Request) -> Response:
        """POST redeliver {"seq": 42, "endpoint": "app"}: that delivery back to pending, due now,
        attempts from 0, the same webhook id (notifications.redeliver), by the dashboard's user."""
        posted = await self._post_action(request, ("redeliver",))
        if isinstance(posted, Response):
            return posted
        principal, action, body = posted
        seq, endpoint = body.get("seq"), body.get("endpoint")
        if type(seq) is not int or seq < 1 or not isinstance(endpoint, str) or not endpoint:
            return _json({"error": 'give "seq": a notification number, and "endpoint": a name'}, 400)
        if self.settings.database_url is None:
            return _json({"error": "DATABASE_URL not set"}, 503)
        try:
            configured = configured_endpoints(self.settings)
        except ConfigError as exc:
            return _json({"error": exc.detail}, 409)
        try:
            status, result = await self._redeliver(seq, endpoint, configured, f"dashboard ({principal.kind})")
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            log.warning("ops_notifications_action_failed", action=action, error=type(exc).__name__)
            return _json({"error": f"PostgreSQL unreachable ({type(exc).__name__})"}, 503)
        return _json({"action": action, **result}, status)

    async def _redeliver(
        self, seq: int, endpoint: str, configured: dict[str, Any], by: str
    ) -> tuple[int, dict[str, Any]]:
        conn = await db.connect(self.settings.require_database_url())
        try:
            found = await deliveries_of(conn, str(seq), endpoint)
            if found is None or not found[1]:
                return 404, {"error": f"no delivery of notification {seq} to {endpoint}"}
            plan = plan_redelivery(found[1], configured)
            if plan.unconfigured:
                return 409, {"error": f"endpoint {endpoint} is not configured: nothing would deliver it"}
            done = await redeliver_notification(conn, plan.targets, by=by)
        finally:
            await conn.close()
        return 200, {"done": len(done), "missing": 1 - len(done)}  # missing: pending already

    async def metrics(self, request: Request) -> Response:
        if not self.settings.ops_metrics_public and self.auth.authenticate(request) is None:
            return self._challenge(request, page=False)
        reader = self.reader()
        waiting, credits, holds, notifications, outcomes = await asyncio.gather(
            waiting_view(self.settings), expiry_view(self.settings, days=0), holds_view(self.settings),
            notifications_view(self.settings), outcomes_view(self.settings),
        )  # fmt: skip
        text = await run_in_threadpool(render_metrics, reader, waiting, credits, holds, notifications, outcomes)
        return Response(text, media_type=CONTENT_TYPE_LATEST)


async def _body(request: Request) -> bytes:
    body = await request.body()
    if len(body) > MAX_BODY:
        raise ValueError("body too large")
    return body


async def _form(request: Request) -> dict[str, str]:
    """An urlencoded form without python-multipart: {name: first value}."""
    try:
        raw = (await _body(request)).decode()
    except (ValueError, UnicodeDecodeError):
        return {}
    return {k: v[0] for k, v in parse_qs(raw).items()}


def ops_routes(settings: Settings, queues: tuple[str, ...] = QUEUES) -> list[BaseRoute]:
    """The dashboard under /ops and /metrics, to add to any Starlette app."""
    return OpsApp(settings, queues).routes()


def dev_dashboard_settings(settings: Settings) -> Settings:
    """`pedro-worker dev`: with no ops credentials set and the ingress on loopback only, the
    dashboard and /metrics open without auth (nothing else on the machine's network sees them)."""
    if (
        settings.ops_token
        or settings.ops_basic_auth
        or settings.ingress_host not in ("127.0.0.1", "localhost", "::1")
    ):
        return settings
    return settings.model_copy(update={"ops_allow_anonymous": True, "ops_metrics_public": True})


def create_app(settings: Settings) -> Starlette:
    """The dashboard alone (the ingress mounts the same routes next to its own)."""

    async def home(request: Request) -> Response:
        return RedirectResponse(f"{BASE}/", status_code=307)

    return Starlette(routes=[Route("/", home), *ops_routes(settings)])
