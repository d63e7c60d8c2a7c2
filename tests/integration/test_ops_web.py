"""The dashboard's HTTP surface: auth by token or basic, CSRF on every POST, real dead letters."""

from __future__ import annotations

import asyncio
import base64
import re

import httpx
from pydantic import SecretStr

from tests.integration.helpers import balance, make_user, rejections, settle
from tests.integration.ops_helpers import (
    dead_letters,
    make_balance_busy_dead_letter,
    make_waiting_event,
)
from worker.ops.web import create_app

TOKEN = "ops-token-for-tests-91c2"
BASIC = "ops:basic-pass-for-tests"


def client_for(settings, **update) -> httpx.AsyncClient:
    app = create_app(settings.model_copy(update=update))
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://ops.test")


def csrf_of(html: str) -> str:
    match = re.search(r'<meta name="csrf-token" content="([^"]+)">', html)
    assert match, "no CSRF token in the page"
    return match.group(1)


async def test_without_credentials_configured_the_dashboard_is_closed(settings):
    async with client_for(settings) as client:
        page = await client.get("/ops/")
        assert page.status_code == 503 and "PEDRO_OPS_TOKEN" in page.text
        assert (await client.get("/ops/api/overview")).status_code == 503
        assert (await client.post("/ops/api/dlq/purge", json={"all": True})).status_code == 503


async def test_token_login_session_and_csrf(settings):
    async with client_for(settings, ops_token=SecretStr(TOKEN)) as client:
        first = await client.get("/ops/")
        assert first.status_code == 303 and first.headers["location"] == "/ops/login"
        assert (await client.get("/ops/api/overview")).status_code == 401
        wrong = await client.post("/ops/login", data={"token": "nope"})
        assert wrong.status_code == 401 and "Wrong token" in wrong.text
        assert "pedro_ops_session" not in client.cookies

        login = await client.post("/ops/login", data={"token": TOKEN})
        assert login.status_code == 303
        session = client.cookies["pedro_ops_session"]
        assert TOKEN not in session
        page = await client.get("/ops/")
        assert page.status_code == 200
        assert "default-src 'self'" in page.headers["content-security-policy"]
        assert page.headers["x-frame-options"] == "DENY"
        csrf = csrf_of(page.text)
        overview = (await client.get("/ops/api/overview")).json()
        assert {q["name"] for q in overview["queues"]} >= {"usage", "users", "billing", "storage"}
        assert overview["dead_letters"] == []

        body = {"all": True}
        assert (await client.post("/ops/api/dlq/requeue", json=body)).status_code == 403  # no token
        bad = {"x-csrf-token": csrf[:-1] + ("0" if csrf[-1] != "0" else "1")}
        assert (
            await client.post("/ops/api/dlq/requeue", json=body, headers=bad)
        ).status_code == 403
        cross = {"x-csrf-token": csrf, "origin": "https://evil.example"}
        assert (
            await client.post("/ops/api/dlq/requeue", json=body, headers=cross)
        ).status_code == 403
        ok = await client.post(
            "/ops/api/dlq/requeue",
            json=body,
            headers={"x-csrf-token": csrf, "origin": "http://ops.test"},
        )
        assert ok.status_code == 200 and ok.json() == {"action": "requeue", "done": 0, "missing": 0}

        logout = await client.post("/ops/logout", data={"csrf_token": csrf})
        assert logout.status_code == 303
        assert (await client.get("/ops/api/overview")).status_code == 401
        assert (
            await client.get("/ops/static/dashboard.js")
        ).status_code == 200  # assets need no auth


async def test_basic_auth_and_bearer(settings):
    good = "Basic " + base64.b64encode(BASIC.encode()).decode()
    bad = "Basic " + base64.b64encode(b"ops:wrong").decode()
    async with client_for(
        settings, ops_basic_auth=SecretStr(BASIC), ops_token=SecretStr(TOKEN)
    ) as client:
        challenge = await client.get("/ops/")
        assert challenge.status_code == 401 and challenge.headers["www-authenticate"].startswith(
            "Basic"
        )
        assert (await client.get("/ops/", headers={"authorization": bad})).status_code == 401
        page = await client.get("/ops/", headers={"authorization": good})
        assert page.status_code == 200
        # the browser resends basic credentials by itself: they never suffice for a POST
        refused = await client.post(
            "/ops/api/dlq/purge", json={"all": True}, headers={"authorization": good}
        )
        assert refused.status_code == 403
        allowed = await client.post(
            "/ops/api/dlq/purge",
            json={"all": True},
            headers={"authorization": good, "x-csrf-token": csrf_of(page.text)},
        )
        assert allowed.status_code == 200
        # a bearer token is never sent by a browser on its own: no CSRF token needed
        bearer = await client.post(
            "/ops/api/dlq/purge",
            json={"items": [{"queue": "usage", "id": "x"}]},
            headers={"authorization": f"Bearer {TOKEN}"},
        )
        assert bearer.json() == {"action": "purge", "done": 0, "missing": 1}
        bad_body = await client.post(
            "/ops/api/dlq/purge", json={"items": []}, headers={"authorization": f"Bearer {TOKEN}"}
        )
        assert bad_body.status_code == 400


