"""/metrics and `pedro-worker stats`: numbers that move when the real worker applies events."""

from __future__ import annotations

import base64
import json
import re

import httpx
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr

from tests.integration.family_helpers import user_created
from tests.integration.helpers import adjust, make_user, refund, usage
from tests.integration.ops_helpers import (
    flush_stats,
    make_balance_busy_dead_letter,
    make_waiting_event,
)
from tests.integration.test_cli import pedro
from worker.credit_api import HoldRequest
from worker.domain import holds
from worker.ledger.operation_types import OperationTypes
from worker.notify.config import Endpoint
from worker.notify.notices import Notice
from worker.notify.outbox import record
from worker.ops.web import create_app
from worker.publisher import Publisher

TOKEN = "metrics-test-token-7f3a"


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Prometheus text -> {(sample name, sorted labels): value}; raises if it does not parse."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(scrape: dict, name: str, **labels: str) -> float:
    return scrape.get((name, tuple(sorted(labels.items()))), 0.0)


async def scrape(settings) -> dict:
    app = create_app(settings.model_copy(update={"ops_token": SecretStr(TOKEN)}))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://ops"
    ) as client:
        response = await client.get("/metrics", headers={"authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return samples(response.text)


async def test_metrics_parse_and_move_when_events_are_applied(
    conn, database_url, broker, worker, settings
):
    await make_user(conn, "user_m", credits=10)
    before = await scrape(settings)
    assert value(before, "pedro_redis_up") == 1 and value(before, "pedro_postgres_up") == 1
    assert value(before, "pedro_queue_depth", queue="usage", state="ready") == 0
    assert not [name for name, _ in before if name.startswith("pedro_waiting_")]  # none waits

    applied = [usage("user_m", id=f"m-{n}", credits=2) for n in range(3)]
    too_much = refund("user_m", of="m-0", id="m-refund", credits=50)
    Publisher(broker).publish_many(
        [*applied, applied[0], too_much, user_created("user_new_m")]
    )
    worker.drain()
    make_waiting_event(broker, worker, "user_nobody", "m-orphan")  # waits in PostgreSQL
    await make_balance_busy_dead_letter(conn, database_url, broker, worker, settings,
                                        "user_busy", "m-busy")  # fmt: skip
    flush_stats(broker)
    after = await scrape(settings)

    events = "pedro_events_total"
    assert value(after, events, queue="usage", outcome="applied", reason="") == 3
    assert value(after, events, queue="usage", outcome="duplicate", reason="") == 1
    assert value(after, events, queue="users", outcome="applied", reason="") == 1
    assert (
        value(after, events, queue="usage", outcome="rejected", reason="refund_exceeds_usage") == 1
    )
    # found waiting once, stored, acknowledged: never retried
    assert value(after, events, queue="usage", outcome="waiting", reason="unknown_user") == 1
    assert value(after, events, queue="usage", outcome="retry", reason="unknown_user") == 0
    # a held row is a passing condition: retried until the retries ran out
    assert (
        value(after, events, queue="usage", outcome="retry", reason="balance_busy")
        == settings.max_retries + 1
    )
    assert value(after, "pedro_waiting_events", queue="usage", reason="unknown_user") == 1
    assert 0 <= value(after, "pedro_waiting_oldest_seconds", reason="unknown_user") < 60
    assert value(after, "pedro_dead_letters", queue="usage") == 1
    assert (
        value(
            after,
            "pedro_dead_lettered_messages_total",
            queue="usage",
            actor="apply_usage_events",
            reason="balance_busy",
        )
        == 1
    )
    labels = {"queue_name": "usage", "actor_name": "apply_usage_events"}
    # counted once per delivery, though the settler finishes them after the actor returned:
    # the batch message, the orphan's one delivery, then the busy one's first delivery and retries
    deliveries = 2 + settings.max_retries + 1
    counted = value(after, "dramatiq_messages_total", **labels)
    assert counted - value(before, "dramatiq_messages_total", **labels) == deliveries
    assert value(after, "dramatiq_message_retries_total", **labels) == settings.max_retries
    assert value(after, "dramatiq_message_rejects_total", **labels) == 1
    assert value(after, "dramatiq_message_duration_milliseconds_count", **labels) >= 3
    assert value(after, "pedro_publish_to_commit_seconds_count", queue="usage") >= 1
    assert value(after, "pedro_batch_size_events_bucket", queue="usage", le="5") == deliveries
    assert value(after, "pedro_worker_processes") >= 1
    for queue in ("usage", "users", "billing", "storage"):
        assert ("pedro_queue_depth", (("queue", queue), ("state", "delayed"))) in after


async def test_metrics_need_auth_unless_public(settings):
    app = create_app(settings.model_copy(update={"ops_token": SecretStr(TOKEN)}))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://ops"
    ) as client:
        assert (await client.get("/metrics")).status_code == 401
        assert (
            await client.get("/metrics", headers={"authorization": "Bearer wrong"})
        ).status_code == 401
    public = create_app(settings.model_copy(update={"ops_metrics_public": True}))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=public), base_url="http://ops"
    ) as client:
        response = await client.get("/metrics")
    assert response.status_code == 200 and value(samples(response.text), "pedro_redis_up") == 1


