"""The grant sweep in real worker processes: one sweep at a time among processes, each expiry
once, and a sweep killed with SIGKILL resumes without expiring anything twice."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

from tests.integration.helpers import adjust, count, make_user
from worker.ledger.apply import apply_usage_batch
from worker.repo.reconcile import find_balance_drift


async def _users_with_expiring_promos(conn, settings, users: int, *, in_seconds: float) -> None:
    """Each user: 100 credits that never expire, and a promo of 10 that expires soon."""
    expires = (datetime.now(UTC) + timedelta(seconds=in_seconds)).isoformat()
    for n in range(users):
        await make_user(conn, f"sw{n}", credits=100)
    promos = [{**adjust(f"sw{n}", 10, id=f"promo{n}"), "expiresAt": expires, "priority": 1} for n in range(users)]
    for i in range(0, users, 1000):
        await apply_usage_batch(conn, promos[i:i + 1000], settings)


def _worker(database_url: str, redis_url: str, settings, sweep_ms: int = 50) -> subprocess.Popen:
    """A real worker: dramatiq's main process and the worker process it forks, in a process group
    of their own, so that a SIGKILL takes both (the forked process is the one sweeping)."""
    env = {**os.environ, "DATABASE_URL": database_url, "REDIS_URL": redis_url,
           "PEDRO_REDIS_NAMESPACE": settings.redis_namespace, "PEDRO_GRANT_SWEEP_MS": str(sweep_ms)}  # fmt: skip
    return subprocess.Popen([sys.executable, "-m", "dramatiq", "worker.app", "--processes", "1", "--threads", "2"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)  # fmt: skip


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM to dramatiq's main process (it stops its worker), SIGKILL to the group if it hangs."""
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(30)
    finally:
        _kill(proc)


def _kill(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(30)


async def _expired(conn) -> int:
    return await conn.fetchval("SELECT count(*) FROM worker.credit_grant WHERE source = 'adjustment' AND state = 'expired'")


async def _wait_for(conn, condition, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while not await condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


async def _each_promo_expired_once(conn, users: int) -> None:
    rows = await conn.fetch(
        "SELECT j.event_id, j.delta FROM worker.journal j WHERE j.kind = 'grant_expiry' ORDER BY j.event_id")
    assert len(rows) == users  # one movement per grant: its key is the grant's
    assert {r["delta"] for r in rows} == {-10}
    assert await conn.fetchval("SELECT sum(expired) FROM worker.credit_grant WHERE source = 'adjustment'") == 10 * users
    assert await conn.fetchval('SELECT count(*) FROM "CreditBalance" WHERE "creditsRemaining" <> 100') == 0
    assert await find_balance_drift(conn) == []


async def test_two_worker_processes_expire_every_grant_once(conn, database_url, redis_url, settings):
    users = 400
    await _users_with_expiring_promos(conn, settings, users, in_seconds=3)
    workers = [_worker(database_url, redis_url, settings) for _ in range(2)]
    try:
        await _wait_for(conn, lambda: _expired_all(conn, users))
    finally:
        for w in workers:
            _stop(w)
    await _each_promo_expired_once(conn, users)


async def _expired_all(conn, users: int) -> bool:
    return await _expired(conn) == users


async def test_a_sweep_killed_mid_way_resumes_and_expires_nothing_twice(conn, database_url, redis_url, settings):
    users = 3000
    await _users_with_expiring_promos(conn, settings, users, in_seconds=3)
    first = _worker(database_url, redis_url, settings)
    try:
        await _wait_for(conn, lambda: _some_expired(conn))
    finally:
        _kill(first)  # both of its processes, mid-sweep
    time.sleep(0.5)  # its last COMMIT, if one was on its way, has landed (or never will)
    done = await _expired(conn)
    print(f"\n{done} of {users} grants expired when the sweep was killed")
    assert done < users  # killed mid-way
    assert await count(conn, "worker.journal WHERE kind = 'grant_expiry'") == done  # whole transactions only

    second = _worker(database_url, redis_url, settings)
    try:
        await _wait_for(conn, lambda: _expired_all(conn, users))
    finally:
        _stop(second)
    await _each_promo_expired_once(conn, users)


async def _some_expired(conn) -> bool:
    return await _expired(conn) > 0


async def test_the_sweep_wakes_when_a_grant_is_due_not_only_every_interval(conn, database_url, redis_url, settings):
    """With a one-minute interval, an expiry still reaches "CreditBalance" moments after it is
    due: the sweep sleeps until the next grant is due when that comes first."""
    await _users_with_expiring_promos(conn, settings, 3, in_seconds=8)  # after the boot sweep
    worker = _worker(database_url, redis_url, settings, sweep_ms=60_000)
    try:
        await _wait_for(conn, lambda: _expired_all(conn, 3), timeout_s=30)  # far less than 60 s
    finally:
        _stop(worker)
    await _each_promo_expired_once(conn, 3)
