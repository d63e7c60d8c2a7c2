"""Credit holds as ops see them: `pedro-worker holds list|show|release`, the holds section of
`user show`, the dashboard's Holds panel and the `pedro_holds_*` gauges, and reconcile checking
every hold against its journal. Holds are placed, captured and released through
worker/domain/holds.py (what the credit API runs), and expired by the grant sweep."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from datetime import timedelta

import httpx
import pytest
from pydantic import SecretStr

from tests.integration.helpers import balance, make_user
from tests.integration.ops_helpers import full_page_screenshot, serve
from tests.integration.test_cli import pedro
from tests.integration.test_ops_metrics import scrape, value
from worker import clock, db
from worker.credit_api import CaptureRequest, HoldRequest
from worker.domain import holds as domain
from worker.grant_sweep import sweep_due
from worker.ledger.operation_types import OperationTypes
from worker.ops.holds import holds_overview, holds_view, release_hold, release_line
from worker.ops.reconcile import reconcile
from worker.ops.web import create_app
from worker.repo.reconcile import find_balance_drift, find_hold_drift

TOKEN = "holds-test-token-5c1d"
LABELS = OperationTypes()


@pytest.fixture(autouse=True)
def _clock():
    clock.reset()
    yield
    clock.reset()


async def place(conn, settings, hold_id: str, clerk: str, credits: int, *, ttl: int = 900,
                **more) -> None:  # fmt: skip
    request = HoldRequest(id=hold_id, clerkUserId=clerk, credits=credits, operationType="AI_TEXT_CHAT",
                          ttlSeconds=ttl, **more)  # fmt: skip
    answer = await domain.place(conn, request, settings, LABELS)
    assert answer.status == 201, answer


async def capture(conn, settings, hold_id: str, credits: int) -> None:
    answer = await domain.capture(conn, hold_id, CaptureRequest(credits=credits), settings, LABELS)
    assert answer.status == 200 and answer.body.hold.status == "captured", answer


async def release(conn, settings, hold_id: str) -> None:
    """The app's release (POST /v1/holds/{id}/release)."""
    answer = await domain.release(conn, hold_id, settings)
    assert answer.body.hold.status == "released", answer


async def sweep(conn, settings) -> int:
    """One grant sweep now; returns the holds it released."""
    _, _, released, _ = await sweep_due(conn, settings)
    return released


async def movements(conn, hold_id: str) -> list[tuple]:
    rows = await conn.fetch(
        "SELECT event_id, kind, delta, reason FROM worker.journal WHERE event_id LIKE '%/' || $1 "
        "ORDER BY created_at, event_id", hold_id,
    )  # fmt: skip
    return [tuple(r) for r in rows]


async def every_kind_of_hold(conn, settings) -> None:
    """ana (100 credits): `open` 10 (held), `cap` 20 captured at 15, `over` 5 captured at 8
    (overflow), `rel` 5 released by the app, `exp` 7 expired by the sweep; bo (50): `bo1` 30 held.
    ana's balance ends at 100 - 10 - 15 - 8 = 67."""
    await make_user(conn, "user_ana", credits=100)
    await make_user(conn, "user_bo", credits=50)
    await place(conn, settings, "exp", "user_ana", 7, ttl=60)
    clock.advance(timedelta(minutes=2))
    assert await sweep(conn, settings) == 1
    for hold_id, credits in (("cap", 20), ("over", 5), ("rel", 5), ("open", 10)):
        await place(conn, settings, hold_id, "user_ana", credits)
        clock.advance(timedelta(seconds=1))  # newest first means something
    await place(conn, settings, "bo1", "user_bo", 30)
    await capture(conn, settings, "cap", 15)
    await capture(conn, settings, "over", 8)
    await release(conn, settings, "rel")


# --- holds list / show ---------------------------------------------------------------------------


_ROW = re.compile(r"^ *(?P<age>\S+) +(?P<status>[a-z]+) +(?P<credits>\d+) +(?P<captured>\S+) +"
                  r"(?P<expires>(?:in|OVERDUE) \S+|\S+ ago) +(?P<resolved>-|\S+ ago) +(?P<by>\S+) +"
                  r"(?P<user>\S+) +(?P<hold_id>\S+)$")  # fmt: skip


