"""`pedro-worker bench` in a tiny configuration: it completes and verifies exactly-once.

No timing is asserted: the figures depend on the machine. The bench runs as a subprocess (as a
user runs it) against this session's servers, in databases and a Redis namespace of its own.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.verify import ExactlyOnceViolation, verify_product
from bench.workload import START_CREDITS, Expected, Workload
from tests.integration.helpers import make_user
from worker.ledger.apply import apply_usage_batch
from worker.settings import ROOT, Settings

pytestmark = pytest.mark.integration

TINY = [
    "--events", "300", "--single-events", "60", "--users", "40", "--batch-size", "50",
    "--latency-rate", "100", "--latency-seconds", "1.5", "--scale-out", "1,2", "--scale-events", "150",
    "--healthz-seconds", "0.3", "--http-connections", "4", "--http-events", "60", "--http-batch-events", "300",
    "--paths", "a,a1,b,b_part,k,c,c3,cn,d,e,f,latency,h,i,scale",  # (g), over HTTP, has its own case below
]  # fmt: skip
TINY_HOLDS = [
    "--paths", "g", "--users", "40", "--holds-users", "20", "--holds-seconds", "0.6", "--holds-rates", "100",
    "--holds-concurrency", "4",
]  # fmt: skip


def _bench(args: list[str], pg_url: str, redis_url: str, out: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "DATABASE_URL": pg_url, "REDIS_URL": redis_url, "PEDRO_LOG_LEVEL": "WARNING"}
    return subprocess.run(
        [sys.executable, "-m", "worker.cli", "bench", *args, "--json-out", str(out)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip


def test_tiny_bench_completes_and_verifies_exactly_once(pg_url: str, redis_url: str, tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    proc = _bench(TINY, pg_url, redis_url, out)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "exactly-once verified after each of" in proc.stdout

    report = json.loads(out.read_text())
    assert report["violation"] is None
    measured = {(f["path"], f["distribution"]) for f in report["figures"]}
    for dist in ("uniform", "hot"):
        assert {(p, dist) for p in ("a", "a1", "b", "b_part", "k", "c", "c3", "cn", "d", "f", "f_direct", "h", "i")} \
            <= measured
        assert report["http"]["healthz"] and report["http"]["h_over_healthz"][dist] > 0
        assert report["grant_crossings"][dist] > 0  # (c3)'s debits did cross from grant to grant
        assert report["low_notifications"][dist] > 0  # (cn)'s balances crossed its thresholds
    assert ("e", "any") in measured
    assert [s["processes"] for s in report["scale_out"]] == [1, 2]
    assert report["latency"]["samples"] > 0
    assert len(report["checks"]) == 30  # 13 per distribution, latency, no-op, 2 scale-out runs
    targets = {t["target"] for t in report["targets"]}
    assert {"(c)/(k) >= 0.5, (k) the write ceiling", "(f)/(c) >= 5", "(i)/(c) >= 0.5",
            "(h) events/s / healthz req/s >= 0.6", "(c) >= 20,000 events/s"} <= targets


def test_tiny_holds_over_http_complete_and_every_hold_is_captured_once(pg_url: str, redis_url: str,
                                                                       tmp_path: Path) -> None:  # fmt: skip
    """(g): the ingress in its own process, a few hundred hold -> capture pairs and healthz
    requests per distribution, then the checks (every hold captured once, balances, drift)."""
    out = tmp_path / "bench.json"
    proc = _bench(TINY_HOLDS, pg_url, redis_url, out)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "holds over HTTP (g)" in proc.stdout

    report = json.loads(out.read_text())
    assert report["violation"] is None
    assert [label for label, _ in report["checks"]] == ["(g) holds over HTTP, uniform", "(g) holds over HTTP, hot"]
    closed = {(c["distribution"], c["kind"], c["concurrency"]): c for c in report["holds"]["closed"]}
    opened = {(o["distribution"], o["rate"]): o for o in report["holds"]["open"]}
    for dist in ("uniform", "hot"):
        assert closed[(dist, "healthz", 4)]["count"] > 0 and closed[(dist, "holds", 4)]["count"] > 0
        assert opened[(dist, 100)]["samples"] > 0
    targets = {(t["target"], t["distribution"]) for t in report["targets"]}
    assert ("(g) hold->capture/s / healthz req/s >= 0.5", "uniform") in targets


async def test_verification_fails_loudly_on_a_double_debit(conn, database_url: str) -> None:
    workload = Workload(users=3, seed=1)
    for clerk in workload.clerk_ids:
        await make_user(conn, clerk, credits=START_CREDITS)
    events = workload.events("v", 20, "uniform")
    await apply_usage_batch(conn, events, Settings())
    expected = Expected(workload.clerk_ids)
    expected.apply(events)
    await verify_product(database_url, expected, "smoke")

    clerk = events[0]["clerkUserId"]  # one event's debit applied a second time
    await conn.execute(
        'UPDATE "CreditBalance" SET "creditsRemaining" = "creditsRemaining" - $2 WHERE "clerkUserId" = $1',
        clerk, events[0]["credits"],
    )  # fmt: skip
    with pytest.raises(ExactlyOnceViolation) as raised:
        await verify_product(database_url, expected, "smoke")
    text = str(raised.value)
    assert "find_balance_drift" in text and clerk in text
