"""Credit holds and the synchronous credit API (docs/ledger.md, "Holds"): over the real ingress
(uvicorn) on a real PostgreSQL, and the queue path on the real worker.

A hold takes its credits out of `"CreditBalance"` at once, in one transaction under the user's
balance lock, and resolves exactly once: captured (over HTTP or by a `usage.recorded` naming it),
released, or expired by the grant sweep.
"""

from __future__ import annotations

import asyncio
import json
import time
from datetime import timedelta
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from tests.integration.helpers import balance, make_user, refund, rejections, usage
from tests.integration.ingress.providers import API_TOKEN
from worker import clock
from worker.grant_sweep import sweep_due
from worker.ingress.server import IngressServer
from worker.ledger.apply import apply_usage_batch
from worker.ledger.decide import APPLIED, REJECTED
from worker.repo.reconcile import find_balance_drift
from worker.runner import InProcessWorker

AUTH = {"Authorization": f"Bearer {API_TOKEN}"}


@pytest.fixture(autouse=True)
def _clock():
    clock.reset()
    yield
    clock.reset()


@pytest.fixture
async def api(settings):
    """An async client on the real ingress."""
    with IngressServer(settings.model_copy(update={"api_tokens": [SecretStr(API_TOKEN)]})) as server:
        async with httpx.AsyncClient(base_url=server.url, headers=AUTH, timeout=20) as client:
            yield client


def hold(hold_id: str, clerk: str = "u", credits: int | None = 10, **more: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"id": hold_id, "clerkUserId": clerk, "operationType": "AI_TEXT_CHAT", **more}
    if credits is not None:
        body["credits"] = credits
    return body


async def movements(conn, hold_id: str) -> list[tuple[str, str, int]]:
    rows = await conn.fetch(
        "SELECT event_id, kind, delta FROM worker.journal WHERE event_id LIKE '%/' || $1 ORDER BY created_at, event_id",
        hold_id)  # fmt: skip
    return [tuple(r) for r in rows]


async def consistent(conn) -> None:
    """balance = opening + journal, and (for every user the worker touched) = Σ live grants."""
    assert await find_balance_drift(conn) == []
    drift = await conn.fetch(
        'SELECT cb."clerkUserId", cb."creditsRemaining", coalesce(sum(g.remaining), 0) AS grants '
        'FROM "CreditBalance" cb JOIN worker.balance_opening o ON o.user_id = cb."userId" '
        'LEFT JOIN worker.credit_grant g ON g.user_id = cb."userId" AND g.state = \'live\' '
        'GROUP BY 1, 2 HAVING cb."creditsRemaining" <> coalesce(sum(g.remaining), 0)')  # fmt: skip
    assert drift == []


# --- the acceptance ------------------------------------------------------------------------------


async def test_twenty_concurrent_holds_of_ten_on_a_hundred_exactly_ten_succeed(conn, api):
    await make_user(conn, "u", credits=100)
    answers = await asyncio.gather(*(api.post("/v1/holds", json=hold(f"h{n}")) for n in range(20)))
    statuses = sorted(a.status_code for a in answers)
    assert statuses == [201] * 10 + [402] * 10
    refused = [a.json() for a in answers if a.status_code == 402]
    assert all(r["error"] == "insufficient_credits" and r["available"] == 0 for r in refused)
    assert await balance(conn, "u") == 0
    placed = [a.json()["hold"]["id"] for a in answers if a.status_code == 201]
    for hold_id in placed:
        released = await api.post(f"/v1/holds/{hold_id}/release")
        assert released.status_code == 200 and released.json()["hold"]["status"] == "released"
    assert await balance(conn, "u") == 100
    assert (await api.get("/v1/users/u/balance")).json() | {"requestId": None} == {
        "remaining": 100, "held": 0, "available": 100, "waiting": 0, "requestId": None}  # fmt: skip
    await consistent(conn)


