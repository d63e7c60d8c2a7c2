"""Reconcile page by page: the same drift as one pass, progress as it goes, drift recorded."""

from __future__ import annotations

import json

from tests.integration.helpers import make_user, usage
from tests.integration.test_cli import pedro
from worker.ops.reconcile import reconcile
from worker.publisher import Publisher
from worker.repo.reconcile import find_balance_drift


async def test_paged_reconcile_finds_every_drift_across_pages(conn, broker, worker, settings):
    clerks = [f"user_rc{n}" for n in range(7)]
    user_ids = {clerk: await make_user(conn, clerk, credits=50) for clerk in clerks}
    Publisher(broker).publish_many([usage(clerk, credits=n + 1) for n, clerk in enumerate(clerks)])
    worker.drain()
    for clerk in (clerks[2], clerks[6]):
        await conn.execute(
            'UPDATE "CreditBalance" SET "creditsRemaining" = 1 WHERE "clerkUserId" = $1', clerk
        )
    await conn.execute(
        "INSERT INTO worker.journal (event_id, user_id, kind, delta) "
        "VALUES ('orphan-move', 'no-such-user', 'adjustment', 5)"
    )

    steps: list[int] = []
    report = await reconcile(conn, page_size=3, on_progress=steps.append)
    assert report.checked == 7 and steps == [3, 3, 1, 0]
    drifting = {d.user_id: (d.expected, d.actual) for d in report.drift}
    assert drifting == {
        user_ids[clerks[2]]: (47, 1),
        user_ids[clerks[6]]: (43, 1),
        "no-such-user": (None, None),
    }
    assert sorted(report.drift, key=lambda d: d.user_id) == await find_balance_drift(conn)

    result = pedro(
        "reconcile",
        "--json",
        database_url=settings.require_database_url(),
        redis_url=settings.require_redis_url(),
        PEDRO_REDIS_NAMESPACE=settings.redis_namespace,
    )
    assert result.returncode == 1
    out = json.loads(result.stdout)
    assert out["checked"] == 7 and len(out["drift"]) == 3
    text = pedro(
        "stats",
        "--json",
        database_url="",
        redis_url=settings.require_redis_url(),
        PEDRO_REDIS_NAMESPACE=settings.redis_namespace,
    )
    view = json.loads(text.stdout)
    assert view["ledger"]["reconcile"]["drift"] == 3 and view["health"]["level"] == "critical"
