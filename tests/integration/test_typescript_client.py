"""The TypeScript client (clients/typescript) against the real ingress, worker and dispatcher.

The node side is built from source here: `npm ci` into clients/typescript/node_modules when it
is missing or was installed from another package-lock.json (a marker file says which), then
`tsc` into dist/ (the package) and build/test/ (its tests). Then:

- node's own test runner runs the client's tests: the unit ones against a scripted fetch, the
  live ones against `pedro-worker ingress`, `pedro-worker worker` and `pedro-worker notify` started
  here as subprocesses (each in its own process group) on the session's PostgreSQL and Redis;
- `tsc --noEmit` over the example Next.js route handlers (clients/typescript/examples/);
- the types regenerated from docs/openapi.json and docs/notifications.schema.json equal the
  committed ones (issue 21's acceptance);
- 10,000 events with 10 % duplicates published through the ingress while Redis is down 5 s:
  every event applied exactly once (issue 21's acceptance).

Without node ≥ 18 and npm these tests skip — or fail when CI=true and node or npm is missing
(`.ci/run` installs them).
"""

from __future__ import annotations

import contextlib
import fcntl
import filecmp
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import redis

from tests.integration.helpers import count, make_user
from worker.embedded import EmbeddedRedis, free_port
from worker.repo.reconcile import find_balance_drift
from worker.settings import ROOT

CLIENT = ROOT / "clients" / "typescript"
MIN_NODE = 18
TOKEN = "ts-client-test-token"
WEBHOOK_SECRET = "whsec_" + "dHMtY2xpZW50LXdlYmhvb2stc2VjcmV0LWZvci10ZXN0cw=="  # base64 of a test key
INSTALLED = "node_modules/.pedro-installed"  # written last: the digest of what was installed
NODE_TESTS = ("client.test.js", "webhooks.test.js", "live.test.js")


class NodeUnavailable(RuntimeError):
    """No usable node/npm on this machine (a skip locally, a failure in CI when missing)."""


@dataclass(frozen=True)
class Node:
    node: str
    npm: str
    version: tuple[int, int, int]

    def run(self, args: list[str], *, what: str, timeout: float, env: dict[str, str] | None = None,
            check: bool = True) -> subprocess.CompletedProcess[str]:  # fmt: skip
        done = subprocess.run(args, cwd=CLIENT, env=env or _quiet_env(), capture_output=True, text=True,
                              timeout=timeout)  # fmt: skip
        if check and done.returncode != 0:
            pytest.fail(f"{what} failed (exit {done.returncode}):\n{done.stdout}\n{done.stderr}")
        return done

    def tsc(self, project: str) -> None:
        self.run([self.node, "node_modules/typescript/bin/tsc", "-p", project], what=f"tsc -p {project}", timeout=300)


def _quiet_env() -> dict[str, str]:
    return {**os.environ, "npm_config_update_notifier": "false", "npm_config_fund": "false",
            "npm_config_audit": "false", "NODE_NO_WARNINGS": "1"}  # fmt: skip


def _find_node() -> tuple[str, str, tuple[int, int, int]]:
    node, npm = shutil.which("node"), shutil.which("npm")
    if not node or not npm:
        missing = " and ".join(n for n, p in (("node", node), ("npm", npm)) if not p)
        raise NodeUnavailable(f"{missing} not found (apt-get install nodejs npm)")
    out = subprocess.run([node, "--version"], capture_output=True, text=True, timeout=30).stdout.strip()
    match = re.match(r"v(\d+)\.(\d+)\.(\d+)", out)
    if not match:
        raise NodeUnavailable(f"cannot read the version of {node} ({out!r})")
    return node, npm, (int(match[1]), int(match[2]), int(match[3]))