def rows(text: str) -> dict[str, dict[str, str]]:
    """The holds table of `holds list` or `user show`, in its order: hold id -> its columns."""
    found = (_ROW.match(line) for line in text.splitlines())
    return {m["hold_id"]: m.groupdict() for m in found if m}


async def test_holds_list_shows_holds_newest_first_by_user_and_status(conn, settings, database_url):
    await every_kind_of_hold(conn, settings)

    listed = pedro("holds", "list", database_url=database_url)
    assert listed.returncode == 0, listed.stderr
    table = rows(listed.stdout)
    assert list(table) == ["bo1", "open", "rel", "over", "cap", "exp"]
    assert table["cap"] | {"age": "", "expires": "", "resolved": ""} == {
        "age": "", "status": "captured", "credits": "20", "captured": "15", "expires": "",
        "resolved": "", "by": "http", "user": "user_ana", "hold_id": "cap",
    }  # fmt: skip
    assert (table["exp"]["status"], table["exp"]["by"]) == ("expired", "expiry")
    assert (table["open"]["status"], table["open"]["captured"], table["open"]["by"]) == ("held", "-", "-")
    assert listed.stdout.splitlines()[-1] == "6 of 6 hold(s) listed"

    mine = pedro("holds", "list", "--user", "user_ana", "--status", "held", database_url=database_url)
    assert list(rows(mine.stdout)) == ["open"] and "1 of 1 hold(s) listed" in mine.stdout
    some = pedro("holds", "list", "--user", "user_ana", "--limit", "2", database_url=database_url)
    assert list(rows(some.stdout)) == ["open", "rel"] and "2 of 5 hold(s) listed" in some.stdout
    nobody = pedro("holds", "list", "--user", "user_nobody", database_url=database_url)
    assert nobody.returncode == 0 and nobody.stdout.strip() == "0 of 0 hold(s) listed"

    as_json = pedro("holds", "list", "--status", "captured", "--json", database_url=database_url)
    lines = [json.loads(line) for line in as_json.stdout.splitlines()]
    assert [(h["hold_id"], h["credits"], h["captured"], h["usage_id"]) for h in lines] == [
        ("over", 5, 8, "over"), ("cap", 20, 15, "cap")]  # fmt: skip
    bad = pedro("holds", "list", "--status", "open", database_url=database_url)
    assert bad.returncode == 2  # not a status

    await conn.execute("UPDATE worker.credit_hold SET expires_at = now() - interval '10 minutes' "
                       "WHERE hold_id = 'bo1'")  # due, and no sweep ran  # fmt: skip
    held = rows(pedro("holds", "list", "--status", "held", database_url=database_url).stdout)
    assert held["bo1"]["expires"].startswith("OVERDUE 10m") and held["open"]["expires"].startswith("in ")


async def test_holds_show_prints_a_hold_with_what_it_took_its_movements_and_its_usage(
    conn, settings, database_url
):
    cy = await make_user(conn, "user_cy", credits=100)  # its credits: `legacy/<id>` once moved
    await place(conn, settings, "h1", "user_cy", 10, details={"model": "gpt", "by": "cy@example.com"})
    await capture(conn, settings, "h1", 7)

    shown = pedro("holds", "show", "h1", database_url=database_url)
    assert shown.returncode == 0, shown.stderr
    text = shown.stdout
    assert "hold       h1  captured" in text
    assert "credits    10 held, 7 captured  (overCapture overflow)" in text
    assert re.search(r"resolved   captured: 7 of 10 credits charged \(usage h1\), \S+ \S+Z by http", text)
    assert re.search(r'usage      h1: AI_TEXT_CHAT, 7 credits used, \S+ \S+Z', text)
    assert f"took       legacy/{cy} -10" in text
    assert f"usage took legacy/{cy} -7" in text
    assert "cy@example.com" not in text and '"model": "gpt"' in text  # emails masked
    moved = [line.split() for line in text.split("movements (oldest first)\n")[1].splitlines()[1:]]
    assert [(m[2], m[3], m[-1]) for m in moved] == [("hold", "-10", "hold/h1"), ("capture", "+3", "capture/h1")]

    as_json = json.loads(pedro("holds", "show", "h1", "--json", database_url=database_url).stdout)
    assert (as_json["status"], as_json["captured"], as_json["resolved_by"]) == ("captured", 7, "http")
    assert as_json["usage"]["credits_used"] == 7 and as_json["usage"]["id"] == "h1"
    assert [(m["event_id"], m["delta"], m["grants"]) for m in as_json["movements"]] == [
        ("hold/h1", -10, [[f"legacy/{cy}", -10]]), ("capture/h1", 3, [[f"legacy/{cy}", 3]])]  # fmt: skip

    missing = pedro("holds", "show", "nope", database_url=database_url)
    assert missing.returncode == 1 and "no hold 'nope'" in missing.stderr


