"""Credit grants as ops see them: `pedro-worker user show` lists a user's grants (live in burn
order, pending, the last ended) and what expires this week; the dashboard and /metrics show the
credits expiring in the next 7 days and those expired per day. Users, balances and grants are
written here directly, as the ledger leaves them."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta

import httpx
from pydantic import SecretStr

from tests.integration.ops_helpers import full_page_screenshot, serve
from tests.integration.test_cli import pedro
from tests.integration.test_ops_metrics import scrape, value
from worker import db
from worker.ops.grants import expiry_view
from worker.ops.web import create_app

TOKEN = "grants-test-token-2b7e"
NOW = datetime.now(UTC)


def days(n: float) -> timedelta:
    return timedelta(days=n)


def midnight(at: datetime) -> datetime:
    """The start of `at`'s UTC day."""
    return datetime.combine(at.date(), datetime.min.time(), UTC)


async def new_user(conn, clerk: str) -> str:
    """A "User" and its "CreditBalance" at 0; `give` keeps the balance = Σ live grants."""
    user_id = f"id_{clerk}"
    await conn.execute(
        'INSERT INTO "User" (id, "clerkId", "updatedAt") VALUES ($1, $2, now())', user_id, clerk
    )
    await conn.execute(
        'INSERT INTO "CreditBalance" (id, "userId", "clerkUserId", "creditsRemaining", '
        '"updatedAt") VALUES ($1, $2, $3, 0, now())', f"cb_{clerk}", user_id, clerk,
    )  # fmt: skip
    return user_id


async def give(
    conn, user_id: str, grant_id: str, remaining: int, *, amount: int | None = None,
    priority: int = 5, effective: datetime = NOW - days(1), expires: datetime | None = None,
    state: str = "live", ended: datetime | None = None, expired: int = 0,
) -> None:  # fmt: skip
    """One grant, its credits held from the start (`opening`: no journal movement gave them), and
    the user's balance moved by what it holds while live."""
    await conn.execute(
        "INSERT INTO worker.credit_grant (grant_id, user_id, source, amount, remaining, opening, "
        "priority, effective_at, expires_at, state, ended_at, expired) "
        "VALUES ($1, $2, split_part($1, '/', 1), $3, $4, $4, $5, $6, $7, $8, $9, $10)",
        grant_id, user_id, remaining if amount is None else amount, remaining, priority,
        effective, expires, state, ended, expired,
    )  # fmt: skip
    if state == "live":
        await conn.execute(
            'UPDATE "CreditBalance" SET "creditsRemaining" = "creditsRemaining" + $2 '
            'WHERE "userId" = $1', user_id, remaining,
        )  # fmt: skip


_TIME = r"\d{4}-\d\d-\d\d \d\d:\d\dZ"
_GRANT_ROW = re.compile(
    r"^ +(?P<burn>\S+) +(?P<state>[a-z]+) +(?P<source>[a-z]+) +(?P<held>-?\d+/\d+)"
    rf" +(?P<priority>\d+) +(?P<effective>{_TIME}) +(?P<expires>{_TIME}|never)"
    r" +(?P<grant_id>\S+)(?P<note>.*)$"
)


def grant_rows(text: str) -> dict[str, dict[str, str]]:
    """`user show`'s grant table, in its order: grant id -> its columns."""
    rows = (_GRANT_ROW.match(line) for line in text.splitlines())
    return {m["grant_id"]: m.groupdict() for m in rows if m}


def minute(at: datetime) -> str:
    return at.strftime("%Y-%m-%d %H:%MZ")