@contextlib.contextmanager
def _locked() -> Iterator[None]:
    """One session at a time installs and builds (they write node_modules/, dist/, build/)."""
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "pedro-worker"
    base.mkdir(parents=True, exist_ok=True)
    with (base / "ts-client.lock").open("w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _install_and_build(node: Node) -> None:
    digest = hashlib.sha256((CLIENT / "package-lock.json").read_bytes() + f"node{node.version[0]}".encode()).hexdigest()
    marker = CLIENT / INSTALLED
    with _locked():
        if not marker.exists() or marker.read_text() != digest:
            # No install scripts: none of the dev dependencies needs one.
            node.run([node.npm, "ci", "--ignore-scripts", "--prefer-offline", "--no-audit", "--no-fund",
                      "--loglevel=error"], what="npm ci", timeout=900)  # fmt: skip
            marker.write_text(digest)
        node.tsc("tsconfig.json")  # (over what is there: another session may be running the last build)
        node.tsc("tsconfig.test.json")


@pytest.fixture(scope="module")
def node() -> Node:
    """node and npm, the client's dependencies installed, the package and its tests built."""
    try:
        path, npm, version = _find_node()
    except NodeUnavailable as e:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{e}: CI must run the TypeScript client's tests (.ci/run installs node and npm)")
        pytest.skip(str(e))
    if version[0] < MIN_NODE:
        pytest.skip(f"node {'.'.join(map(str, version))} is too old for the TypeScript client (needs >= {MIN_NODE})")
    toolchain = Node(path, npm, version)
    _install_and_build(toolchain)
    return toolchain


# --- the real services --------------------------------------------------------------------------------


class Service:
    """A `pedro-worker` command in its own process group, logging to a file."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log_dir: Path) -> None:
        self.name, self.log = name, log_dir / f"{name}.log"
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                                         start_new_session=True)  # fmt: skip

    def tail(self, lines: int = 30) -> str:
        text = self.log.read_text(errors="replace").splitlines()[-lines:] if self.log.exists() else []
        return f"--- {self.name} (last {lines} lines) ---\n" + "\n".join(text)

    def stop(self) -> None:
        """SIGTERM (each finishes what it holds), SIGKILL to the group if it lingers."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                pass
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(30)


@dataclass
class Stack:
    url: str
    services: list[Service]

    def logs(self) -> str:
        return "\n".join(service.tail() for service in self.services)


@contextlib.contextmanager
def running_stack(database_url: str, redis_url: str, namespace: str, log_dir: Path,
                  webhook_port: int | None = None) -> Iterator[Stack]:  # fmt: skip
    """`pedro-worker ingress` (on a free port, accepting TOKEN), `pedro-worker worker`, and with
    `webhook_port` `pedro-worker notify` delivering every notification there."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PEDRO_NOTIFY_", "NOTIFY_"))}
    env |= {"DATABASE_URL": database_url, "PEDRO_DATABASE_URL": database_url,
            "REDIS_URL": redis_url, "PEDRO_REDIS_URL": redis_url, "PEDRO_REDIS_NAMESPACE": namespace,
            "PEDRO_API_TOKENS": TOKEN, "PEDRO_INGRESS_HOST": "127.0.0.1", "PEDRO_INGRESS_PORT": str(port),
            "PEDRO_LOG_FORMAT": "json"}  # fmt: skip
    if webhook_port is not None:
        env |= {"PEDRO_NOTIFY_URL": f"http://127.0.0.1:{webhook_port}/pedro-notifications",
                "PEDRO_NOTIFY_SECRET": WEBHOOK_SECRET}  # fmt: skip
    cli = [sys.executable, "-m", "worker.cli"]
    services: list[Service] = []
    stack = Stack(f"http://127.0.0.1:{port}", services)
    try:
        services.append(Service("ingress", [*cli, "ingress"], env, log_dir))
        services.append(Service("worker", [*cli, "worker", "--processes", "1", "--threads", "4"], env, log_dir))
        if webhook_port is not None:
            services.append(Service("notify", [*cli, "notify"], env, log_dir))
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{stack.url}/healthz", timeout=1).status_code == 200:
                    break
            if time.monotonic() > deadline or any(s.proc.poll() is not None for s in services):
                pytest.fail("the services did not start\n" + stack.logs())
            time.sleep(0.1)
        yield stack
    finally:
        for service in reversed(services):
            service.stop()
        client = redis.Redis.from_url(redis_url)
        with contextlib.suppress(redis.RedisError):
            keys = list(client.scan_iter(f"{namespace}*"))
            if keys:
                client.delete(*keys)
        client.close()


def _node_env(stack: Stack, **more: str) -> dict[str, str]:
    return {**_quiet_env(), "PEDRO_URL": stack.url, "PEDRO_TOKEN": TOKEN, **more}


# --- the tests ----------------------------------------------------------------------------------------


async def test_the_clients_node_tests_pass_against_the_real_ingress_worker_and_dispatcher(
    node, conn, database_url, redis_url, settings, tmp_path
):
    webhook_port = free_port()
    with running_stack(database_url, redis_url, settings.redis_namespace, tmp_path, webhook_port) as stack:
        env = _node_env(stack, PEDRO_WEBHOOK_PORT=str(webhook_port), PEDRO_WEBHOOK_SECRET=WEBHOOK_SECRET)
        tests = [f"build/test/{name}" for name in NODE_TESTS]
        done = node.run([node.node, "--test", *tests], what="node --test", timeout=300, check=False, env=env)
        if done.returncode != 0:
            pytest.fail(f"node --test failed (exit {done.returncode}):\n{done.stdout}\n{done.stderr}\n{stack.logs()}")
    summary = {"fail": "0", "cancelled": "0", "skipped": "0"}
    summary |= dict(re.findall(r"^# (tests|pass|fail|skipped|cancelled) (\d+)$", done.stdout, re.MULTILINE))
    print(f"\nnode --test: {summary}")
    assert summary["fail"] == summary["cancelled"] == summary["skipped"] == "0", done.stdout
    assert summary["pass"] == summary["tests"] != "0", done.stdout

    # What the node tests did, as the database has it: each event applied once, balances right.
    rows = await conn.fetch('SELECT "clerkUserId", "creditsRemaining" FROM "CreditBalance"')
    assert {r["clerkUserId"].split("_")[1]: r["creditsRemaining"] for r in rows} == {"alice": 55, "bob": 97}
    assert await count(conn, '"UsageHistory"') == 1 + 25 + 1  # alice's capture and 25 usages, bob's usage
    assert await find_balance_drift(conn) == []


def test_the_example_next_route_handlers_type_check(node):
    node.tsc("examples/tsconfig.json")  # noEmit: Request/Response handlers against the built package


def test_regenerating_the_types_from_the_documents_gives_no_diff(node, tmp_path):
    """Regenerate with `npm run generate` in clients/typescript (after `./run schema --openapi
    --out docs/openapi.json` or `--notifications`)."""
    node.run([node.node, "scripts/generate.mjs", "--out", str(tmp_path)], what="the type generators", timeout=120)
    for name in ("openapi.ts", "notifications.ts"):
        assert filecmp.cmp(tmp_path / name, CLIENT / "src" / name, shallow=False), (
            f"clients/typescript/src/{name} differs from what its document generates: run `npm run generate`"
        )


# --- acceptance: 10,000 events through a Redis outage ---------------------------------------------------

USERS = [f"outage_u{k:02}" for k in range(20)]
UNIQUE, TOTAL, START = 9_000, 10_000, 1_000_000


def _expected_balances() -> dict[str, int]:
    """As publish-through-outage.ts makes them: unique event n is user n % 20, n % 5 + 1 credits."""
    spent = {user: 0 for user in USERS}
    for n in range(UNIQUE):
        spent[USERS[n % len(USERS)]] += n % 5 + 1
    return {user: START - credits for user, credits in spent.items()}


async def test_10000_events_with_duplicates_through_a_5s_redis_outage_are_each_applied_once(
    node, conn, database_url, settings, tmp_path
):
    for user in USERS:
        await make_user(conn, user, credits=START)
    with (
        EmbeddedRedis(appendfsync="always") as own_redis,
        running_stack(database_url, own_redis.url, settings.redis_namespace, tmp_path) as stack,
    ):
        env = _node_env(stack, OUTAGE_USERS=",".join(USERS), OUTAGE_EVENTS=str(TOTAL))
        script = [node.node, "build/test/publish-through-outage.js"]
        with (tmp_path / "node.err").open("w") as err:
            publisher = subprocess.Popen(script, cwd=CLIENT, env=env, stdout=subprocess.PIPE, stderr=err, text=True,
                                         start_new_session=True)  # fmt: skip
        try:
            assert publisher.stdout is not None
            lines = []
            for line in publisher.stdout:  # {"published": n} every 500 events
                lines.append(line)
                if json.loads(line).get("published", 0) >= 3_000:
                    break
            own_redis.stop(kill=True)  # kill -9 (appendfsync always: what Redis acknowledged is on disk)
            time.sleep(5)
            own_redis.start()
            out, _ = publisher.communicate(timeout=240)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(publisher.pid, signal.SIGKILL)
        report = "".join(lines) + out + (tmp_path / "node.err").read_text()
        assert publisher.returncode == 0, f"the publisher failed:\n{report}\n{stack.logs()}"
        summary = json.loads(out.strip().splitlines()[-1])
        print(f"\npublisher: {summary}")
        assert (summary["published"], summary["accepted"], summary["failed"]) == (TOTAL, TOTAL, 0)
        assert summary["statuses"].get("503", 0) > 0, f"the outage never reached the client: {summary}"

        deadline = time.monotonic() + 180
        while await count(conn, '"UsageHistory"') < UNIQUE and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(1)  # anything applied twice would show now

    assert await count(conn, '"UsageHistory"') == UNIQUE, stack.logs()
    assert await conn.fetchval("SELECT count(DISTINCT id) FROM \"UsageHistory\" WHERE id LIKE 'outage-%'") == UNIQUE
    assert await count(conn, "worker.event_log") == UNIQUE
    assert await count(conn, "worker.rejection") == 0
    balances = {r["clerkUserId"]: r["creditsRemaining"]
                for r in await conn.fetch('SELECT "clerkUserId", "creditsRemaining" FROM "CreditBalance"')}  # fmt: skip
    assert balances == _expected_balances()
    assert await find_balance_drift(conn) == []