# --- holds release -------------------------------------------------------------------------------


def pedro_with_input(answer: str, *args: str, database_url: str) -> subprocess.CompletedProcess:
    environ = {**os.environ, "DATABASE_URL": database_url, "REDIS_URL": ""}
    return subprocess.run([sys.executable, "-m", "worker.cli", *args], env=environ, input=answer,
                          capture_output=True, text=True, timeout=60)  # fmt: skip


async def test_ops_release_gives_a_holds_credits_back_once(conn, settings, database_url):
    await make_user(conn, "user_di", credits=100)
    await place(conn, settings, "h1", "user_di", 40)
    await place(conn, settings, "h2", "user_di", 10)
    assert await balance(conn, "user_di") == 50

    declined = pedro_with_input("n\n", "holds", "release", "h1", database_url=database_url)
    assert declined.returncode == 1
    assert "release hold h1 of user_di: 40 credits go back? [y/N]" in declined.stdout
    assert "nothing released" in declined.stdout
    assert await balance(conn, "user_di") == 50

    released = pedro("holds", "release", "h1", "--yes", database_url=database_url)
    assert released.returncode == 0, released.stderr
    assert released.stdout.strip() == (
        "hold h1 released: 40 credits back to user_di (status released; balance now 90, 10 held, "
        "90 available)"
    )
    assert await balance(conn, "user_di") == 90
    assert await movements(conn, "h1") == [("hold/h1", "hold", -40, "hold for AI_TEXT_CHAT"),
                                           ("release/h1", "release", 40, "released (ops)")]  # fmt: skip
    assert await conn.fetchval("SELECT resolved_by FROM worker.credit_hold WHERE hold_id = 'h1'") == "ops"

    again = pedro("holds", "release", "h1", "--yes", database_url=database_url)
    assert again.returncode == 1
    assert re.fullmatch(r"hold h1 was resolved already, nothing changed: released: its 40 credits went "
                        r"back, \S+ \S+Z by ops\n", again.stdout)  # fmt: skip
    await capture(conn, settings, "h2", 4)
    captured = pedro("holds", "release", "h2", database_url=database_url)  # nothing to confirm
    assert captured.returncode == 1
    assert "hold h2 was resolved already, nothing changed: captured: 4 of 10 credits charged" in captured.stdout
    assert await balance(conn, "user_di") == 96
    assert [m[0] for m in await movements(conn, "h1")] == ["hold/h1", "release/h1"]  # nothing more

    piped = pedro_with_input("y\n", "holds", "release", "nope", database_url=database_url)
    assert piped.returncode == 1 and "no hold 'nope'" in piped.stderr
    assert await find_balance_drift(conn) == [] and await find_hold_drift(conn) == []


async def test_a_release_while_the_users_balance_is_held_elsewhere_changes_nothing(
    conn, settings, database_url
):
    from tests.integration.helpers import held_balance

    await make_user(conn, "user_el", credits=100)
    await place(conn, settings, "h1", "user_el", 40)
    async with held_balance(database_url, "user_el"):  # the app in a long transaction
        busy = pedro("holds", "release", "h1", "--yes", database_url=database_url, PEDRO_LOCK_WAIT_MS="200")
    assert busy.returncode == 1
    assert "the balance of user_el is held by another transaction; nothing released" in busy.stderr
    assert await conn.fetchval("SELECT status FROM worker.credit_hold WHERE hold_id = 'h1'") == "held"
    assert await balance(conn, "user_el") == 60