async def test_user_show_lists_live_grants_in_burn_order_then_pending_then_the_last_ended(
    conn, database_url
):
    ana = await new_user(conn, "user_ana")
    # given out of order: the table shows the order a debit takes them
    await give(conn, ana, "pack/pay_2", 300, priority=20)
    await give(conn, ana, "starter/user_ana", 10, amount=100, priority=10)
    await give(conn, ana, "promo/spring", 25, expires=NOW + days(20))
    await give(conn, ana, "legacy/id_user_ana", 40, priority=10, effective=NOW - days(30))
    await give(conn, ana, "adjustment/adj_1", 15, priority=10, expires=NOW + days(6))
    await give(conn, ana, "plan/pay_1/1", 60, amount=100, expires=NOW + days(3))
    await give(conn, ana, "plan/pay_1/2", 100, state="pending", effective=NOW + days(30),
               expires=NOW + days(60))  # fmt: skip
    await give(conn, ana, "promo/old_1", 0, amount=50, state="voided", ended=NOW - days(9))
    for n in range(2, 7):  # and five that expired since, a day apart: the latest five are listed
        await give(conn, ana, f"promo/old_{n}", 0, amount=50, state="expired",
                   ended=NOW - days(10 - n), expired=5 * n)  # fmt: skip
    someone = await new_user(conn, "user_other")  # their credits are not ana's
    await give(conn, someone, "promo/other", 99, expires=NOW + days(1))

    shown = pedro("user", "show", "user_ana", database_url=database_url)
    assert shown.returncode == 0, shown.stderr
    assert "balance   450" in shown.stdout
    # plan/pay_1/1 (in 3 days) + adjustment/adj_1 (in 6 days); the promo lasts 20 more days
    assert "  expiring in the next 7 days: 75 credits" in shown.stdout
    rows = grant_rows(shown.stdout)
    burn_order = [
        "plan/pay_1/1",  # priority 5, expires first
        "promo/spring",  # priority 5, expires later
        "adjustment/adj_1",  # priority 10, expires
        "legacy/id_user_ana",  # priority 10, never expires, effective first
        "starter/user_ana",  # priority 10, never expires, effective later
        "pack/pay_2",  # priority 20
    ]
    assert [(g, r["burn"]) for g, r in rows.items() if r["state"] == "live"] == [
        (g, str(n)) for n, g in enumerate(burn_order, 1)
    ]
    assert rows["plan/pay_1/1"] == {
        "burn": "1", "state": "live", "source": "plan", "held": "60/100", "priority": "5",
        "effective": minute(NOW - days(1)), "expires": minute(NOW + days(3)),
        "grant_id": "plan/pay_1/1", "note": "",
    }  # fmt: skip
    assert rows["pack/pay_2"]["expires"] == "never"
    pending = rows["plan/pay_1/2"]
    assert (pending["burn"], pending["state"], pending["held"]) == ("-", "pending", "100/100")
    ended = [g for g, r in rows.items() if r["state"] in ("expired", "voided")]
    assert ended == ["promo/old_6", "promo/old_5", "promo/old_4", "promo/old_3", "promo/old_2"]
    assert rows["promo/old_6"]["note"] == f"  (ended {minute(NOW - days(4))}, 30 credits expired)"
    assert list(rows)[-1] == "promo/old_2"  # promo/old_1, voided first, is not listed
    assert "(1 older expired or voided grant(s) not shown)" in shown.stdout
    assert "promo/other" not in rows

    as_json = pedro("user", "show", "user_ana", "--json", database_url=database_url)
    grants = json.loads(as_json.stdout)["grants"]
    assert [(g["grant_id"], g["burn"]) for g in grants["live"]] == [
        (g, n) for n, g in enumerate(burn_order, 1)
    ]
    assert [g["grant_id"] for g in grants["pending"]] == ["plan/pay_1/2"]
    assert [g["grant_id"] for g in grants["ended"]] == ended and grants["ended_total"] == 6
    assert grants["expiring_7d"] == 75
    assert datetime.fromisoformat(grants["live"][0]["expires_at"]) == NOW + days(3)
    assert grants["live"][-1]["expires_at"] is None  # never


