"""Reconcile page by page: the same drift as one pass, progress as it goes, drift recorded."""

from __future__ import annotations

import json

from tests.integration.helpers import make_user, usage
from tests.integration.test_cli import pedro
from worker.ops.reconcile import reconcile
from worker.publisher import Publisher
from worker.repo.reconcile import find_balance_drift, find_grant_drift


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
    assert report.checked == report.grants_checked == 7
    assert steps == [3, 3, 1, 0] * 2  # balances vs journal, then balances and grants
    drifting = {(d.kind, d.user_id): (d.expected, d.actual) for d in report.drift}
    assert drifting == {
        ("balance", user_ids[clerks[2]]): (47, 1),
        ("balance", user_ids[clerks[6]]): (43, 1),
        ("balance", "no-such-user"): (None, None),
        ("grants", user_ids[clerks[2]]): (47, 1),  # its grants still hold what the journal says
        ("grants", user_ids[clerks[6]]): (43, 1),
    }
    by_user = sorted((d for d in report.drift if d.kind == "balance"), key=lambda d: d.user_id)
    assert by_user == await find_balance_drift(conn)

    result = pedro(
        "reconcile",
        "--json",
        database_url=settings.require_database_url(),
        redis_url=settings.require_redis_url(),
        PEDRO_REDIS_NAMESPACE=settings.redis_namespace,
    )
    assert result.returncode == 1
    out = json.loads(result.stdout)
    assert out["checked"] == 7 and len(out["drift"]) == 5
    text = pedro(
        "stats",
        "--json",
        database_url="",
        redis_url=settings.require_redis_url(),
        PEDRO_REDIS_NAMESPACE=settings.redis_namespace,
    )
    view = json.loads(text.stdout)
    assert view["ledger"]["reconcile"]["drift"] == 5 and view["health"]["level"] == "critical"
    assert view["ledger"]["reconcile"]["drift_kinds"] == {"balance": 3, "grants": 2}


# --- balances vs grants, grants vs journal ----------------------------------------------------


async def grant(conn, grant_id: str, user_id: str, remaining: int, *, opening: int = 0,
                state: str = "live", source: str | None = None) -> None:  # fmt: skip
    await conn.execute(
        "INSERT INTO worker.credit_grant (grant_id, user_id, source, amount, remaining, opening, "
        "priority, effective_at, state) VALUES ($1, $2, $3, $4, $4, $5, 10, now(), $6)",
        grant_id, user_id, source or grant_id.split("/")[0], remaining, opening, state,
    )  # fmt: skip
    if remaining != opening or state != "live":
        await conn.execute("UPDATE worker.credit_grant SET remaining = $2 WHERE grant_id = $1",
                           grant_id, remaining)  # fmt: skip


async def move(conn, event_id: str, user_id: str, kind: str, *pairs: tuple[str, int]) -> None:
    await conn.execute(
        "INSERT INTO worker.journal (event_id, user_id, kind, delta, grants) "
        "VALUES ($1, $2, $3, $4, $5::text::jsonb)",
        event_id, user_id, kind, sum(d for _, d in pairs), json.dumps([list(p) for p in pairs]),
    )  # fmt: skip


async def consistent_grants(conn) -> dict[str, str]:
    """Users whose balances, openings, grants and journal agree, written by SQL as the ledger
    would. a: a plan grant, a usage across two grants, a refund, an expired promo, a pending and
    a voided grant; b: in debt; d: a legacy grant from the migration (no opening); c: a balance
    the worker never touched."""
    ids = {name: await make_user(conn, f"user_g{name}", credits=credits)
           for name, credits in (("a", 85), ("b", -15), ("c", 100), ("d", 40))}  # fmt: skip
    a, b, d = ids["a"], ids["b"], ids["d"]
    await conn.execute(
        "INSERT INTO worker.balance_opening (user_id, opening) VALUES ($1, 10), ($2, 5)", a, b
    )
    await grant(conn, f"legacy/{a}", a, 0, opening=10)
    await grant(conn, "plan/pay1/1", a, 85)
    await grant(conn, "plan/pay1/2", a, 0, state="pending", source="plan")
    await grant(conn, "promo/a1", a, 0, state="expired")
    await grant(conn, "pack/pay2", a, 0, state="voided")
    await move(conn, "g-a1", a, "grant", ("plan/pay1/1", 100))
    await move(conn, "g-a2", a, "usage", (f"legacy/{a}", -10), ("plan/pay1/1", -20))
    await move(conn, "g-a3", a, "refund", ("plan/pay1/1", 5))
    await move(conn, "g-a4", a, "adjustment", ("promo/a1", 20))
    await move(conn, "g-a5", a, "grant_expiry", ("promo/a1", -20))
    await move(conn, "g-a6", a, "grant", ("pack/pay2", 50))
    await move(conn, "g-a7", a, "grant_reversal", ("pack/pay2", -50))
    await grant(conn, f"legacy/{b}", b, 0, opening=5)
    await grant(conn, f"overdraft/{b}", b, -15)
    await move(conn, "g-b1", b, "usage", (f"legacy/{b}", -5), (f"overdraft/{b}", -15))
    await grant(conn, f"legacy/{d}", d, 40, opening=40)
    await grant(conn, "promo/d0", d, 0, state="expired")  # nothing ever moved it
    return ids