async def test_releasing_a_hold_past_its_expiry_releases_it_as_expired(conn, settings):
    await make_user(conn, "user_ed", credits=100)
    await place(conn, settings, "h1", "user_ed", 30, ttl=60)
    clock.advance(timedelta(minutes=5))  # due; no sweep ran
    result = await release_hold(conn, "h1", settings)
    assert result is not None and result.released and result.hold["status"] == "expired"
    assert release_line(result) == ("hold h1 was past its expiry: released as expired: 30 credits back "
                                    "to user_ed (status expired; balance now 100, 0 held, 100 available)")  # fmt: skip
    assert await movements(conn, "h1") == [("hold/h1", "hold", -30, "hold for AI_TEXT_CHAT"),
                                           ("release/h1", "release", 30, "hold expired")]  # fmt: skip
    assert await release_hold(conn, "nope", settings) is None


async def test_credits_released_back_to_a_grant_that_ended_meanwhile_expire_and_show_with_the_hold(
    conn, settings, database_url
):
    from tests.integration.test_ops_grants import give, new_user

    user_id = await new_user(conn, "user_ho")
    await give(conn, user_id, "promo/p1", 50, priority=1, expires=clock.now() + timedelta(minutes=1))
    await place(conn, settings, "h1", "user_ho", 20)  # from promo/p1
    clock.advance(timedelta(minutes=2))
    assert await sweep(conn, settings) == 0  # promo/p1 expires (its 30 left); the hold is not due
    result = await release_hold(conn, "h1", settings)
    assert result is not None and result.released and await balance(conn, "user_ho") == 0

    shown = json.loads(pedro("holds", "show", "h1", "--json", database_url=database_url).stdout)
    assert [(m["event_id"], m["kind"], m["delta"]) for m in shown["movements"]] == [
        ("hold/h1", "hold", -20), ("release/h1", "release", 20),
        ("expire/release/h1", "grant_expiry", -20),  # back to an ended grant: expired at once
    ]  # fmt: skip
    report = await reconcile(conn)
    assert report.drift == [] and report.holds_checked == 1


# --- user show -----------------------------------------------------------------------------------


async def test_user_show_lists_open_holds_then_the_last_resolved(conn, settings, database_url):
    await every_kind_of_hold(conn, settings)
    for n in range(5):  # five more resolved, later: the oldest resolved ones are not listed
        clock.advance(timedelta(seconds=1))
        await place(conn, settings, f"more{n}", "user_ana", 1)
        await release(conn, settings, f"more{n}")

    shown = pedro("user", "show", "user_ana", database_url=database_url)
    assert shown.returncode == 0, shown.stderr
    assert "balance   67" in shown.stdout
    assert "  held now: 10 credits in 1 open hold(s)" in shown.stdout
    table = rows(shown.stdout.split("holds (open, then the last resolved)")[1].split("movements")[0])
    assert list(table) == ["open", "more4", "more3", "more2", "more1", "more0"]
    assert "  (4 older resolved hold(s) not shown)" in shown.stdout
    assert "bo1" not in table

    holds = json.loads(pedro("user", "show", "user_ana", "--json", database_url=database_url).stdout)["holds"]
    assert [h["hold_id"] for h in holds["open"]] == ["open"] and holds["held"] == 10
    assert holds["resolved_total"] == 9 and len(holds["resolved"]) == 5

    await make_user(conn, "user_new", credits=5)
    empty = pedro("user", "show", "user_new", database_url=database_url)
    assert "  held now: 0 credits in 0 open hold(s)\n  none" in empty.stdout


# --- dashboard and /metrics ----------------------------------------------------------------------