async def test_stats_and_reconcile_commands(conn, broker, worker, settings):
    await make_user(conn, "user_s", credits=100)
    Publisher(broker).publish_many([usage("user_s", credits=5), adjust("user_s", 20)])
    worker.drain()
    make_waiting_event(broker, worker, "user_not_yet", "s-wait")
    await conn.execute(  # it has waited two hours
        "UPDATE worker.waiting SET first_waited_at = now() - interval '2 hours' "
        "WHERE event_id = 's-wait'"
    )
    flush_stats(broker)
    env = {
        "database_url": settings.require_database_url(),
        "redis_url": settings.require_redis_url(),
        "PEDRO_REDIS_NAMESPACE": settings.redis_namespace,
    }

    reconciled = pedro("reconcile", **env)
    assert reconciled.returncode == 0 and "1 balances checked, 0 with drift" in reconciled.stdout
    stats = pedro("stats", "--json", **env)
    assert stats.returncode == 0, stats.stderr
    view = json.loads(stats.stdout)
    assert view["ledger"]["applied"] == 2
    assert view["ledger"]["reconcile"]["checked"] == 1 and view["ledger"]["reconcile"]["drift"] == 0
    assert [w["pid"] for w in view["workers"]]  # this test's in-process worker, by its heartbeat
    waiting = view["waiting"]
    by_reason = [(r["reason"], r["events"], r["queues"]) for r in waiting["by_reason"]]
    assert (waiting["total"], by_reason) == (1, [("unknown_user", 1, {"usage": 1})])
    assert 7200 <= waiting["oldest_s"] < 7300
    assert view["ledger"]["waited_by_reason"] == {"unknown_user": 1}
    text = pedro("stats", **env)
    assert text.returncode == 0 and "usage" in text.stdout and "applied=2" in text.stdout
    assert "waiting: 1 event(s), oldest 2h00m" in text.stdout
    [line] = [line.split() for line in text.stdout.splitlines() if "unknown_user" in line]
    assert line == ["unknown_user", "1", "oldest", "2h00m", "(usage:", "1)"]
    no_db = pedro("stats", **{**env, "database_url": ""})  # Redis figures only
    assert no_db.returncode == 0 and "waiting: unknown (DATABASE_URL not set)" in no_db.stdout
    assert "\nholds: unknown (DATABASE_URL not set)\n" in no_db.stdout
    assert "\nnotifications: unknown (DATABASE_URL not set)\n" in no_db.stdout
    down = pedro("stats", database_url="", redis_url="redis://127.0.0.1:1/0")
    assert down.returncode == 1 and "redis unreachable" in down.stderr