async def test_hold_fifty_capture_thirty_then_capture_again_and_release_change_nothing(conn, api):
    await make_user(conn, "u", credits=100)
    placed = await api.post("/v1/holds", json=hold("h1", credits=50))
    assert placed.status_code == 201
    body = placed.json()
    assert body["hold"]["status"] == "held" and body["hold"]["credits"] == 50
    assert body["balance"] == {"remaining": 50, "held": 50, "available": 50}
    captured = await api.post("/v1/holds/h1/capture", json={"credits": 30})
    assert captured.status_code == 200
    first = captured.json()
    assert first["hold"]["status"] == "captured" and first["hold"]["captured"] == 30
    assert first["balance"] == {"remaining": 70, "held": 0, "available": 70}
    assert await balance(conn, "u") == 70
    again = await api.post("/v1/holds/h1/capture", json={"credits": 30})
    assert again.status_code == 200 and again.headers["idempotent-replayed"] == "true"
    assert again.json()["hold"] == first["hold"] and again.json()["balance"] == first["balance"]
    release = await api.post("/v1/holds/h1/release")
    assert release.status_code == 200 and release.json()["hold"] == first["hold"]
    assert await balance(conn, "u") == 70
    assert await movements(conn, "h1") == [("hold/h1", "hold", -50), ("capture/h1", "capture", 20)]
    [row] = await conn.fetch('SELECT id, "creditsUsed", "operationType"::text AS op FROM "UsageHistory"')
    assert tuple(row) == ("h1", 30, "AI_TEXT_CHAT")
    await consistent(conn)


async def test_a_hold_that_expires_while_the_worker_is_down_is_released_once_it_starts(conn, api, broker, settings):
    await make_user(conn, "u", credits=100)
    assert (await api.post("/v1/holds", json=hold("h1", credits=40, ttlSeconds=1))).status_code == 201
    await asyncio.sleep(1.5)  # no worker: nothing sweeps
    assert await balance(conn, "u") == 60  # "CreditBalance" still without the credits…
    shown = (await api.get("/v1/users/u/balance")).json()
    assert (shown["remaining"], shown["held"], shown["available"]) == (100, 0, 100)  # …the API counts them back
    with InProcessWorker(broker, threads=1):
        deadline = time.monotonic() + 20
        while await balance(conn, "u") != 100 and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
    with InProcessWorker(broker, threads=1):  # a second start finds nothing to do
        await asyncio.sleep(1.5)
    assert await balance(conn, "u") == 100
    assert await movements(conn, "h1") == [("hold/h1", "hold", -40), ("release/h1", "release", 40)]
    assert await conn.fetchval("SELECT status FROM worker.credit_hold WHERE hold_id = 'h1'") == "expired"
    late = await api.post("/v1/holds/h1/capture", json={"credits": 10})
    assert late.status_code == 409 and late.json()["error"] == "hold_expired"
    await consistent(conn)


async def test_a_prisma_client_read_during_a_hold_shows_the_reduced_balance(conn, api, admin_database_url,
                                                                             prisma_reader):  # fmt: skip
    await make_user(conn, "u", credits=100)
    assert (await api.post("/v1/holds", json=hold("h1", credits=35))).status_code == 201
    [[during]] = await asyncio.to_thread(prisma_reader.read_many, admin_database_url,
                                         [{"model": "creditBalance", "where": {"clerkUserId": "u"}}])  # fmt: skip
    assert during["creditsRemaining"] == 65
    assert (await api.post("/v1/holds/h1/capture", json={"credits": 20})).status_code == 200
    [[after]] = await asyncio.to_thread(prisma_reader.read_many, admin_database_url,
                                        [{"model": "creditBalance", "where": {"clerkUserId": "u"}}])  # fmt: skip
    assert after["creditsRemaining"] == 80 and after["updatedAt"] > during["updatedAt"]


async def test_the_same_hold_id_posted_twice_concurrently_is_one_hold(conn, api):
    await make_user(conn, "u", credits=100)
    answers = await asyncio.gather(*(api.post("/v1/holds", json=hold("h1", credits=30)) for _ in range(8)))
    assert {a.status_code for a in answers} == {201}
    assert len({json.dumps(a.json()["hold"], sort_keys=True) for a in answers}) == 1
    assert await balance(conn, "u") == 70
    assert await conn.fetchval("SELECT count(*) FROM worker.credit_hold") == 1
    assert await movements(conn, "h1") == [("hold/h1", "hold", -30)]
    other = await api.post("/v1/holds", json=hold("h1", credits=31))
    assert other.status_code == 409 and other.json()["error"] == "idempotency_conflict"