async def open_overdue_and_resolved(conn, settings) -> None:
    """Open: `open` 10 and `late` 9 (past its expiry, not swept: overdue for 5 minutes);
    resolved: `cap` captured at 15 of 20, `rel` released, `exp` expired by the sweep."""
    await make_user(conn, "user_fa", credits=100)
    await place(conn, settings, "exp", "user_fa", 7, ttl=60)
    await place(conn, settings, "open", "user_fa", 10, ttl=3600)
    await place(conn, settings, "cap", "user_fa", 20)
    await place(conn, settings, "rel", "user_fa", 5)
    await capture(conn, settings, "cap", 15)
    await release(conn, settings, "rel")
    clock.advance(timedelta(minutes=2))
    assert await sweep(conn, settings) == 1
    await place(conn, settings, "late", "user_fa", 9, ttl=300)
    clock.advance(timedelta(minutes=10))  # `late` is due: no sweep runs


async def test_the_dashboard_and_metrics_show_open_overdue_and_resolved_holds(conn, settings):
    await open_overdue_and_resolved(conn, settings)
    app = create_app(settings.model_copy(update={"ops_token": SecretStr(TOKEN)}))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://ops") as client:
        response = await client.get("/ops/api/overview", headers={"authorization": f"Bearer {TOKEN}"})
    holds = response.json()["holds"]
    assert holds["open"] == {"holds": 2, "credits": 19}
    assert holds["overdue"]["holds"] == 1 and holds["overdue"]["credits"] == 9
    assert 300 <= holds["overdue"]["oldest_s"] < 310
    assert holds["resolved_24h"] == {
        "captured": {"holds": 1, "credits": 20, "charged": 15},
        "released": {"holds": 1, "credits": 5, "charged": 0},
        "expired": {"holds": 1, "credits": 7, "charged": 0},
    }

    scraped = await scrape(settings)
    assert value(scraped, "pedro_holds_open") == 2
    assert value(scraped, "pedro_holds_open_credits") == 19
    assert value(scraped, "pedro_holds_overdue") == 1
    assert 300 <= value(scraped, "pedro_holds_overdue_oldest_seconds") < 310
    assert value(scraped, "pedro_holds_expired_24h") == 1
    assert [value(scraped, "pedro_holds_resolved_24h", status=s) for s in ("captured", "released", "expired")] == [1, 1, 1]

    assert await sweep(conn, settings) == 1  # the sweep catches up: nothing overdue
    clock.advance(timedelta(hours=25))  # …and a day later nothing resolved recently; `open` is due
    later = await holds_view(settings)
    assert later["open"] == {"holds": 1, "credits": 10} and later["overdue"]["holds"] == 1
    assert all(r["holds"] == 0 for r in later["resolved_24h"].values())


async def test_without_holds_the_panel_and_gauges_say_zero(conn, settings):
    view = await holds_overview(conn, clock.now())
    assert view == {"open": {"holds": 0, "credits": 0},
                    "overdue": {"holds": 0, "credits": 0, "oldest_s": None},
                    "resolved_24h": {s: {"holds": 0, "credits": 0, "charged": 0}
                                     for s in ("captured", "released", "expired")}}  # fmt: skip
    scraped = await scrape(settings)
    assert scraped[("pedro_holds_overdue", ())] == 0 and scraped[("pedro_holds_open", ())] == 0
    assert await holds_view(settings.model_copy(update={"database_url": None})) is None


async def test_the_dashboard_reads_only_the_partial_indexes_of_open_and_resolved_holds(conn):
    """What the dashboard and /metrics run at every refresh stays cheap however many holds
    resolved long ago."""
    await conn.execute(
        "INSERT INTO worker.credit_hold (hold_id, user_id, clerk_user_id, credits, request_hash, "
        "allocation, status, resolved_by, expires_at, created_at, resolved_at) "
        "SELECT 'old' || n, 'u' || (n % 500), 'c' || (n % 500), 5, 'x', '[]', 'released', 'http', "
        "now() - interval '200 days', now() - interval '200 days', now() - interval '200 days' "
        "FROM generate_series(1, 20000) n"
    )
    await conn.execute("ANALYZE worker.credit_hold")
    explain = lambda name, arg: conn.fetch("EXPLAIN " + db.QUERIES[name], arg)  # noqa: E731
    plan = "\n".join(r[0] for r in await explain("summarize_open_holds", clock.now()))
    assert "credit_hold_due_idx" in plan, plan
    plan = "\n".join(r[0] for r in await explain("count_resolved_holds", clock.now() - timedelta(hours=24)))
    assert "credit_hold_resolved_idx" in plan, plan