async def test_a_user_in_debt_sees_its_overdraft_grant_last_as_the_debt(conn, database_url):
    bob = await new_user(conn, "user_bob")
    await give(conn, bob, "overdraft/id_user_bob", -30, amount=0, priority=2_147_483_647)
    await give(conn, bob, "starter/user_bob", 0, amount=100, priority=10)

    shown = pedro("user", "show", "user_bob", database_url=database_url)
    assert shown.returncode == 0, shown.stderr
    assert "balance   -30" in shown.stdout
    assert "  expiring in the next 7 days: 0 credits" in shown.stdout
    rows = grant_rows(shown.stdout)
    assert list(rows) == ["starter/user_bob", "overdraft/id_user_bob"]  # the debt comes last
    debt = rows["overdraft/id_user_bob"]
    assert (debt["burn"], debt["held"], debt["expires"]) == ("debt", "-30/0", "never")

    nobody = pedro("user", "show", "user_without_grants", "--json", database_url=database_url)
    assert json.loads(nobody.stdout)["grants"] is None  # no such user


async def expiring_and_expired(conn, now: datetime) -> None:
    """Credits expiring this week: 75 (ana) + 40 (cy), in 2 users' hands. Expired over the last
    14 days (UTC, today included): 30 today, 120 yesterday, 5 on the first day shown."""
    ana, cy, dee = [await new_user(conn, clerk) for clerk in ("user_ana", "user_cy", "user_dee")]
    await give(conn, ana, "plan/pay_1", 60, expires=now + days(3))
    await give(conn, ana, "adjustment/adj_1", 15, expires=now + days(6.9))
    await give(conn, cy, "promo/week", 40, expires=now - timedelta(minutes=1))  # due, not ended
    await give(conn, dee, "plan/pay_3", 500, expires=now + days(8))  # next week
    await give(conn, dee, "promo/spent", 0, amount=20, expires=now + days(1))  # none left in it
    await give(conn, dee, "plan/pay_3/2", 500, state="pending", effective=now + days(1),
               expires=now + days(5))  # not live yet  # fmt: skip
    await give(conn, dee, "starter/user_dee", 100)  # never expires

    today = midnight(now)
    for grant_id, ended, expired in (
        ("promo/today", today + timedelta(minutes=1), 30),
        ("plan/y1", today - days(1) + timedelta(hours=3), 50),
        ("plan/y2", today - days(1) + timedelta(hours=23), 70),
        ("promo/first_day", today - days(13), 5),  # the oldest day shown
        ("promo/too_old", today - days(13) - timedelta(minutes=1), 1000),
    ):
        await give(conn, cy, grant_id, 0, amount=100, state="expired", expires=ended, ended=ended,
                   expired=expired)  # fmt: skip
    await give(conn, cy, "pack/refunded", 0, amount=100, state="voided", ended=today)  # not expired


async def test_the_dashboard_shows_credits_expiring_this_week_and_expired_per_day(conn, settings):
    now = datetime.now(UTC)
    await expiring_and_expired(conn, now)
    app = create_app(settings.model_copy(update={"ops_token": SecretStr(TOKEN)}))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://ops"
    ) as client:
        response = await client.get(
            "/ops/api/overview", headers={"authorization": f"Bearer {TOKEN}"}
        )
    credits = response.json()["credits"]
    assert credits["expiring_7d"] == {"credits": 115, "users": 2}
    day = lambda n: (midnight(now) - days(n)).date().isoformat()  # noqa: E731
    assert [d["day"] for d in credits["expired_by_day"]] == [day(n) for n in range(13, -1, -1)]
    by_day = {d["day"]: (d["credits"], d["grants"]) for d in credits["expired_by_day"]}
    assert (by_day[day(0)], by_day[day(1)], by_day[day(13)]) == ((30, 1), (120, 2), (5, 1))
    assert [by_day[day(n)] for n in range(2, 13)] == [(0, 0)] * 11
    assert credits["expired_total"] == 155

    scraped = await scrape(settings)
    assert value(scraped, "pedro_credits_expiring_7d") == 115
    assert value(scraped, "pedro_credits_expiring_users_7d") == 2