async def test_the_same_hold_id_for_two_users_at_once_is_one_hold_and_a_conflict(conn, api):
    await make_user(conn, "u", credits=100)
    await make_user(conn, "v", credits=100)
    answers = await asyncio.gather(api.post("/v1/holds", json=hold("h1", "u")), api.post("/v1/holds", json=hold("h1", "v")))
    assert sorted(a.status_code for a in answers) == [201, 409]
    assert sorted([await balance(conn, "u"), await balance(conn, "v")]) == [90, 100]
    await consistent(conn)


# --- capture rules -------------------------------------------------------------------------------


async def test_capturing_more_than_held_follows_over_capture(conn, api):
    await make_user(conn, "u", credits=100)
    for hold_id, rule in (("over", "overflow"), ("cap", "cap"), ("rej", "reject")):
        assert (await api.post("/v1/holds", json=hold(hold_id, credits=10, overCapture=rule))).status_code == 201
    assert await balance(conn, "u") == 70
    overflow = await api.post("/v1/holds/over/capture", json={"credits": 25})
    assert overflow.json()["hold"]["captured"] == 25
    capped = await api.post("/v1/holds/cap/capture", json={"credits": 25})
    assert capped.json()["hold"]["captured"] == 10
    refused = await api.post("/v1/holds/rej/capture", json={"credits": 25})
    assert refused.status_code == 409 and refused.json()["error"] == "over_capture"
    assert refused.json()["held"] == 10 and refused.json()["requested"] == 25
    assert (await api.post("/v1/holds/rej/capture", json={"credits": 10})).status_code == 200  # still open
    assert await balance(conn, "u") == 100 - 25 - 10 - 10
    await consistent(conn)


async def test_overflow_may_take_the_balance_below_zero(conn, api):
    await make_user(conn, "u", credits=20)
    assert (await api.post("/v1/holds", json=hold("h", credits=20))).status_code == 201
    captured = await api.post("/v1/holds/h/capture", json={"credits": 50})
    assert captured.status_code == 200
    assert await balance(conn, "u") == -30
    assert captured.json()["balance"] == {"remaining": -30, "held": 0, "available": 0}
    await consistent(conn)


async def test_a_hold_by_operation_type_holds_its_cost(conn, api, settings):
    await make_user(conn, "u", credits=100)
    placed = await api.post("/v1/holds", json=hold("h", credits=None, operationType="AI_IMAGE_GENERATION"))
    assert placed.status_code == 201
    assert placed.json()["hold"]["credits"] == settings.default_feature_costs["AI_IMAGE_GENERATION"]
    unknown = await api.post("/v1/holds", json=hold("h2", credits=None, operationType="AI_VIDEO"))
    assert unknown.status_code == 422 and unknown.json()["error"] == "unknown_operation_type"


async def test_bad_requests_get_a_json_reason(conn, api):
    await make_user(conn, "u", credits=100)
    cases = [
        (hold("h", credits=None, operationType=None), 422, "validation_error"),
        (hold("h", ttlSeconds=86_401), 422, "validation_error"),
        (hold("h", credits="5"), 422, "validation_error"),
        (hold("h", clerk="nobody"), 404, "unknown_user"),
    ]
    for body, status, error in cases:
        answer = await api.post("/v1/holds", json=body)
        assert (answer.status_code, answer.json()["error"]) == (status, error), body
    assert (await api.post("/v1/holds/nope/capture")).status_code == 404
    unauthorized = await api.post("/v1/holds", json=hold("h"), headers={"Authorization": "Bearer wrong"})
    assert unauthorized.status_code == 401