async def test_the_holds_panel_in_a_browser(conn, settings):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    from tests.integration.test_ops_browser import ARTIFACTS, start_chromium

    await open_overdue_and_resolved(conn, settings)
    chromium = start_chromium()
    try:
        with serve(settings.model_copy(update={"ops_token": SecretStr(TOKEN)})) as base:
            chromium.get(f"{base}/ops/login")
            chromium.find_element(By.ID, "token").send_keys(TOKEN)
            chromium.find_element(By.ID, "login").click()
            wait = WebDriverWait(chromium, 30)
            wait.until(ec.text_to_be_present_in_element(
                (By.ID, "holds-summary"), "2 open · 19 credits held · 1 overdue"))  # fmt: skip
            panel = chromium.find_element(By.ID, "holds")
            lines = [e.text.replace("\n", " ") for e in panel.find_elements(By.CSS_SELECTOR, "h3, .stat")]
            assert lines[:3] + lines[5:] == [
                "OPEN NOW", "holds 2", "credits held 19",
                "RESOLVED IN THE LAST 24 H", "captured 1", "credits charged 15", "released 1",
                "expired 1", "RESOLVED BY STATUS (24 H)",
            ]  # fmt: skip
            overdue = chromium.find_element(By.ID, "holds-overdue")
            assert overdue.text.replace("\n", " ") == "overdue (past expiry, not released) 1"
            assert "alert" in overdue.get_attribute("class")
            full_page_screenshot(chromium, ARTIFACTS / "dashboard-holds.png")
            errors = [e for e in chromium.get_log("browser") if e["level"] == "SEVERE"]
            assert errors == [], errors
    finally:
        chromium.quit()


# --- reconcile -----------------------------------------------------------------------------------


async def test_holds_that_agree_with_their_journal_are_not_drift(conn, settings):
    await every_kind_of_hold(conn, settings)
    steps: list[int] = []
    report = await reconcile(conn, page_size=4, on_progress=steps.append)
    assert report.drift == [] and report.overdue_holds == []
    assert report.holds_checked == 6
    assert steps[-2:] == [4, 2]  # the holds, a page of 4 at a time


async def test_a_hold_captured_by_a_usage_event_is_checked_against_that_usage(conn, settings, broker, worker):
    from tests.integration.helpers import usage
    from worker.publisher import Publisher

    await make_user(conn, "user_iv", credits=100)
    await place(conn, settings, "h1", "user_iv", 10)
    Publisher(broker).publish(usage("user_iv", id="use-1", credits=6, holdId="h1"))
    worker.drain()
    row = await conn.fetchrow("SELECT status, captured, usage_id, resolved_by FROM worker.credit_hold")
    assert tuple(row) == ("captured", 6, "use-1", "use-1")
    assert (await reconcile(conn)).drift == []

    await conn.execute('UPDATE "UsageHistory" SET id = $1 WHERE id = $2', "use-x", "use-1")
    [found] = (await reconcile(conn)).drift
    assert (found.kind, found.hold_id, found.detail) == ("hold", "h1", 'no "UsageHistory" row use-1')