async def test_consistent_grants_and_journal_have_no_drift(conn):
    ids = await consistent_grants(conn)
    steps: list[int] = []
    report = await reconcile(conn, page_size=2, on_progress=steps.append)
    assert report.drift == []
    assert report.checked == 2 and report.grants_checked == 4 and steps == [2, 0, 2, 2, 0]
    assert [(d.kind, d.user_id, d.expected, d.actual) for d in report.without_grants] == [
        ("balance_without_grants", ids["c"], 0, 100)
    ]
    assert await find_grant_drift(conn) == []


async def test_a_grant_changed_behind_the_ledgers_back_is_drift(conn, database_url):
    ids = await consistent_grants(conn)
    a, d = ids["a"], ids["d"]
    tamper = "UPDATE worker.credit_grant SET remaining = {} WHERE grant_id = ANY($1)"
    await conn.execute(tamper.format("remaining + 7"), ["plan/pay1/1"])
    await conn.execute(tamper.format("3"), ["promo/a1", "promo/d0"])
    await move(conn, "g-a8", a, "adjustment", ("pack/pay2", 4), (f"ghost/{a}", -4))  # delta 0

    drift = await find_grant_drift(conn)
    found = {(x.kind, x.user_id, x.grant_id): (x.expected, x.actual) for x in drift}
    assert found == {
        ("grants", a, None): (92, 85),  # the balance no longer matches its live grants
        ("grant", a, "plan/pay1/1"): (85, 92),
        ("grant", a, "promo/a1"): (0, 3),  # expired, named by the journal
        ("grant", d, "promo/d0"): (0, 3),  # expired, named by nothing
        ("grant", a, "pack/pay2"): (0, 4),  # voided: what moved it must net to 0
        ("grant", a, f"ghost/{a}"): (-4, None),  # a movement naming a grant that does not exist
    }
    report = await reconcile(conn, page_size=3)
    assert sorted(report.drift, key=lambda x: (x.user_id, x.kind, x.grant_id or "")) == drift

    text = pedro("reconcile", database_url=database_url)
    assert text.returncode == 1
    assert (f"DRIFT user={a} clerkUserId=user_ga expected=85 actual=92 kind=grant grant=plan/pay1/1"
            in text.stdout.splitlines())  # fmt: skip
    assert "2 balances checked, 6 with drift (grant 5, grants 1)" in text.stdout
    assert "1 balances without grants" in text.stdout


async def test_a_balance_changed_behind_the_ledgers_back_is_drift(conn, database_url):
    ids = await consistent_grants(conn)
    await conn.execute('UPDATE "CreditBalance" SET "creditsRemaining" = 0 WHERE "userId" = ANY($1)',
                       [ids["b"], ids["d"]])  # fmt: skip
    report = await reconcile(conn)
    found = {(x.kind, x.user_id): (x.expected, x.actual) for x in report.drift}
    assert found == {
        ("balance", ids["b"]): (-15, 0),
        ("grants", ids["b"]): (-15, 0),
        ("grants", ids["d"]): (40, 0),  # not tracked by the journal, but by its legacy grant
    }
    out = json.loads(pedro("reconcile", "--json", database_url=database_url).stdout)
    assert {(x["kind"], x["user_id"]) for x in out["drift"]} == set(found)
    assert [x["user_id"] for x in out["without_grants"]] == [ids["c"]]