async def test_a_busy_balance_answers_503_to_retry(conn, api, database_url, settings):
    from tests.integration.helpers import held_balance

    await make_user(conn, "u", credits=100)
    async with held_balance(database_url, "u"):
        answer = await api.post("/v1/holds", json=hold("h"))
    assert answer.status_code == 503 and answer.json()["error"] == "balance_busy"
    assert answer.headers["retry-after"] == "1"
    assert (await api.post("/v1/holds", json=hold("h"))).status_code == 201


# --- the queue path ------------------------------------------------------------------------------


async def test_a_usage_naming_its_hold_captures_it_exactly_once(conn, api, settings):
    await make_user(conn, "u", credits=100)
    assert (await api.post("/v1/holds", json=hold("h", credits=40))).status_code == 201
    event = usage("u", id="use-h", credits=25, holdId="h")
    result = await apply_usage_batch(conn, [event, event], settings)
    assert [o.status for o in result.outcomes] == [APPLIED, "duplicate"]
    assert (await apply_usage_batch(conn, [event], settings)).outcomes[0].status == "duplicate"
    assert await balance(conn, "u") == 75
    assert await movements(conn, "h") == [("hold/h", "hold", -40), ("capture/h", "capture", 15)]
    row = await conn.fetchrow("SELECT status, captured, usage_id, resolved_by FROM worker.credit_hold")
    assert tuple(row) == ("captured", 25, "use-h", "use-h")
    # a second usage naming it is refused (the hold resolved once), visibly
    second = await apply_usage_batch(conn, [usage("u", id="use-2", credits=5, holdId="h")], settings)
    assert (second.outcomes[0].status, second.outcomes[0].reason) == (REJECTED, "hold_already_captured")
    assert [r["reason"] for r in await rejections(conn, "use-2")] == ["hold_already_captured"]
    # the HTTP capture answers the first resolution
    assert (await api.post("/v1/holds/h/capture", json={"credits": 1})).json()["hold"]["captured"] == 25
    # a refund of the captured usage gives back to the grants the hold took from
    assert (await apply_usage_batch(conn, [refund("u", of="use-h", credits=25)], settings)).outcomes[0].status == APPLIED
    assert await balance(conn, "u") == 100
    await consistent(conn)


async def test_a_usage_captured_over_http_is_refunded_by_the_holds_id(conn, api, settings):
    await make_user(conn, "u", credits=100)
    await apply_usage_batch(conn, [adjust_with_expiry("u", 30)], settings)  # spent first (priority 1)
    assert (await api.post("/v1/holds", json=hold("h", credits=50))).status_code == 201
    assert (await api.post("/v1/holds/h/capture", json={"credits": 40})).status_code == 200
    taken = json.loads(await conn.fetchval("SELECT taken::text FROM worker.credit_hold WHERE hold_id = 'h'"))
    assert [d for _, d in taken] == [-30, -10]  # the promo first, then the legacy grant
    result = await apply_usage_batch(conn, [refund("u", of="h", id="r1", credits=15)], settings)
    assert result.outcomes[0].status == APPLIED
    back = json.loads(await conn.fetchval("SELECT grants::text FROM worker.journal WHERE event_id = 'r1'"))
    assert [d for _, d in back] == [10, 5]  # last taken first
    assert await balance(conn, "u") == 130 - 40 + 15
    await consistent(conn)


def adjust_with_expiry(clerk: str, delta: int) -> dict[str, Any]:
    return {"type": "credits.adjusted", "id": f"promo-{clerk}", "clerkUserId": clerk, "delta": delta,
            "reason": "promo", "priority": 1, "expiresAt": "2099-01-01T00:00:00Z"}  # fmt: skip


async def test_a_late_usage_naming_an_expired_hold_is_a_plain_usage(conn, api, settings):
    await make_user(conn, "u", credits=100)
    assert (await api.post("/v1/holds", json=hold("h", credits=40, ttlSeconds=60))).status_code == 201
    clock.advance(timedelta(seconds=61))
    result = await apply_usage_batch(conn, [usage("u", id="late", credits=25, holdId="h")], settings)
    assert result.outcomes[0].status == APPLIED
    assert await balance(conn, "u") == 75
    assert await movements(conn, "h") == [("hold/h", "hold", -40), ("release/h", "release", 40)]
    assert await conn.fetchval("SELECT status FROM worker.credit_hold") == "expired"
    assert await sweep_due(conn, settings) == (0, 0, 0, False)
    await consistent(conn)


