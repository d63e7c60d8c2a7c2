"""The ledger totals `stats`, the dashboard and /metrics show are exact: each transaction that
decides events adds its counts to worker.outcome_count in that transaction (ops/outcomes.py), so
SIGKILLed workers lose none of them — the in-memory counters flushed to Redis every second did."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

from tests.integration.helpers import count, drain_what_the_killed_held, make_user, usage
from worker.ops.stats import StatsReader
from worker.publisher import Publisher
from worker.repo.reconcile import find_balance_drift
from worker.repo.outcome_counts import tally
from worker.ledger.apply import repeated_refusals_are_duplicates
from worker.ledger.decide import Outcome
from worker.repo.outcome_counts import outcome_totals

EVENTS = 8_000
DUPLICATES = 800  # the first 800 published again
INVALID = 40  # rejected: validation_error


def test_tally_counts_outcomes_by_status_and_reason_sorted_and_skips_retries():
    outcomes = [Outcome("a", "applied", "note"), Outcome("b", "rejected", "insufficient_credits"),
                Outcome("c", "applied"), Outcome("d", "retry", "balance_busy"), Outcome("e", "duplicate"),
                Outcome("f", "waiting", "unknown_user", "user:x")]  # fmt: skip
    assert tally(outcomes) == [("applied", "", 2), ("duplicate", "", 1), ("rejected", "insufficient_credits", 1),
                               ("waiting", "unknown_user", 1)]  # fmt: skip


def test_a_refusal_already_stored_is_a_duplicate_delivery():
    outcomes = {0: Outcome("a", "rejected", "validation_error"), 1: Outcome("a", "rejected", "validation_error"),
                2: Outcome("b", "rejected", "idempotency_conflict"), 3: Outcome("#3", "rejected", "validation_error"),
                4: Outcome("c", "applied")}  # fmt: skip
    settled = repeated_refusals_are_duplicates(outcomes, stored={("a", "validation_error"), (None, "validation_error")})
    assert [o.status for o in settled.values()] == ["rejected", "duplicate", "duplicate", "rejected", "applied"]


async def test_an_invalid_event_delivered_three_times_is_one_refusal_and_two_duplicates(conn, broker, worker):
    bad_usage = usage("nobody", id="bad-usage", credits=-1)
    bad_user = {"type": "user.created", "id": "bad-user", "clerkUserId": "u-x"}  # no occurredAt, no email
    for _ in range(3):  # three messages: what a redelivery after a crash looks like
        Publisher(broker, validate=False).publish_many([bad_usage, bad_user])
        worker.drain()
    totals = await outcome_totals(conn)
    assert {k: n for k, n in totals.items() if k[1] != "applied"} == {
        ("usage", "rejected", "validation_error"): 1, ("usage", "duplicate", ""): 2,
        ("users", "rejected", "validation_error"): 1, ("users", "duplicate", ""): 2,
    }  # fmt: skip
    assert await count(conn, "worker.rejection") == 2


def _start_worker(env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "dramatiq", "worker.app", "--processes", "1", "--threads", "4"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)  # fmt: skip


async def test_totals_stay_exact_through_three_sigkills_of_the_workers(conn, database_url, redis_url, settings, broker):
    for n in range(10):
        await make_user(conn, f"c{n}", credits=1_000_000)
    events = [usage(f"c{n % 10}", id=f"x{n}", credits=1) for n in range(EVENTS)]
    invalid = [usage(f"c{n % 10}", id=f"bad{n}", credits=-1) for n in range(INVALID)]
    # one event per message: the stream takes seconds, so each kill lands in the middle of it
    Publisher(broker, batch_size=1, validate=False).publish_many(events + events[:DUPLICATES] + invalid)
    env = {**os.environ, "DATABASE_URL": database_url, "REDIS_URL": redis_url,
           "PEDRO_REDIS_NAMESPACE": settings.redis_namespace, "PEDRO_HEARTBEAT_TIMEOUT_MS": "1000",
           "PEDRO_MAINTENANCE_CHANCE": "1000000"}  # fmt: skip

    applied_at_kill = []
    for _ in range(3):
        proc = _start_worker(env)
        try:
            start = await count(conn, "worker.journal")
            deadline = time.monotonic() + 60
            while await count(conn, "worker.journal") < start + 400 and time.monotonic() < deadline:
                time.sleep(0.01)
        finally:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        applied_at_kill.append(await count(conn, "worker.journal"))
    assert applied_at_kill[-1] < EVENTS, "the stream ended before the third kill"

    drain_what_the_killed_held(settings)  # what the killed workers held comes back
    assert await count(conn, '"UsageHistory"') == EVENTS
    assert await find_balance_drift(conn) == []

    stats = subprocess.run([sys.executable, "-m", "worker.cli", "stats", "--json"], env=env, capture_output=True,
                           text=True, timeout=60, check=True)  # fmt: skip
    ledger = json.loads(stats.stdout)["ledger"]
    redis_applied = sum(n for (_q, status, _r), n in StatsReader(broker.client, settings.redis_namespace, heartbeat_timeout_ms=1000)
                        .totals().get("events", {}).items() if status == "applied")  # fmt: skip
    print(f"\napplied when killed: {applied_at_kill}; stats: applied {ledger['applied']} (Redis's counters "
          f"{redis_applied}), duplicate {ledger['duplicate']}, rejected {ledger['rejected']}")
    assert ledger["totals"] == "postgresql"
    assert ledger["applied"] == EVENTS
    assert ledger["rejected"] == INVALID == await count(conn, "worker.rejection")
    assert ledger["rejected_by_reason"] == {"validation_error": INVALID}
    # every delivery of a decided event: the 800 published twice, and what the kills redelivered
    assert ledger["duplicate"] >= DUPLICATES
