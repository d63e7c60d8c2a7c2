"""Serving the ingress with uvicorn: in the foreground (`pedro-worker ingress`) or in a
background thread (`pedro-worker dev`, tests)."""

from __future__ import annotations

import json
import secrets
import shlex
import threading
import time
from contextlib import ExitStack

import uvicorn
from pydantic import SecretStr

from ..settings import Settings
from .app import create_app


def _config(settings: Settings, host: str, port: int) -> uvicorn.Config:
    # log_config=None: uvicorn's own loggers go through our structlog handler; its access log is
    # replaced by RequestContext's `http_request` line, which carries the request id.
    return uvicorn.Config(create_app(settings), host=host, port=port, log_config=None, access_log=False,
                          lifespan="on", server_header=False)  # fmt: skip


def run_ingress(settings: Settings) -> None:
    """Serve until SIGINT/SIGTERM (uvicorn finishes in-flight requests first)."""
    settings.require_redis_url()
    uvicorn.Server(_config(settings, settings.ingress_host, settings.ingress_port)).run()


class IngressServer:
    """The ingress on a background thread; port 0 picks a free port."""

    def __init__(self, settings: Settings, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.server = uvicorn.Server(_config(settings, host, port))
        self.thread = threading.Thread(target=self.server.run, name="pedro-ingress", daemon=True)
        self.host = host

    @property
    def url(self) -> str:
        port = self.server.servers[0].sockets[0].getsockname()[1]
        return f"http://{self.host}:{port}"

    def start(self, timeout_s: float = 10) -> IngressServer:
        self.thread.start()
        deadline = time.monotonic() + timeout_s
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the ingress did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)

    def __enter__(self) -> IngressServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def curl_example(url: str, token: str, clerk_user_id: str = "user_demo_alice") -> str:
    """A copy-paste request that publishes one usage event through the ingress."""
    event = {"type": "usage.recorded", "id": "curl-demo-1", "clerkUserId": clerk_user_id,
             "operationType": "AI_TEXT_CHAT", "occurredAt": "2026-01-01T12:00:00Z"}  # fmt: skip
    return (f"curl -sS -X POST {url}/v1/events -H {shlex.quote('Authorization: Bearer ' + token)} "
            f"-H 'Content-Type: application/json' -d {shlex.quote(json.dumps(event))}")  # fmt: skip


def start_dev_ingress(settings: Settings, stack: ExitStack) -> tuple[str, str]:
    """`pedro-worker dev`: the ingress on `ingress_port` (a free port if that one is taken).
    Returns its URL and a token to show: a generated one when no API token is configured."""
    token = "<one of PEDRO_API_TOKENS>"
    if not settings.api_tokens:
        token = "dev-" + secrets.token_urlsafe(12)
        settings = settings.model_copy(update={"api_tokens": [SecretStr(token)]})
    try:
        server = stack.enter_context(
            IngressServer(settings, host=settings.ingress_host, port=settings.ingress_port)
        )
    except RuntimeError:
        server = stack.enter_context(IngressServer(settings, host=settings.ingress_host, port=0))
    return server.url, token