async def test_a_usage_batch_releases_the_users_due_holds_before_it_decides(conn, api, settings):
    """The sweep may be behind (or have skipped a balance held elsewhere): a debit must not be
    refused, nor go into debt, for credits an expired hold no longer has a right to."""
    await make_user(conn, "u", credits=100)
    assert (await api.post("/v1/holds", json=hold("b", credits=90, ttlSeconds=60))).status_code == 201
    assert (await api.post("/v1/holds", json=hold("a", credits=5, ttlSeconds=3600))).status_code == 201
    clock.advance(timedelta(seconds=61))
    strict = settings.model_copy(update={"overdraft_policy": "reject"})
    result = await apply_usage_batch(conn, [usage("u", id="plain", credits=50)], strict)
    assert result.outcomes[0].status == APPLIED
    assert await movements(conn, "b") == [("hold/b", "hold", -90), ("release/b", "release", 90)]
    assert await balance(conn, "u") == 100 - 5 - 50
    assert await conn.fetchval("SELECT count(*) FROM worker.credit_grant WHERE source = 'overdraft'") == 0
    assert await sweep_due(conn, settings) == (0, 0, 0, False)
    await consistent(conn)


async def test_the_balance_read_counts_an_overdue_hold_as_the_sweep_will_leave_it(conn, api, settings):
    await make_user(conn, "u", credits=0)
    promo = {**adjust_with_expiry("u", 50), "expiresAt": (clock.now() + timedelta(seconds=60)).isoformat()}
    assert (await apply_usage_batch(conn, [promo], settings)).outcomes[0].status == APPLIED
    assert (await api.post("/v1/holds", json=hold("h", credits=20, ttlSeconds=30))).status_code == 201
    clock.advance(timedelta(seconds=45))  # the hold is past its expiry, its grant is not
    assert (await api.get("/v1/users/u/balance")).json()["available"] == 50
    clock.advance(timedelta(seconds=30))  # both past: the held credits go back to an ended grant
    shown = (await api.get("/v1/users/u/balance")).json()
    assert (shown["remaining"], shown["held"], shown["available"]) == (50, 0, 0)
    refused = await api.post("/v1/holds", json=hold("h2", credits=1))
    assert refused.status_code == 402 and refused.json()["available"] == 0
    await sweep_due(conn, settings)
    assert await balance(conn, "u") == 0
    await consistent(conn)


async def test_the_sweep_releases_due_holds_once(conn, api, settings):
    await make_user(conn, "u", credits=100)
    for n in range(3):
        assert (await api.post("/v1/holds", json=hold(f"h{n}", credits=10, ttlSeconds=60 * (n + 1)))).status_code == 201
    clock.advance(timedelta(seconds=121))
    assert (await sweep_due(conn, settings))[2] == 2
    assert (await sweep_due(conn, settings))[2] == 0
    assert await balance(conn, "u") == 90
    await consistent(conn)


async def test_movements_page_newest_first(conn, api, settings):
    await make_user(conn, "u", credits=100)
    await apply_usage_batch(conn, [usage("u", id=f"m{n}", credits=1) for n in range(5)], settings)
    await api.post("/v1/holds", json=hold("h", credits=3))
    first = (await api.get("/v1/users/u/movements", params={"limit": 4})).json()
    assert [m["kind"] for m in first["movements"]][0] == "hold"
    assert len(first["movements"]) == 4 and first["nextCursor"]
    rest = (await api.get("/v1/users/u/movements", params={"limit": 4, "cursor": first["nextCursor"]})).json()
    ids = [m["id"] for m in first["movements"] + rest["movements"]]
    assert len(ids) == len(set(ids)) == 6 and rest["nextCursor"] is None
    assert sum(m["credits"] for m in first["movements"] + rest["movements"]) == -8
    bad = await api.get("/v1/users/u/movements", params={"cursor": "garbage"})
    assert bad.status_code == 400