async def test_without_expiring_credits_the_panel_and_gauges_say_zero(conn, settings):
    await give(conn, await new_user(conn, "user_eve"), "starter/user_eve", 100, priority=10)
    view = await expiry_view(settings)
    assert view["expiring_7d"] == {"credits": 0, "users": 0} and view["expired_total"] == 0
    scraped = await scrape(settings)
    assert scraped[("pedro_credits_expiring_7d", ())] == 0  # served, and zero
    assert await expiry_view(settings.model_copy(update={"database_url": None})) is None


async def test_the_dashboard_reads_only_the_partial_indexes_of_live_and_expired_grants(conn):
    """What the dashboard and /metrics run at every refresh stays cheap however many grants
    never expire or ended long ago."""
    await conn.execute(
        "INSERT INTO worker.credit_grant (grant_id, user_id, source, amount, remaining, priority, "
        "effective_at, expires_at, state, ended_at, expired) "
        "SELECT 'promo/' || n, 'u' || n, 'promo', 10, 0, 5, now() - interval '1 year', "
        "now() - interval '200 days', 'expired', now() - interval '200 days', 10 "
        "FROM generate_series(1, 20000) n"
    )  # ended long ago
    await conn.execute(
        "INSERT INTO worker.credit_grant (grant_id, user_id, source, amount, remaining, opening, "
        "priority, effective_at, state) "
        "SELECT 'legacy/' || n, 'u' || n, 'legacy', 10, 10, 10, 10, now() - interval '1 year', "
        "'live' FROM generate_series(1, 10000) n"
    )  # never expire
    await conn.execute("ANALYZE worker.credit_grant")
    explain = lambda name, arg: conn.fetch("EXPLAIN " + db.QUERIES[name], arg)  # noqa: E731
    plan = "\n".join(r[0] for r in await explain("summarize_expiring_credits", NOW + days(7)))
    assert "credit_grant_due_expiry_idx" in plan, plan
    plan = "\n".join(r[0] for r in await explain("sum_expired_credits_by_day", NOW - days(13)))
    assert "credit_grant_ended_idx" in plan, plan


async def test_the_credits_panel_in_a_browser(conn, settings):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    from tests.integration.test_ops_browser import ARTIFACTS, start_chromium

    now = datetime.now(UTC)
    await expiring_and_expired(conn, now)
    chromium = start_chromium()
    try:
        with serve(settings.model_copy(update={"ops_token": SecretStr(TOKEN)})) as base:
            chromium.get(f"{base}/ops/login")
            chromium.find_element(By.ID, "token").send_keys(TOKEN)
            chromium.find_element(By.ID, "login").click()
            wait = WebDriverWait(chromium, 30)
            wait.until(ec.text_to_be_present_in_element(
                (By.ID, "credits-summary"), "115 expiring in 7 days"))  # fmt: skip
            panel = chromium.find_element(By.ID, "credits-expiry")
            lines = [e.text.replace("\n", " ")
                     for e in panel.find_elements(By.CSS_SELECTOR, "h3, .stat, .bar-row")]  # fmt: skip
            assert lines[:7] == [
                "EXPIRING IN THE NEXT 7 DAYS", "credits 115", "users holding them 2",
                "EXPIRED IN THE LAST 14 DAYS", "credits 155", "grants ended 4",
                "EXPIRED PER DAY (UTC)",
            ]  # fmt: skip
            per_day = dict(line.split() for line in lines[7:])
            day = lambda n: (midnight(now) - days(n)).date().isoformat()  # noqa: E731
            assert list(per_day) == [day(n) for n in range(13, -1, -1)]  # the oldest first
            assert (per_day[day(13)], per_day[day(1)], per_day[day(0)]) == ("5", "120", "30")
            full_page_screenshot(chromium, ARTIFACTS / "dashboard-credits.png")
            errors = [e for e in chromium.get_log("browser") if e["level"] == "SEVERE"]
            assert errors == [], errors
    finally:
        chromium.quit()