async def test_a_hold_and_its_journal_that_disagree_are_drift(conn, settings, database_url):
    await every_kind_of_hold(conn, settings)
    ids = dict(await conn.fetch('SELECT "clerkId", id FROM "User"'))
    ana = ids["user_ana"]
    tamper = "UPDATE worker.journal SET delta = $2 WHERE event_id = $1"
    await conn.execute(tamper, "hold/open", -3)  # the journal took 3, the hold says 10
    await conn.execute("DELETE FROM worker.journal WHERE event_id = 'release/rel'")  # released, nothing back
    await conn.execute('UPDATE "UsageHistory" SET "creditsUsed" = 9 WHERE id = $1', "cap")
    await conn.execute("UPDATE worker.credit_hold SET credits = 12 WHERE hold_id = 'exp'")  # nets 0 still
    await conn.execute("INSERT INTO worker.journal (event_id, user_id, kind, delta) "
                       "VALUES ('release/bo1', $1, 'release', 30)", ids["user_bo"])  # fmt: skip
    await conn.execute("DELETE FROM worker.credit_hold WHERE hold_id = 'over'")  # its movements stay

    found = {d.hold_id: (d.kind, d.user_id, d.expected, d.actual, d.detail) for d in await find_hold_drift(conn)}
    assert found == {
        "open": ("hold", ana, -10, -3, "hold/open moved -3, the hold is of 10; its movements net -3, "
                                       "the row says -10"),
        "rel": ("hold", ana, 0, -5, "released, but no movement release/rel; its movements net -5, the row "
                                    "says 0"),
        "cap": ("hold", ana, -15, -15, '"UsageHistory" cap used 9, the hold captured 15'),
        "exp": ("hold", ana, 0, 0, "hold/exp moved -7, the hold is of 12"),
        "bo1": ("hold", ids["user_bo"], -30, 0, "held, but a movement release/bo1; its movements net 0, "
                                                "the row says -30"),
        "over": ("hold", ana, None, -8, "no worker.credit_hold row, but capture/over, hold/over"),
    }  # fmt: skip
    report = await reconcile(conn, page_size=2)
    assert {d.hold_id for d in report.drift if d.kind == "hold"} == set(found)
    assert report.holds_checked == 5

    text = pedro("reconcile", database_url=database_url)
    assert text.returncode == 1
    assert (f"DRIFT user={ana} clerkUserId=user_ana expected=-10 actual=-3 kind=hold hold=open: hold/open "
            "moved -3, the hold is of 10; its movements net -3, the row says -10"
            in text.stdout.splitlines())  # fmt: skip
    assert re.search(r"with drift \(.*hold 6\)", text.stdout), text.stdout
    out = json.loads(pedro("reconcile", "--json", database_url=database_url).stdout)
    assert out["holds_checked"] == 5
    assert {d["hold_id"] for d in out["drift"] if d["kind"] == "hold"} == set(found)


async def test_a_hold_left_held_well_past_its_expiry_is_reported_but_is_not_drift(
    conn, settings, database_url
):
    await make_user(conn, "user_go", credits=100)
    await place(conn, settings, "late", "user_go", 25, ttl=60)
    await place(conn, settings, "soon", "user_go", 5, ttl=60)
    clock.advance(timedelta(minutes=3))  # both due; within the 5 minutes reconcile allows the sweep
    report = await reconcile(conn)
    assert report.drift == [] and report.overdue_holds == []
    clock.advance(timedelta(minutes=5))
    report = await reconcile(conn)
    assert report.drift == []
    assert [(d.kind, d.hold_id, d.expected, d.actual) for d in report.overdue_holds] == [
        ("hold_overdue", "late", 0, 25), ("hold_overdue", "soon", 0, 5)]  # fmt: skip
    assert re.match(r"not drift: held 42\ds past its expiry", report.overdue_holds[0].detail)
    assert report.summary("cli")["holds_overdue"] == 2 and report.summary("cli")["drift"] == 0

    # the CLI runs on the real clock: the hold's expiry is moved back instead
    await conn.execute("UPDATE worker.credit_hold SET expires_at = now() - interval '10 minutes' "
                       "WHERE hold_id = 'late'")  # fmt: skip
    text = pedro("reconcile", database_url=database_url)
    assert text.returncode == 0, text.stdout
    [line] = [line for line in text.stdout.splitlines() if line.startswith("OVERDUE")]
    assert re.fullmatch(r"OVERDUE user=\S+ clerkUserId=user_go expected=0 actual=25 kind=hold_overdue "
                        r"hold=late: not drift: held 6\d\ds past its expiry \(\S+\), the grant sweep has "
                        r"not released it", line)  # fmt: skip
    assert "2 holds checked, 1 held over 5 min past their expiry (not drift" in text.stdout
