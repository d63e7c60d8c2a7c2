"""The chaos run's short form: crashes under load lose nothing and apply nothing twice.

Worker processes are SIGKILLed every two seconds, Redis is killed (-9) and restarted, PostgreSQL
crashes and restarts, the ingress is killed (-9) and restarted, and every worker is down at once
for a few seconds, while 3,000 events of every family (some invalid, some twice, some out of
order) flow and ~170 credit holds are placed over the ingress and captured (through the queue or
over HTTP), released, left open or left to expire while no worker runs. The full run (100,000
events, 2,000 holds) is `pedro-worker chaos`; its figures are in docs/reliability.md.

The hold check the run relies on is itself tested: it must see a hold resolved twice, a wrong
charge, a usage naming a captured hold that was not refused, and a hold open past its expiry.
"""

from __future__ import annotations

import argparse

from bench.chaos import add_arguments, config_from, run_chaos
from bench.chaos_workload import HoldCase
from bench.verify import check_chaos_holds
from tests.integration.helpers import make_user
from worker.credit_api import CaptureRequest, HoldRequest
from worker.domain import holds
from worker.ledger.operation_types import OperationTypes


def test_crashes_under_load_lose_nothing_and_double_nothing(tmp_path):
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    cfg = config_from(parser.parse_args(["--quick"]))
    cfg.log_dir = tmp_path
    report = run_chaos(cfg)

    print("\n".join(report.lines()))
    assert report.worker_kills >= 3 and report.redis_restarts == 1 and report.postgres_restarts == 1
    assert report.ingress_restarts == 1 and report.blackout_s >= 3
    assert report.lost == 0
    assert report.applied_twice == 0
    assert report.wrong_balances == 0 and report.drift == 0
    assert report.hold_findings == []
    h = report.holds
    assert h["placed"] >= 150
    assert h["captured via queue"] and h["captured via HTTP"] and h["released"] and h["open"]
    assert h["expired while no worker ran"] >= 8 and h["left to the sweep"]
    assert h["hold_already_captured"] and h["plain usages naming a resolved hold"]
    assert report.ok, report.problems


async def test_the_hold_check_sees_a_second_resolution_a_wrong_charge_and_an_overdue_hold(conn, settings):
    user_id = await make_user(conn, "u", credits=1_000)
    labels = OperationTypes()
    cases = [HoldCase(f"h-{kind}", "u", kind, 10, 7 if kind == "http" else 0, 900) for kind in ("http", "release", "open")]
    after = {"type": "usage.recorded", "id": "use-after", "clerkUserId": "u", "operationType": "AI_TEXT_CHAT",
             "credits": 3, "holdId": "h-http"}  # fmt: skip
    cases[0].after = [after]
    for c in cases:
        assert (await holds.place(conn, HoldRequest(**c.request()), settings, labels)).status == 201
        c.placed = True
    await holds.capture(conn, "h-http", CaptureRequest(credits=7), settings, labels)
    await holds.release(conn, "h-release", settings)
    await conn.execute(
        "INSERT INTO worker.rejection (event_id, event_type, reason, detail, payload)"
        " VALUES ('use-after', 'usage.recorded', 'hold_already_captured', 'test', '{}')")  # fmt: skip

    clean = await check_chaos_holds(conn, cases, down=None, up=None)
    assert clean.findings == []
    assert dict(clean.balance_delta) == {"u": -7 - 10}  # the capture charged, the open hold out
    assert (clean.usage_rows, clean.movements) == (1, 5)
    assert clean.decided == {"h-http", "h-release", "h-open", "use-after"}

    await conn.execute(
        "INSERT INTO worker.journal (event_id, user_id, kind, delta) VALUES ('release/h-http', $1, 'release', 10)",
        user_id)  # fmt: skip
    await conn.execute("""UPDATE "UsageHistory" SET "creditsUsed" = 8 WHERE id = 'h-http'""")
    await conn.execute("UPDATE worker.credit_hold SET expires_at = now() - interval '1 minute' WHERE hold_id = 'h-open'")
    await conn.execute("DELETE FROM worker.rejection WHERE event_id = 'use-after'")
    found = "\n".join((await check_chaos_holds(conn, cases, down=None, up=None)).findings)
    assert "h-http (http): captured with movements ['capture', 'release']" in found
    assert '"UsageHistory" h-http' in found
    assert "usage use-after naming it captured: None, not hold_already_captured" in found
    assert "h-open (open): still open 60 s past its expiry" in found
