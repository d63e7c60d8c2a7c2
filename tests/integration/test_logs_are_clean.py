"""Everything the processes log, greped: no secret, token, full DATABASE_URL or email address.

A real worker process and a real ingress (with the dashboard) run with every kind of secret
configured; events carry email addresses (a user's, some in usage details): one waits in
PostgreSQL for its user, one dies as a dead letter (its user's balance row held elsewhere:
dramatiq logs a failed message with its arguments); operators log in with wrong and right
credentials and run the ops commands, the waiting ones too. Then the test greps all of their
output.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx
import redis

from tests.integration.family_helpers import user_created
from tests.integration.helpers import held_balance, usage
from tests.integration.ops_helpers import dead_letters, wait_until
from worker.embedded import free_port

DB_PASSWORD = "Db-pass-8c1f0e"
OPS_TOKEN = "ops-tok-3a9d77c1"
OPS_BASIC = "ops:basic-pw-51e2b0"
API_TOKEN = "api-tok-c0ffee42"
EMAILS = ("ana.maria@example.com", "bob.contact@example.org")
EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")


def with_password(url: str, password: str) -> str:
    parts = urlsplit(url)
    user, _, host = parts.netloc.rpartition("@")
    return urlunsplit(parts._replace(netloc=f"{user}:{password}@{host}"))


def _start(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, *args], env=env, stdout=log.open("w"), stderr=subprocess.STDOUT
    )


def _stop(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


async def test_no_log_line_carries_a_secret_or_an_email(conn, settings, tmp_path):
    database_url = with_password(settings.require_database_url(), DB_PASSWORD)
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "REDIS_URL": settings.require_redis_url(),
        "PEDRO_REDIS_NAMESPACE": settings.redis_namespace,
        "PEDRO_LOG_FORMAT": "json",
        "PEDRO_LOG_LEVEL": "DEBUG",
        "PEDRO_MAX_RETRIES": "1",
        "PEDRO_MIN_BACKOFF_MS": "50",
        "PEDRO_MAX_BACKOFF_MS": "100",
        "PEDRO_LOCK_WAIT_MS": "100",
        "PEDRO_WAITING_SWEEP_MS": "200",
        "PEDRO_OPS_TOKEN": OPS_TOKEN,
        "PEDRO_OPS_BASIC_AUTH": OPS_BASIC,
        "PEDRO_API_TOKENS": API_TOKEN,
        "PEDRO_INGRESS_PORT": str(port),
    }
    logs: list[Path] = []

    def start(name: str, *args: str) -> subprocess.Popen:
        logs.append(tmp_path / f"{name}.log")
        return _start(list(args), env, logs[-1])

    def cli(*args: str, data: bool = False) -> subprocess.CompletedProcess:
        """Run a command; its stderr (logs) and, unless it prints data, its stdout are greped."""
        result = subprocess.run(
            [sys.executable, "-m", "worker.cli", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        logs.append(tmp_path / f"cli-{len(logs)}.log")
        logs[-1].write_text(result.stderr if data else result.stdout + result.stderr)
        return result

    worker = start("worker", "-m", "dramatiq", "worker.app", "--processes", "1", "--threads", "2")
    ingress = start("ingress", "-m", "worker.cli", "ingress")
    try:
        base = f"http://127.0.0.1:{port}"
        with httpx.Client(base_url=base, timeout=10) as http:
            wait_until(lambda: _answers(http), "the ingress to listen")
            events = [
                user_created("user_mail", email=EMAILS[0], name="Ana Maria", id="msg_mail"),
                usage("user_nobody", id="mail-orphan", details={"contact": EMAILS[1]}),
            ]
            bearer = {"authorization": f"Bearer {API_TOKEN}"}
            assert http.post("/v1/events", json={"events": events}, headers=bearer).status_code in (
                200,
                202,
            )
            http.post(
                "/v1/events", json=events[0], headers={"authorization": "Bearer wrong-" + API_TOKEN}
            )
            assert http.get("/ops/").status_code == 401  # basic auth configured: the browser prompt
            assert http.get("/ops/", auth=("ops", "wrong")).status_code == 401
            assert http.get("/ops/", auth=tuple(OPS_BASIC.split(":"))).status_code == 200  # type: ignore[arg-type]
            assert (
                http.post("/ops/login", data={"token": f"{OPS_TOKEN}x {EMAILS[0]}"}).status_code
                == 401
            )
            assert (
                http.get("/metrics", headers={"authorization": f"Bearer {OPS_TOKEN}"}).status_code
                == 200
            )

            orphan = "SELECT count(*) FROM worker.waiting WHERE event_id = 'mail-orphan'"
            await _poller(conn)(orphan, 1, "the orphan to wait for its user")
            # the user comes through the users queue, the orphan through usage: either may be first
            mail = """SELECT email FROM "User" WHERE "clerkId" = 'user_mail'"""
            await _poller(conn)(mail, EMAILS[0], "user_mail to be created with its email")
            busy = usage("user_mail", id="mail-busy", details={"cc": EMAILS[1]})
            async with held_balance(settings.require_database_url(), "user_mail"):
                assert http.post("/v1/events", json=busy, headers=bearer).status_code in (200, 202)
                wait_until(
                    lambda: dead_letters(settings).counts()["usage"] == 1,
                    "the busy one to be dead-lettered",
                )
            assert cli("waiting", "list").returncode == 0
            assert cli("waiting", "show", "mail-orphan").returncode == 0  # stdout greped too
            assert cli("waiting", "release", "mail-orphan").returncode == 0
            dropped = cli("waiting", "drop", "mail-orphan", "--by", f"ops {EMAILS[0]}",
                          "--reason", f"asked by {EMAILS[1]}")  # fmt: skip
            assert dropped.returncode == 0, dropped.stderr
            export = tmp_path / "export.jsonl"
            export.write_text(cli("dlq", "list", "--json", data=True).stdout)
            assert cli("dlq", "list").returncode == 0
            assert cli("replay", str(export)).returncode == 0
            assert cli("dlq", "requeue", "--all").returncode == 0
            assert cli("stats").returncode == 0
            assert cli("reconcile").returncode == 0
            assert cli("check").returncode == 0
            overview = http.get(
                "/ops/api/overview", headers={"authorization": f"Bearer {OPS_TOKEN}"}
            ).json()
            assert overview["workers"], overview  # the worker process is there, by its heartbeat
    finally:
        _stop(ingress)
        _stop(worker)
        redis.Redis.from_url(settings.require_redis_url()).close()

    text = "\n".join(f"--- {p.name}\n{p.read_text()}" for p in logs)
    for expected in (
        "message_dead_lettered",
        "http_request",
        "ops_auth_required",
        "ops_login_failed",
        "waiting_dropped",
    ):
        assert expected in text, f"{expected} not logged: the test would prove nothing"
    for secret in (DB_PASSWORD, OPS_TOKEN, OPS_BASIC.split(":")[1], API_TOKEN, database_url):
        assert secret not in text
    found = [m.group(0) for m in EMAIL.finditer(text)]
    assert found == [], found


def _poller(conn):
    """wait_until for a query's value, without blocking the test's event loop."""

    async def wait(query: str, expected: object, what: str, timeout_s: float = 30.0) -> None:
        deadline = time.monotonic() + timeout_s
        while await conn.fetchval(query) != expected:
            if time.monotonic() > deadline:
                raise AssertionError(f"still waiting for {what}")
            await asyncio.sleep(0.05)

    return wait


def _answers(http: httpx.Client) -> bool:
    try:
        return http.get("/healthz").status_code == 200
    except httpx.TransportError:
        return False
