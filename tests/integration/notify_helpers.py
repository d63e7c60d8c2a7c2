"""A notification receiver for the delivery tests, and the dispatcher as a real process.

The receiver is the app's side of a webhook: a local HTTP server (threads of its own, so a test
that blocks its event loop never blocks it) that verifies every request with the
`standardwebhooks` library, as the app's route handler does, and records what arrived. It can
go down and come back on the same port, answer what a test tells it, and stall a request.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from worker.notify.config import Endpoint
from worker.notify.notices import Notice
from worker.settings import Settings


def new_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


@dataclass
class Arrival:
    """One request the receiver verified (whatever it answered)."""

    webhook_id: str
    timestamp: int  # webhook-timestamp
    signature: str  # webhook-signature
    body: bytes
    payload: dict
    at: float  # time.monotonic() when it arrived

    @property
    def headers(self) -> dict[str, str]:
        return {"webhook-id": self.webhook_id, "webhook-timestamp": str(self.timestamp),
                "webhook-signature": self.signature}  # fmt: skip

    @property
    def type(self) -> str:
        return self.payload["type"]

    @property
    def user(self) -> str | None:
        return self.payload["data"].get("clerkUserId")

    @property
    def n(self) -> int | None:
        return self.payload["data"].get("n")


@dataclass
class Receiver:
    secret: str = field(default_factory=new_secret)
    answer: Callable[[Arrival], int] = lambda _: 204
    port: int = 0
    arrivals: list[Arrival] = field(default_factory=list)  # verified, in arrival order
    unverified: list[str] = field(default_factory=list)  # why each request that failed verification did
    max_per_user: int = 0  # the most requests of one user the receiver held at once
    delay_s: float = 0.0  # each request takes this long to answer

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._stall: threading.Event | None = None
        self._stalled = threading.Event()
        self._held: dict[str | None, int] = {}

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/webhooks/pedro"

    def endpoint(self, name: str = "app", events: Sequence[str] = ("*",)) -> Endpoint:
        return Endpoint(name=name, url=self.url, secret=self.secret, events=tuple(events))

    def up(self) -> Receiver:
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), self._handler())
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True).start()
        return self

    def down(self) -> None:
        """Nothing listens on the port any more: connections are refused."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def stall_next(self) -> threading.Event:
        """The next request arrives (and is recorded), then gets no answer until the returned
        event is set."""
        self._stall = threading.Event()
        return self._stall

    def wait_stalled(self, timeout_s: float) -> None:
        assert self._stalled.wait(timeout_s), "no request arrived"

    def of(self, user: str | None) -> list[Arrival]:
        with self._lock:
            return [a for a in self.arrivals if a.user == user]

    def ids(self) -> list[str]:
        with self._lock:
            return [a.webhook_id for a in self.arrivals]

    def _arrived(self, body: bytes, headers: dict[str, str]) -> tuple[Arrival | None, int]:
        try:
            payload = Webhook(self.secret).verify(body, headers)
        except WebhookVerificationError as exc:
            with self._lock:
                self.unverified.append(str(exc))
            return None, 401
        arrival = Arrival(headers["webhook-id"], int(headers["webhook-timestamp"]), headers["webhook-signature"], body,
                          payload, time.monotonic())  # fmt: skip
        with self._lock:
            self.arrivals.append(arrival)
            held = self._held[arrival.user] = self._held.get(arrival.user, 0) + 1
            self.max_per_user = max(self.max_per_user, held)
        stall, self._stall = self._stall, None
        if stall is not None:
            self._stalled.set()
            stall.wait(60)
        elif self.delay_s:
            time.sleep(self.delay_s)
        status = self.answer(arrival)
        with self._lock:  # before the answer goes: the dispatcher may send the lane's next one then
            self._held[arrival.user] -= 1
        return arrival, status

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                _, status = receiver._arrived(body, {k.lower(): v for k, v in self.headers.items()})
                try:
                    self.send_response(status)
                    self.send_header("content-length", "0")
                    self.end_headers()
                except OSError:  # the dispatcher is gone (killed while it waited)
                    pass

            def log_message(self, *args: object) -> None:
                pass

        return Handler


def notice(user: str | None, n: int, type: str = "credits.granted", tag: str = "") -> Notice:
    """A notification about `user`, the `n`th of its lane in the test (n travels in its data)."""
    return Notice(f"test/{tag}/{user}/{n}", type, user, {"clerkUserId": user, "n": n, "credits": 10 + n})


def with_endpoints(settings: Settings, *endpoints: Endpoint, **more: object) -> Settings:
    """The writer's settings: notifications get a delivery row per endpoint that takes them."""
    return settings.model_copy(update={"notify_endpoints": list(endpoints), **more})


class Dispatcher:
    """`pedro-worker notify` as a real process (its own session: a SIGKILL takes it all)."""

    def __init__(self, database_url: str, endpoints: Sequence[Endpoint], log: Path, *,
                 schedule: Sequence[float] = (1, 2, 4, 8, 16, 32), timeout_s: float = 5,
                 poll_ms: int = 200, concurrency: int = 4) -> None:  # fmt: skip
        self.log = log
        listed = [{"name": e.name, "url": e.url, "secret": e.secret.get_secret_value(), "events": list(e.events)}
                  for e in endpoints]  # fmt: skip
        env = {**os.environ, "DATABASE_URL": database_url, "PEDRO_NOTIFY_ENDPOINTS": json.dumps(listed),
               "PEDRO_NOTIFY_RETRY_SCHEDULE_S": ",".join(str(s) for s in schedule),
               "PEDRO_NOTIFY_TIMEOUT_S": str(timeout_s), "PEDRO_NOTIFY_POLL_MS": str(poll_ms),
               "PEDRO_NOTIFY_CONCURRENCY": str(concurrency), "PEDRO_LOG_FORMAT": "json"}  # fmt: skip
        for name in ("PEDRO_NOTIFY_URL", "PEDRO_NOTIFY_SECRET", "REDIS_URL"):
            env.pop(name, None)
        with log.open("ab") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", "worker.cli", "notify"], env=env,
                                         stdout=out, stderr=out, start_new_session=True)  # fmt: skip

    def events(self, name: str) -> list[dict]:
        lines = [json.loads(line) for line in self.log.read_text().splitlines() if line.startswith("{")]
        return [line for line in lines if line.get("event") == name]

    def stop(self) -> int:
        """SIGTERM: it finishes what it has in flight and exits 0."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            finally:
                self.kill()
        return self.proc.returncode

    def kill(self) -> None:
        """kill -9, mid-whatever it was doing."""
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(30)