async def test_requeue_through_the_api_applies_a_dead_letter(
    conn, database_url, broker, worker, settings
):
    await make_balance_busy_dead_letter(
        conn, database_url, broker, worker, settings, "user_web", "web-1", credits=9, balance=30
    )
    headers = {"authorization": f"Bearer {TOKEN}"}
    async with client_for(settings, ops_token=SecretStr(TOKEN)) as client:
        overview = (await client.get("/ops/api/overview", headers=headers)).json()
        [letter] = overview["dead_letters"]
        assert (letter["queue"], letter["reason"], letter["events"]) == ("usage", "balance_busy", 1)
        assert "web-1" in letter["preview"]
        assert "balance_busy" in overview["dead_letter_reasons"]
        assert overview["health"]["level"] == "warn"
        filtered = (
            await client.get("/ops/api/overview?reason=insufficient_credits", headers=headers)
        ).json()
        assert filtered["dead_letters"] == []

        item = {"queue": letter["queue"], "id": letter["id"]}
        done = await client.post("/ops/api/dlq/requeue", json={"items": [item]}, headers=headers)
        assert done.json() == {"action": "requeue", "done": 1, "missing": 0}
        worker.drain()
        assert await balance(conn, "user_web") == 21
        again = await client.post("/ops/api/dlq/requeue", json={"items": [item]}, headers=headers)
        assert again.json()["done"] == 0
    assert dead_letters(settings).counts()["usage"] == 0
    assert await balance(conn, "user_web") == 21


async def test_the_waiting_panel_shows_reasons_and_ages_and_releases_and_drops(
    conn, broker, worker, settings
):
    make_waiting_event(broker, worker, "user_ww1", "ww-1")
    make_waiting_event(broker, worker, "user_ww2", "ww-2")
    await conn.execute(
        "UPDATE worker.waiting SET first_waited_at = now() - interval '3 hours' "
        "WHERE event_id = 'ww-1'"
    )
    bearer = {"authorization": f"Bearer {TOKEN}"}
    basic = "Basic " + base64.b64encode(BASIC.encode()).decode()
    async with client_for(
        settings, ops_token=SecretStr(TOKEN), ops_basic_auth=SecretStr(BASIC)
    ) as client:
        waiting = (await client.get("/ops/api/overview", headers=bearer)).json()["waiting"]
        assert waiting["total"] == 2 and 3 * 3600 <= waiting["oldest_s"] < 3 * 3600 + 60
        [reason] = waiting["by_reason"]
        assert (reason["reason"], reason["events"], reason["queues"]) == (
            "unknown_user", 2, {"usage": 2}
        )  # fmt: skip
        assert [e["event_id"] for e in waiting["oldest"]] == ["ww-1", "ww-2"]  # oldest first
        assert waiting["oldest"][0]["waits_for"] == "user:user_ww1"

        # the same CSRF rules as the dead-letter actions
        page = await client.get("/ops/", headers={"authorization": basic})
        body = {"event_ids": ["ww-1"]}
        refused = await client.post(
            "/ops/api/waiting/release", json=body, headers={"authorization": basic}
        )
        assert refused.status_code == 403
        released = await client.post(
            "/ops/api/waiting/release",
            json=body,
            headers={"authorization": basic, "x-csrf-token": csrf_of(page.text)},
        )
        assert released.json() == {"action": "release", "done": 1, "in_flight": 0, "missing": 0}
        await settle(worker, conn)  # its user still does not exist: it waits again
        assert await conn.fetchval(
            "SELECT times_waited FROM worker.waiting WHERE event_id = 'ww-1'"
        ) == 2

        post = lambda action, body: client.post(  # noqa: E731
            f"/ops/api/waiting/{action}", json=body, headers=bearer
        )
        assert (await post("drop", {"event_ids": ["ww-2"]})).status_code == 400  # no reason
        assert (await post("drop", {"event_ids": [], "reason": "x"})).status_code == 400
        assert (await post("park", {"event_ids": ["ww-2"]})).status_code == 404
        dropped = await post("drop", {"event_ids": ["ww-2"], "reason": "spam sign-up"})
        assert dropped.json() == {"action": "drop", "done": 1, "missing": 0}
        [rejection] = await rejections(conn, "ww-2")
        assert (rejection["reason"], rejection["detail"]) == (
            "dropped", "dropped by dashboard (bearer): spam sign-up"
        )  # fmt: skip
        again = await post("drop", {"event_ids": ["ww-2"], "reason": "spam sign-up"})
        assert again.status_code == 409 and again.json()["not_waiting"] == {"ww-2": "dropped"}
        missing = await post("release", {"event_ids": ["ww-2", "nope"]})
        assert missing.json() == {"action": "release", "done": 0, "in_flight": 0, "missing": 2}

        waiting = (await client.get("/ops/api/overview", headers=bearer)).json()["waiting"]
        assert waiting["total"] == 1 and [e["event_id"] for e in waiting["oldest"]] == ["ww-1"]


async def test_the_dashboard_reconciles_in_the_background(conn, settings):
    await make_user(conn, "user_r", credits=10)
    headers = {"authorization": f"Bearer {TOKEN}"}
    async with client_for(
        settings, ops_token=SecretStr(TOKEN), ops_reconcile_interval_s=60
    ) as client:
        for _ in range(200):
            reconcile = (await client.get("/ops/api/overview", headers=headers)).json()["ledger"][
                "reconcile"
            ]
            if reconcile:
                break
            await asyncio.sleep(0.05)
    assert reconcile is not None
    assert (reconcile["source"], reconcile["drift"], reconcile["checked"]) == ("dashboard", 0, 0)