async def test_stats_shows_open_and_overdue_holds_and_pending_and_failed_notifications(
    conn, settings
):
    """No worker runs here: its grant sweep would release the overdue hold."""
    await make_user(conn, "user_h", credits=100)
    for hold_id, credits in (("h-open", 10), ("h-late", 5)):
        request = HoldRequest(id=hold_id, clerkUserId="user_h", credits=credits,
                              operationType="AI_TEXT_CHAT", ttlSeconds=900)  # fmt: skip
        answer = await holds.place(conn, request, settings, OperationTypes())
        assert answer.status == 201, answer
    await conn.execute(  # past its expiry for 5 minutes, and no sweep released it
        "UPDATE worker.credit_hold SET expires_at = now() - interval '5 minutes' "
        "WHERE hold_id = 'h-late'"
    )
    secret = "whsec_" + base64.b64encode(b"s" * 32).decode()
    app = Endpoint(name="app", url="http://127.0.0.1:9/hooks", secret=SecretStr(secret))
    notifying = settings.model_copy(update={"notify_endpoints": [app]})
    notices = [Notice(f"credits.low/user_h/{n}", "credits.low", "user_h", {"clerkUserId": "user_h"})
               for n in (1, 2)]  # fmt: skip
    assert await record(conn, notifying, notices) == 2
    await conn.execute(  # the first, written 10 minutes ago, is still pending; the second failed
        "UPDATE worker.notification SET created_at = now() - interval '10 minutes' "
        "WHERE key = 'credits.low/user_h/1'"
    )
    await conn.execute(
        "UPDATE worker.notification_delivery d SET status = 'failed', attempts = 8, "
        "last_attempt_at = now(), last_status = 503, failed_at = now() FROM worker.notification n "
        "WHERE d.seq = n.seq AND n.key = 'credits.low/user_h/2'"
    )
    env = {
        "database_url": settings.require_database_url(),
        "redis_url": settings.require_redis_url(),
        "PEDRO_REDIS_NAMESPACE": settings.redis_namespace,
        "PEDRO_NOTIFY_ENDPOINTS": json.dumps(
            [{"name": "app", "url": app.url, "secret": secret}]
        ),
    }

    stats = pedro("stats", "--json", **env)
    assert stats.returncode == 0, stats.stderr
    view = json.loads(stats.stdout)
    assert view["holds"]["open"] == {"holds": 2, "credits": 15}
    assert view["holds"]["overdue"]["holds"] == 1
    assert 300 <= view["holds"]["overdue"]["oldest_s"] < 360
    notifications = view["notifications"]
    assert notifications["enabled"] and notifications["pending"]["deliveries"] == 1
    assert 600 <= notifications["pending"]["oldest_s"] < 660
    assert notifications["failed"]["deliveries"] == 1

    text = pedro("stats", **env)
    assert text.returncode == 0, text.stderr
    assert re.search(
        r"\nholds: 2 open \(15 credits held\), 1 overdue, the oldest 5m\d\ds past its expiry\n",
        text.stdout,
    ), text.stdout
    assert re.search(r"\nnotifications: 1 pending, oldest 10m\d\ds, 1 failed\n", text.stdout), (
        text.stdout
    )
    off = pedro("stats", **{**env, "PEDRO_NOTIFY_ENDPOINTS": ""})  # nothing would deliver them
    assert re.search(r"\nnotifications: 1 pending, oldest 10m\d\ds, 1 failed "
                     r"\(off: no endpoint configured\)\n", off.stdout), off.stdout  # fmt: skip


async def test_the_grafana_dashboard_only_queries_metrics_we_expose(
    conn, database_url, broker, worker, settings
):
    import redis

    from worker.ops.reconcile import ReconcileReport, store
    from worker.settings import ROOT

    await make_user(conn, "user_g")
    Publisher(broker).publish_many([usage("user_g", id="g-1"), usage("user_nobody_g", id="g-2")])
    worker.drain()  # g-2 waits for its user
    await make_balance_busy_dead_letter(  # retried, then dead-lettered
        conn, database_url, broker, worker, settings, "user_busy_g", "g-3"
    )
    flush_stats(broker)
    store(
        redis.Redis.from_url(settings.require_redis_url()),
        settings.redis_namespace,
        ReconcileReport(),
        "cli",
    )
    exposed = {name for name, _labels in await scrape(settings)}
    dashboard = json.loads(
        (ROOT / "deploy" / "grafana" / "dashboards" / "pedro-worker.json").read_text()
    )
    panels = [  # a row holds its panels only while collapsed; it queries nothing itself
        panel
        for top in dashboard["panels"]
        for panel in [top, *top.get("panels", [])]
    ]
    queried = {
        name
        for panel in panels
        for target in panel.get("targets", [])
        for name in re.findall(r"\b(?:pedro|dramatiq)_[a-z0-9_]+", target["expr"])
    }
    assert queried and queried <= exposed, queried - exposed
    for family in ("pedro_holds_resolved_24h", "pedro_notifications_delivered_24h",
                   "pedro_credits_expiring_7d"):  # fmt: skip
        assert family in queried  # names with digits are read whole
    taken: set[tuple[int, int]] = set()
    for panel in dashboard["panels"]:  # Grafana would push overlapping panels around
        g = panel["gridPos"]
        xs, ys = range(g["x"], g["x"] + g["w"]), range(g["y"], g["y"] + g["h"])
        cells = {(x, y) for x in xs for y in ys}
        assert g["x"] + g["w"] <= 24 and not cells & taken, panel["title"]
        taken |= cells
