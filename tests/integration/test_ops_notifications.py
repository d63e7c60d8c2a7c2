"""Notifications as ops see them: `pedro-worker notifications list|show|redeliver`, the
notifications section of `user show`, the dashboard's Notifications panel (and its Redeliver),
and the `pedro_notifications_*` gauges. Notifications are written the real way
(worker.notify.outbox.record); their deliveries are then moved to the states the dispatcher
leaves them in (delivered, failed, retrying) with plain UPDATEs: the dispatcher is not under
test here."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import subprocess
import sys
from datetime import timedelta

import asyncpg
import httpx
import pytest
from pydantic import SecretStr

from tests.integration.helpers import make_user
from tests.integration.ops_helpers import full_page_screenshot, serve
from tests.integration.test_cli import pedro
from tests.integration.test_ops_metrics import scrape, value
from tests.integration.test_ops_web import csrf_of
from worker import clock, db
from worker.notify.config import TYPES, Endpoint
from worker.notify.notices import Notice
from worker.notify.outbox import record
from worker.ops.notifications import notifications_overview, notifications_view
from worker.ops.web import create_app

TOKEN = "notifications-test-token-7a2e"
SECRET = "whsec_" + base64.b64encode(b"k" * 32).decode()
APP = Endpoint(name="app", url="http://127.0.0.1:9/hooks/pedro?token=t0k3n", secret=SecretStr(SECRET))
AUDIT = Endpoint(name="audit", url="https://who:pw@audit.example.com:8443/in", secret=SecretStr(SECRET),
                 events=("credits.low", "usage.rejected"))  # fmt: skip
ONLY_APP = {"PEDRO_NOTIFY_ENDPOINTS": json.dumps([{"name": "app", "url": APP.url, "secret": SECRET}])}
BOTH = {"PEDRO_NOTIFY_ENDPOINTS": json.dumps([
    {"name": "app", "url": APP.url, "secret": SECRET},
    {"name": "audit", "url": AUDIT.url, "secret": SECRET, "events": list(AUDIT.events)},
])}  # fmt: skip


@pytest.fixture(autouse=True)
def _clock():
    clock.reset()
    yield
    clock.reset()


def notifying(settings, *endpoints: Endpoint):
    """The settings with these endpoints (a fresh copy: notify_targets is cached on first use)."""
    copy = settings.model_copy(update={"notify_endpoints": list(endpoints)})
    copy.__dict__.pop("notify_targets", None)
    return copy


def notice(key: str, notice_type: str, clerk: str | None, **data) -> Notice:
    return Notice(key, notice_type, clerk, {"clerkUserId": clerk, **data})


def pedro_with_input(answer: str, *args: str, database_url: str, **env: str) -> subprocess.CompletedProcess:
    environ = {**os.environ, "DATABASE_URL": database_url, "REDIS_URL": "", **env}
    return subprocess.run([sys.executable, "-m", "worker.cli", *args], env=environ, input=answer,
                          capture_output=True, text=True, timeout=60)  # fmt: skip


async def deliveries(conn, seq: int) -> dict[str, dict]:
    rows = await conn.fetch("SELECT * FROM worker.notification_delivery WHERE seq = $1", seq)
    return {r["endpoint"]: dict(r) for r in rows}


async def set_delivery(conn, seq: int, endpoint: str, sql: str) -> None:
    done = await conn.execute(f"UPDATE worker.notification_delivery SET {sql} WHERE seq = $1 AND endpoint = $2",
                              seq, endpoint)  # fmt: skip
    assert done == "UPDATE 1", (seq, endpoint)


DELIVERED = ("status = 'delivered', attempts = 1, last_attempt_at = now() - interval '1 hour', "
             "last_status = 204, delivered_at = now() - interval '1 hour'")  # fmt: skip
FAILED = ("status = 'failed', attempts = 8, last_attempt_at = now() - interval '10 minutes', "
          "last_status = 503, last_error = 'upstream down', failed_at = now() - interval '10 minutes'")
TIMED_OUT = ("status = 'failed', attempts = 8, last_attempt_at = now() - interval '3 hours', "
             "last_status = NULL, last_error = 'no answer in 15 s', failed_at = now() - interval '3 hours'")
RETRYING = ("attempts = 2, next_at = now() + interval '5 minutes', last_attempt_at = now() - interval '1 minute', "
            "last_error = 'connection refused'")  # fmt: skip


async def every_kind_of_delivery(conn, settings) -> dict[str, int]:
    """Five notifications (app takes every type, audit only credits.low and usage.rejected):

        1 user.provisioned user_ana  app delivered                  (written 2 h ago)
        2 credits.granted  user_ana  app delivered                  (2 h ago)
        3 credits.low      user_ana  app FAILED 503, audit delivered (2 h ago)
        4 credits.low      user_bo   app retrying, audit FAILED (timeout, 3 h ago)  (10 min ago)
        5 usage.rejected   user_bo   app pending, audit pending      (10 min ago)

    Returns seq by name (`provisioned`, `granted`, `low_ana`, `low_bo`, `rejected`)."""
    s = notifying(settings, APP, AUDIT)
    written = await record(conn, s, [
        notice("user.provisioned/user_ana", "user.provisioned", "user_ana", email="ana@example.com"),
        notice("credits.granted/starter/user_ana", "credits.granted", "user_ana", credits=100),
        notice("credits.low/user_ana/20/g1", "credits.low", "user_ana", balance=12),
        notice("credits.low/user_bo/20/g2", "credits.low", "user_bo", balance=3),
        notice("usage.rejected/use-9/unknown_operation", "usage.rejected", "user_bo", reason="unknown_operation"),
    ])  # fmt: skip
    assert written == 5
    seqs = dict(zip(("provisioned", "granted", "low_ana", "low_bo", "rejected"),
                    [r[0] for r in await conn.fetch("SELECT seq FROM worker.notification ORDER BY seq")]))  # fmt: skip
    await conn.execute("UPDATE worker.notification SET created_at = now() - interval '2 hours' WHERE seq <= $1",
                       seqs["low_ana"])  # fmt: skip
    await conn.execute("UPDATE worker.notification SET created_at = now() - interval '10 minutes' WHERE seq > $1",
                       seqs["low_ana"])  # fmt: skip
    await set_delivery(conn, seqs["provisioned"], "app", DELIVERED)
    await set_delivery(conn, seqs["granted"], "app", DELIVERED)
    await set_delivery(conn, seqs["low_ana"], "app", FAILED)
    await set_delivery(conn, seqs["low_ana"], "audit", DELIVERED)
    await set_delivery(conn, seqs["low_bo"], "app", RETRYING)
    await set_delivery(conn, seqs["low_bo"], "audit", TIMED_OUT)
    return seqs


# --- notifications list / show ------------------------------------------------------------------


_ROW = re.compile(r"^ *(?P<seq>\d+) +(?P<age>\S+) +(?P<type>\S+) +(?P<user>\S+) +(?P<endpoint>\S+) +"
                  r"(?P<status>\S+) +(?P<tries>\S+) +(?P<next>in flight|in \S+|due(?: \S+ ago)?|-) +"
                  r"(?P<last>.*)$")  # fmt: skip


def rows(text: str) -> list[dict[str, str]]:
    """The deliveries table of `notifications list`, in its order."""
    found = (_ROW.match(line) for line in text.splitlines())
    return [m.groupdict() for m in found if m]


async def test_notifications_list_shows_deliveries_newest_first_with_filters(conn, settings, database_url):
    seqs = await every_kind_of_delivery(conn, settings)
    listed = pedro("notifications", "list", database_url=database_url)
    assert listed.returncode == 0, listed.stderr
    table = rows(listed.stdout)
    assert [(int(r["seq"]), r["endpoint"], r["status"]) for r in table] == [
        (seqs["rejected"], "app", "pending"), (seqs["rejected"], "audit", "pending"),
        (seqs["low_bo"], "app", "pending"), (seqs["low_bo"], "audit", "failed"),
        (seqs["low_ana"], "app", "failed"), (seqs["low_ana"], "audit", "delivered"),
        (seqs["granted"], "app", "delivered"), (seqs["provisioned"], "app", "delivered"),
    ]  # fmt: skip
    assert listed.stdout.splitlines()[-1] == "8 of 8 delivery(ies) listed"
    retrying, failed = table[2], table[4]
    assert retrying | {"age": "", "next": ""} == {
        "seq": str(seqs["low_bo"]), "age": "", "type": "credits.low", "user": "user_bo", "endpoint": "app",
        "status": "pending", "tries": "2", "next": "", "last": "connection refused"}  # fmt: skip
    assert re.fullmatch(r"10m0\ds", retrying["age"]) and re.fullmatch(r"in 4m5\ds", retrying["next"])
    assert (failed["tries"], failed["next"], failed["last"]) == ("8", "-", "HTTP 503: upstream down")
    assert table[0]["next"].startswith("due") and table[0]["last"] == "-"
    assert (table[6]["tries"], table[6]["next"], table[6]["last"]) == ("1", "-", "HTTP 204")  # delivered

    failures = rows(pedro("notifications", "list", "--status", "failed", database_url=database_url).stdout)
    assert [(int(r["seq"]), r["endpoint"], r["last"]) for r in failures] == [
        (seqs["low_bo"], "audit", "no answer in 15 s"), (seqs["low_ana"], "app", "HTTP 503: upstream down"),
    ]  # fmt: skip
    low = pedro("notifications", "list", "--type", "credits.low", "--endpoint", "app", database_url=database_url)
    assert [int(r["seq"]) for r in rows(low.stdout)] == [seqs["low_bo"], seqs["low_ana"]]
    ana = pedro("notifications", "list", "--user", "user_ana", "--limit", "2", database_url=database_url)
    assert [(int(r["seq"]), r["endpoint"]) for r in rows(ana.stdout)] == [
        (seqs["low_ana"], "app"), (seqs["low_ana"], "audit")]  # fmt: skip
    assert ana.stdout.splitlines()[-1] == "2 of 4 delivery(ies) listed"
    nobody = pedro("notifications", "list", "--user", "user_nobody", database_url=database_url)
    assert nobody.returncode == 0 and nobody.stdout.strip() == "0 of 0 delivery(ies) listed"

    as_json = pedro("notifications", "list", "--status", "pending", "--json", database_url=database_url)
    lines = [json.loads(line) for line in as_json.stdout.splitlines()]
    assert [(d["seq"], d["endpoint"], d["attempts"], d["last_error"]) for d in lines] == [
        (seqs["rejected"], "app", 0, None), (seqs["rejected"], "audit", 0, None),
        (seqs["low_bo"], "app", 2, "connection refused")]  # fmt: skip
    assert lines[2]["webhook_id"].startswith("msg_") and 240 < lines[2]["next_in_s"] <= 300
    assert pedro("notifications", "list", "--status", "sent", database_url=database_url).returncode == 2


async def test_a_notification_no_endpoint_takes_is_listed_without_a_delivery(conn, settings, database_url):
    await record(conn, notifying(settings, AUDIT), [notice("user.provisioned/user_cy", "user.provisioned", "user_cy")])
    [line] = rows(pedro("notifications", "list", database_url=database_url).stdout)
    assert (line["endpoint"], line["status"], line["last"]) == ("-", "-", "no endpoint takes its type")
    shown = pedro("notifications", "show", "user.provisioned/user_cy", database_url=database_url)  # by key
    assert "  none: no endpoint took its type when it was written" in shown.stdout
    assert pedro("notifications", "list", "--status", "pending", database_url=database_url).stdout.startswith("0 of 0")


async def test_notifications_show_prints_its_data_and_each_delivery_and_whether_its_endpoint_is_configured(
    conn, settings, database_url
):
    seqs = await every_kind_of_delivery(conn, settings)
    webhook_id = await conn.fetchval("SELECT webhook_id FROM worker.notification WHERE seq = $1", seqs["low_ana"])
    shown = pedro("notifications", "show", str(seqs["low_ana"]), database_url=database_url, **ONLY_APP)
    assert shown.returncode == 0, shown.stderr
    text = shown.stdout
    assert f"notification {seqs['low_ana']}  credits.low" in text
    assert "key          credits.low/user_ana/20/g1" in text and f"webhook id   {webhook_id}" in text
    assert "user         user_ana" in text and re.search(r"created      \S+ \S+Z  \(2h00m ago\)", text)
    assert '    "balance": 12' in text  # the data, pretty
    app, audit = text.split("deliveries\n")[1].split("\n  audit")
    assert app.startswith("  app  FAILED after 8 attempt(s)  (configured: 127.0.0.1:9)")
    assert re.search(r"last attempt  \S+ \S+Z  HTTP 503: upstream down", app) and "next attempt  -" in app
    assert re.search(r"failed        \S+ \S+Z", app) and "delivered     -" in app
    assert audit.startswith("  delivered after 1 attempt(s)  (NOT CONFIGURED any more: nothing delivers it)")
    assert "t0k3n" not in text and "/hooks" not in text  # the endpoint's host only

    by_webhook_id = pedro("notifications", "show", webhook_id, "--json", database_url=database_url, **BOTH)
    view = json.loads(by_webhook_id.stdout)
    assert (view["seq"], view["type"], view["clerk_user_id"], view["data"]["balance"]) == (
        seqs["low_ana"], "credits.low", "user_ana", 12)  # fmt: skip
    assert [(d["endpoint"], d["status"], d["configured"], d["host"], d["last_status"])
            for d in view["deliveries"]] == [("app", "failed", True, "127.0.0.1:9", 503),
                                             ("audit", "delivered", True, "audit.example.com:8443", 204)]  # fmt: skip
    assert "pw" not in json.dumps(view["deliveries"])

    provisioned = pedro("notifications", "show", str(seqs["provisioned"]), database_url=database_url)
    assert "ana@example.com" not in provisioned.stdout and '"email": "<email>"' in provisioned.stdout
    missing = pedro("notifications", "show", "msg_nope", database_url=database_url)
    assert missing.returncode == 1 and "no notification 'msg_nope'" in missing.stderr


# --- notifications redeliver ---------------------------------------------------------------------


async def test_redeliver_sends_a_failed_delivery_again_with_the_same_webhook_id_and_wakes_the_dispatcher(
    conn, settings, database_url
):
    seqs = await every_kind_of_delivery(conn, settings)
    seq = seqs["low_ana"]
    before = await deliveries(conn, seq)
    declined = pedro_with_input("n\n", "notifications", "redeliver", str(seq), "--endpoint", "app",
                                database_url=database_url, **ONLY_APP)  # fmt: skip
    assert declined.returncode == 1 and "nothing redelivered" in declined.stdout
    webhook_id = await conn.fetchval("SELECT webhook_id FROM worker.notification WHERE seq = $1", seq)
    assert (f"redeliver notification {seq} (credits.low for user_ana, {webhook_id}) to app (failed)? [y/N]"
            in declined.stdout)  # fmt: skip
    assert await deliveries(conn, seq) == before

    woken: list[str] = []
    listener = await asyncpg.connect(database_url)
    await listener.add_listener("pedro_notifications", lambda *args: woken.append(args[2]))
    try:
        done = pedro("notifications", "redeliver", str(seq), "--endpoint", "app", "--yes",
                     database_url=database_url, **ONLY_APP)  # fmt: skip
        await asyncio.sleep(0.2)
    finally:
        await listener.close()
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == (f"redelivered {seq} credits.low for user_ana to app (failed after 8 attempt(s)): "
                                   f"pending again, due now, webhook id {webhook_id}")  # fmt: skip
    assert woken == ["pedro_notifications"]  # the dispatcher LISTENs there
    app = (await deliveries(conn, seq))["app"]
    assert (app["status"], app["attempts"], app["in_flight"], app["failed_at"]) == ("pending", 0, False, None)
    assert abs((app["next_at"] - await conn.fetchval("SELECT now()")).total_seconds()) < 30
    assert (app["last_status"], app["last_error"]) == (503, "upstream down")  # until the next attempt
    assert (await deliveries(conn, seq))["audit"] == before["audit"]  # not asked for
    logged = [json.loads(line) for line in done.stderr.splitlines() if "notification_redelivered" in line]
    assert [(e["seq"], e["endpoint"], e["was"], e["webhook_id"]) for e in logged] == [
        (seq, "app", "failed", webhook_id)]  # fmt: skip
    assert logged[0]["by"]

    again = pedro("notifications", "redeliver", str(seq), "--endpoint", "app", "--yes", database_url=database_url,
                  **ONLY_APP)  # fmt: skip
    assert again.returncode == 1
    assert "left as it is: " in again.stdout and ": pending, the dispatcher has it" in again.stdout
    # audit is not configured here: nothing would deliver it
    gone = pedro("notifications", "redeliver", str(seq), "--yes", database_url=database_url, **ONLY_APP)
    assert gone.returncode == 1 and "endpoint 'audit' is not configured" in gone.stderr
    assert (await deliveries(conn, seq))["audit"]["status"] == "delivered"
    # …with it configured, a delivered one can be sent again too (the receiver dedupes on the id)
    both = pedro("notifications", "redeliver", webhook_id, "--yes", database_url=database_url, **BOTH)
    assert both.returncode == 0 and "to audit (delivered after 1 attempt(s))" in both.stdout
    assert (await deliveries(conn, seq))["audit"]["delivered_at"] is not None  # kept: when it was delivered

    nope = pedro("notifications", "redeliver", "999999", "--yes", database_url=database_url, **BOTH)
    assert nope.returncode == 1 and "no notification '999999'" in nope.stderr
    elsewhere = pedro("notifications", "redeliver", str(seqs["granted"]), "--endpoint", "audit", "--yes",
                      database_url=database_url, **BOTH)  # fmt: skip
    assert elsewhere.returncode == 1
    assert f"notification {seqs['granted']} has no delivery to 'audit'" in elsewhere.stderr


async def test_redeliver_failed_sends_every_failed_delivery_again(conn, settings, database_url):
    seqs = await every_kind_of_delivery(conn, settings)
    recent = pedro_with_input("y\n", "notifications", "redeliver", "--failed", "--since", "1h",
                              database_url=database_url, **BOTH)  # fmt: skip
    assert recent.returncode == 0, recent.stderr
    assert "redeliver 1 failed delivery(ies) last tried within 1h00m (app: 1)? [y/N]" in recent.stdout
    assert recent.stdout.splitlines()[-1] == (
        "redelivered 1 failed delivery(ies): pending again, due now, the same webhook ids (app: 1)")
    assert (await deliveries(conn, seqs["low_ana"]))["app"]["status"] == "pending"
    assert (await deliveries(conn, seqs["low_bo"]))["audit"]["status"] == "failed"  # 3 h ago

    only_app = pedro("notifications", "redeliver", "--failed", "--yes", database_url=database_url, **ONLY_APP)
    assert only_app.returncode == 1  # audit's failure is refused: not configured
    assert "refused 1 failed delivery(ies) to endpoints not configured (audit: 1)" in only_app.stderr
    assert only_app.stdout.strip() == "no failed deliveries to redeliver"
    declined = pedro_with_input("\n", "notifications", "redeliver", "--failed", "--endpoint", "audit",
                                database_url=database_url, **BOTH)  # fmt: skip
    assert declined.returncode == 1 and "nothing redelivered" in declined.stdout
    everything = pedro("notifications", "redeliver", "--failed", "--yes", database_url=database_url, **BOTH)
    assert everything.returncode == 0 and "(audit: 1)" in everything.stdout
    assert await conn.fetchval("SELECT count(*) FROM worker.notification_delivery WHERE status = 'failed'") == 0
    nothing = pedro("notifications", "redeliver", "--failed", "--yes", database_url=database_url, **BOTH)
    assert nothing.returncode == 0 and nothing.stdout.strip() == "no failed deliveries to redeliver"

    for bad in (("redeliver",), ("redeliver", "1", "--failed"), ("redeliver", "1", "--since", "1h"),
                ("redeliver", "--failed", "--since", "yesterday")):  # fmt: skip
        assert pedro("notifications", *bad, database_url=database_url).returncode == 2, bad


# --- user show -----------------------------------------------------------------------------------


async def test_user_show_lists_the_users_latest_notifications_and_their_deliveries(conn, settings, database_url):
    seqs = await every_kind_of_delivery(conn, settings)
    await make_user(conn, "user_bo", credits=3)
    shown = pedro("user", "show", "user_bo", database_url=database_url)
    assert shown.returncode == 0, shown.stderr
    section = shown.stdout.split("notifications: 2 (latest first)\n")[1].splitlines()
    assert section[0].split() == ["SEQ", "AGE", "TYPE", "DELIVERIES"]
    rejected, low = (re.split(r"  +", line.strip(), maxsplit=3) for line in section[1:])
    assert (rejected[0], rejected[2], rejected[3]) == (str(seqs["rejected"]), "usage.rejected",
                                                       "app pending · audit pending")  # fmt: skip
    assert (low[0], low[2]) == (str(seqs["low_bo"]), "credits.low") and low[1].startswith("10m0")
    assert re.fullmatch(r"app retrying: 2 tried \(connection refused\), next in 4m5\ds · "
                        r"audit FAILED after 8 \(no answer in 15 s\)", low[3]), low[3]  # fmt: skip

    s = notifying(settings, APP)
    for n in range(5):  # five more, later: the oldest are not listed
        await record(conn, s, [notice(f"credits.granted/more{n}/user_bo", "credits.granted", "user_bo")])
    section = pedro("user", "show", "user_bo", database_url=database_url).stdout.split(
        "notifications: 7 (latest first)\n")[1].splitlines()  # fmt: skip
    latest = await conn.fetch("SELECT seq FROM worker.notification WHERE key LIKE '%/more%' ORDER BY seq DESC")
    assert [int(line.split()[0]) for line in section[1:-1]] == [r["seq"] for r in latest]
    assert section[1].endswith("credits.granted     app pending")
    assert section[-1] == "  (2 older: pedro-worker notifications list --user user_bo)"

    as_json = json.loads(pedro("user", "show", "user_bo", "--json", database_url=database_url).stdout)
    assert as_json["notifications"]["total"] == 7 and len(as_json["notifications"]["latest"]) == 5

    await record(conn, s, [notice("credits.low/user_cy/20/g", "credits.low", "user_cy")])
    await make_user(conn, "user_cy", credits=5)
    seq = await conn.fetchval("SELECT seq FROM worker.notification WHERE clerk_user_id = 'user_cy'")
    await set_delivery(conn, seq, "app", FAILED)
    cy = pedro("user", "show", "user_cy", database_url=database_url).stdout
    assert re.search(rf"\n +{seq} +\S+ +credits.low +app FAILED after 8 \(HTTP 503: upstream down\)\n", cy), cy
    await make_user(conn, "user_new", credits=5)
    assert pedro("user", "show", "user_new", database_url=database_url).stdout.endswith("\nnotifications: 0\n")


# --- dashboard and /metrics ----------------------------------------------------------------------


async def test_the_dashboard_and_metrics_show_pending_failed_and_delivered(conn, settings):
    seqs = await every_kind_of_delivery(conn, settings)
    s = notifying(settings, APP, AUDIT).model_copy(update={"ops_token": SecretStr(TOKEN)})
    app = create_app(s)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://ops") as client:
        response = await client.get("/ops/api/overview", headers={"authorization": f"Bearer {TOKEN}"})
    x = response.json()["notifications"]
    assert x["enabled"] and "config_error" not in x
    assert x["pending"] | {"oldest_s": 0} == {"deliveries": 3, "due": 2, "in_flight": 0, "oldest_s": 0}
    assert 600 <= x["pending"]["oldest_s"] < 660 and x["lag_alert_s"] == 300
    assert (x["failed"]["deliveries"], x["failed"]["last_24h"]) == (2, 2)
    latest = x["failed"]["latest"]
    assert [(f["seq"], f["type"], f["clerk_user_id"], f["endpoint"], f["last_error"]) for f in latest] == [
        (seqs["low_ana"], "credits.low", "user_ana", "app", "upstream down"),
        (seqs["low_bo"], "credits.low", "user_bo", "audit", "no answer in 15 s")]  # fmt: skip
    assert x["delivered_24h"] == dict.fromkeys(TYPES, 0) | {"user.provisioned": 1, "credits.granted": 1,
                                                             "credits.low": 1}  # fmt: skip
    assert x["endpoints"] == [
        {"name": "app", "configured": True, "host": "127.0.0.1:9", "events": ["*"], "pending": 2,
         "oldest_s": x["endpoints"][0]["oldest_s"], "failed": 1},
        {"name": "audit", "configured": True, "host": "audit.example.com:8443",
         "events": ["credits.low", "usage.rejected"], "pending": 1, "oldest_s": x["endpoints"][1]["oldest_s"],
         "failed": 1},
    ]  # fmt: skip
    assert "t0k3n" not in response.text and "pw@" not in response.text and SECRET not in response.text

    scraped = await scrape(notifying(settings, APP, AUDIT))
    assert value(scraped, "pedro_notifications_pending") == 3
    assert 600 <= value(scraped, "pedro_notifications_pending_oldest_seconds") < 660
    assert value(scraped, "pedro_notifications_failed") == 2
    assert value(scraped, "pedro_notifications_failed_24h") == 2
    assert value(scraped, "pedro_notifications_delivered_24h", type="credits.low") == 1
    assert value(scraped, "pedro_notifications_delivered_24h", type="user.provisioned") == 1
    assert ("pedro_notifications_delivered_24h", (("type", "hold.expired"),)) in scraped  # 0, not absent

    clock.advance(timedelta(hours=25))  # a day later: nothing delivered or failed recently
    later = await notifications_view(notifying(settings, APP))
    assert sum(later["delivered_24h"].values()) == 0 and later["failed"]["last_24h"] == 0
    assert later["failed"]["deliveries"] == 2  # failed until someone redelivers them
    assert [(e["name"], e["configured"]) for e in later["endpoints"]] == [("app", True), ("audit", False)]


async def test_the_dashboard_redelivers_a_failed_delivery(conn, settings):
    seqs = await every_kind_of_delivery(conn, settings)
    app = create_app(notifying(settings, APP).model_copy(update={"ops_token": SecretStr(TOKEN)}))
    bearer = {"authorization": f"Bearer {TOKEN}"}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://ops.test") as client:
        await client.post("/ops/login", data={"token": TOKEN})  # a session: POSTs then need the CSRF token
        page = await client.get("/ops/")
        body = {"seq": seqs["low_ana"], "endpoint": "app"}
        refused = await client.post("/ops/api/notifications/redeliver", json=body)
        assert refused.status_code == 403
        assert (await deliveries(conn, seqs["low_ana"]))["app"]["status"] == "failed"
        done = await client.post("/ops/api/notifications/redeliver", json=body,
                                 headers={"x-csrf-token": csrf_of(page.text), "origin": "http://ops.test"})  # fmt: skip
        assert done.status_code == 200, done.text
        assert done.json() == {"action": "redeliver", "done": 1, "missing": 0}
        assert (await deliveries(conn, seqs["low_ana"]))["app"]["status"] == "pending"

        post = lambda action, body: client.post(  # noqa: E731
            f"/ops/api/notifications/{action}", json=body, headers=bearer)  # fmt: skip
        again = await post("redeliver", body)
        assert again.json() == {"action": "redeliver", "done": 0, "missing": 1}  # pending already
        gone = await post("redeliver", {"seq": seqs["low_bo"], "endpoint": "audit"})
        assert gone.status_code == 409 and "not configured" in gone.json()["error"]
        assert (await post("redeliver", {"seq": 999999, "endpoint": "app"})).status_code == 404
        assert (await post("redeliver", {"seq": "1", "endpoint": "app"})).status_code == 400
        assert (await post("redeliver", {"seq": seqs["low_ana"]})).status_code == 400
        assert (await post("purge", body)).status_code == 404


async def test_without_endpoints_the_panel_says_notifications_are_off(conn, settings):
    view = await notifications_overview(conn, clock.now(), [])
    assert view == {
        "enabled": False, "endpoints": [],
        "pending": {"deliveries": 0, "due": 0, "in_flight": 0, "oldest_s": None},
        "failed": {"deliveries": 0, "last_24h": 0, "latest": []},
        "delivered_24h": dict.fromkeys(TYPES, 0), "lag_alert_s": 300,
    }  # fmt: skip
    scraped = await scrape(settings)
    assert scraped[("pedro_notifications_pending", ())] == 0
    assert scraped[("pedro_notifications_pending_oldest_seconds", ())] == 0
    assert scraped[("pedro_notifications_failed", ())] == 0
    half_set = settings.model_copy(update={"notify_url": "https://app.example.com/hooks"})
    half_set.__dict__.pop("notify_targets", None)
    broken = await notifications_view(half_set)
    assert broken["config_error"] == "PEDRO_NOTIFY_URL is set without PEDRO_NOTIFY_SECRET (whsec_…)"
    assert await notifications_view(settings.model_copy(update={"database_url": None})) is None


async def test_the_dashboard_reads_only_the_partial_indexes_of_pending_and_finished_deliveries(conn):
    """What the dashboard and /metrics run at every refresh stays cheap however long the
    delivered history is."""
    await conn.execute(
        "INSERT INTO worker.notification (key, webhook_id, type, clerk_user_id, data, created_at) "
        "SELECT 'k' || n, 'msg_' || n, 'credits.granted', 'c' || (n % 500), '{}', now() - interval '200 days' "
        "FROM generate_series(1, 20000) n"
    )
    await conn.execute(
        "INSERT INTO worker.notification_delivery (seq, endpoint, lane, status, attempts, last_attempt_at, "
        "delivered_at) SELECT seq, 'app', clerk_user_id, 'delivered', 1, created_at, created_at "
        "FROM worker.notification"
    )
    await conn.execute("ANALYZE worker.notification")
    await conn.execute("ANALYZE worker.notification_delivery")
    explain = lambda name, *args: conn.fetch("EXPLAIN " + db.QUERIES[name], *args)  # noqa: E731
    since = clock.now() - timedelta(hours=24)
    for name, args, index in (
        ("summarize_pending_notifications", (clock.now(),), "notification_delivery_due_idx"),
        ("summarize_failed_notifications", (since,), "notification_delivery_done_idx"),
        ("list_latest_notification_failures", (5,), "notification_delivery_done_idx"),
        ("count_delivered_notifications", (since,), "notification_delivery_done_idx"),
    ):  # fmt: skip
        plan = "\n".join(r[0] for r in await explain(name, *args))
        assert index in plan, (name, plan)
        assert "Seq Scan" not in plan, (name, plan)


async def test_the_notifications_panel_in_a_browser(conn, settings):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    from tests.integration.test_ops_browser import ARTIFACTS, start_chromium

    seqs = await every_kind_of_delivery(conn, settings)
    chromium = start_chromium()
    try:
        with serve(notifying(settings, APP).model_copy(update={"ops_token": SecretStr(TOKEN)})) as base:
            chromium.get(f"{base}/ops/login")
            chromium.find_element(By.ID, "token").send_keys(TOKEN)
            chromium.find_element(By.ID, "login").click()
            wait = WebDriverWait(chromium, 30)
            wait.until(ec.text_to_be_present_in_element((By.ID, "notifications-summary"), "· 3 pending · lag 10m"))
            assert "· 2 failed · 3 delivered in 24 h" in chromium.find_element(By.ID, "notifications-summary").text
            assert not chromium.find_element(By.ID, "notifications-off").is_displayed()
            lag = chromium.find_element(By.ID, "notifications-lag")
            assert re.fullmatch(r"oldest pending \(lag\) 10m \d+s", lag.text.replace("\n", " ")), lag.text
            assert "alert" in lag.get_attribute("class")  # over 5 minutes
            assert "alert" in chromium.find_element(By.ID, "notifications-failed").get_attribute("class")
            app = chromium.find_element(By.ID, "notifications-endpoint-app").text.replace("\n", " ")
            assert re.fullmatch(r"app 127\.0\.0\.1:9 · 2 pending \(oldest 10m \d+s\) · 1 failed", app), app
            audit = chromium.find_element(By.ID, "notifications-endpoint-audit")
            assert "NOT CONFIGURED" in audit.text and "alert" in audit.get_attribute("class")
            failures = chromium.find_elements(By.CSS_SELECTOR, "tr.notification-failure")
            assert [(f.get_attribute("data-seq"), f.get_attribute("data-endpoint")) for f in failures] == [
                (str(seqs["low_ana"]), "app"), (str(seqs["low_bo"]), "audit")]  # fmt: skip
            assert not failures[1].find_element(By.CSS_SELECTOR, "button.redeliver").is_enabled()
            full_page_screenshot(chromium, ARTIFACTS / "dashboard-notifications.png")

            failures[0].find_element(By.CSS_SELECTOR, "button.redeliver").click()
            chromium.switch_to.alert.accept()
            wait.until(ec.text_to_be_present_in_element((By.ID, "toast"), "Redelivered 1 notification"))
            assert (await deliveries(conn, seqs["low_ana"]))["app"]["status"] == "pending"
            wait.until(ec.text_to_be_present_in_element((By.ID, "notifications-summary"), "· 1 failed"))
            errors = [e for e in chromium.get_log("browser") if e["level"] == "SEVERE"]
            assert errors == [], errors
    finally:
        chromium.quit()


async def test_the_panel_says_how_to_turn_notifications_on_in_a_browser(conn, settings):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    from tests.integration.test_ops_browser import start_chromium

    chromium = start_chromium()
    try:
        with serve(settings.model_copy(update={"ops_token": SecretStr(TOKEN)})) as base:
            chromium.get(f"{base}/ops/login")
            chromium.find_element(By.ID, "token").send_keys(TOKEN)
            chromium.find_element(By.ID, "login").click()
            wait = WebDriverWait(chromium, 30)
            wait.until(ec.visibility_of_element_located((By.ID, "notifications-off")))
            off = chromium.find_element(By.ID, "notifications-off").text
            assert off.startswith("Notifications are off: no endpoint is configured.")
            assert "PEDRO_NOTIFY_URL" in off and "PEDRO_NOTIFY_SECRET" in off
            assert chromium.find_element(By.ID, "notifications-summary").text.startswith("· off · 0 pending")
    finally:
        chromium.quit()
