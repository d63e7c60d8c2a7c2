"""Pure pieces of worker/ops: counter names, histograms, health, auth tokens, replay lines."""

from __future__ import annotations

import json
import time

import pytest
from pydantic import SecretStr

from worker.ops.auth import OpsAuth
from worker.ops.dlq import DeadLetter
from worker.ops.keys import LATENCY_BUCKETS_MS, bucket_of, canonical_queue
from worker.ops.recorder import bucket_label, field
from worker.ops.replay import events_of
from worker.ops.stats import health, histogram, parse_totals, quantile
from worker.ops.web import dev_dashboard_settings
from worker.settings import Settings


def test_counter_fields_round_trip_and_never_split_on_a_label():
    name = field("events", "usage", "rejected", "odd|reason")
    assert name == "events|usage|rejected|odd/reason"
    totals = parse_totals(
        {name.encode(): b"3", b"h|latency_ms|usage|250": b"2", b"h|latency_ms|usage|count": b"2"}
    )
    assert totals["events"] == {("usage", "rejected", "odd/reason"): 3}
    assert histogram(totals, "latency_ms") == {("usage",): {"250": 2, "count": 2}}


def test_buckets_and_quantiles():
    assert bucket_label(0, LATENCY_BUCKETS_MS) == "10"
    assert bucket_label(250, LATENCY_BUCKETS_MS) == "250"
    assert bucket_label(10**9, LATENCY_BUCKETS_MS) == "+Inf"
    buckets = {"10": 50, "100": 45, "1000": 5, "count": 100}
    assert quantile(buckets, LATENCY_BUCKETS_MS, 0.5) == 10
    assert quantile(buckets, LATENCY_BUCKETS_MS, 0.95) == 100
    assert quantile({}, LATENCY_BUCKETS_MS, 0.5) is None
    assert bucket_of(1_000_017.9) == 1_000_010
    assert canonical_queue("usage.DQ") == "usage" and canonical_queue("usage") == "usage"


def _view(workers=1, ready=0, dead=0, drift=0, failed=0.0):
    return {
        "workers": [{}] * workers,
        "queues": [{"ready": ready, "delayed": 0, "rates": {"failed": failed}}],
        "ledger": {"dead_lettered_now": dead, "reconcile": {"drift": drift} if drift else None},
    }


def test_health_headline():
    assert health(_view()) == {"level": "ok", "problems": []}
    assert health(_view(dead=2))["problems"] == ["2 dead-lettered messages"]
    assert (
        health(_view(workers=0))["level"] == "warn"
    )  # idle and no worker: look, but nothing waits
    assert health(_view(workers=0, ready=5))["level"] == "critical"  # events do not flow
    assert health(_view(drift=1))["level"] == "critical"


def test_sessions_and_csrf_tokens_are_signed_and_expire():
    auth = OpsAuth(Settings(ops_token=SecretStr("t0ken")))
    session = auth.new_session()
    assert "t0ken" not in session and auth._valid_session(session)
    assert not auth._valid_session(session[:-1] + ("0" if session[-1] != "0" else "1"))
    assert not auth._valid_session(auth.new_session(now=time.time() - 13 * 3600))
    other = OpsAuth(Settings(ops_token=SecretStr("rotated")))
    assert not other._valid_session(session)  # rotating the token logs everyone out
    from worker.ops.auth import Principal

    a, b = Principal("session", session), Principal("session", auth.new_session())
    assert auth.csrf_token(a) != auth.csrf_token(b) and len(auth.csrf_token(a)) == 64
    assert not OpsAuth(Settings()).configured


def test_dev_opens_the_dashboard_only_on_loopback_without_credentials():
    assert dev_dashboard_settings(Settings()).ops_allow_anonymous
    assert not dev_dashboard_settings(Settings(ingress_host="0.0.0.0")).ops_allow_anonymous
    assert not dev_dashboard_settings(Settings(ops_token=SecretStr("x"))).ops_allow_anonymous


def test_a_requeued_body_is_a_fresh_attempt():
    message = {
        "queue_name": "usage.DQ",
        "actor_name": "apply_usage_events",
        "args": [[{"id": "e"}]],
        "kwargs": {},
        "options": {
            "retries": 3,
            "traceback": "…",
            "eta": 1,
            "dead_letter_reason": "unknown_user",
            "dead_letter_detail": "x",
            "redis_message_id": "old",
            "published_at_ms": 5,
        },
        "message_id": "m-1",
        "message_timestamp": 1,
    }
    letter = DeadLetter("usage", "old", 0, json.dumps(message).encode(), message)
    body = json.loads(letter.requeued_body("new"))
    assert (
        body["queue_name"] == "usage"
        and body["message_id"] == "m-1"
        and body["args"] == [[{"id": "e"}]]
    )
    assert body["options"] == {"published_at_ms": 5, "redis_message_id": "new", "dlq_requeues": 1}


def test_replay_reads_events_and_exported_messages():
    event = {"type": "usage.recorded", "id": "e"}
    assert events_of(event) == [event]
    assert events_of({"queue": "usage", "message": {"args": [[event, event]]}}) == [event, event]
    assert events_of({"queue_name": "usage", "args": [[event]]}) == [event]
    with pytest.raises(ValueError):
        events_of({"hello": "world"})
    with pytest.raises(ValueError):
        events_of([1, 2])


def test_waiting_gauges_and_stats_lines_come_from_the_waiting_view():
    import redis
    from prometheus_client.parser import text_string_to_metric_families

    from worker.ops.metrics import render_metrics
    from worker.ops.waiting import text_lines

    class RedisDown:
        def heartbeats(self):
            raise redis.ConnectionError("down")

    view = {
        "total": 3, "oldest_s": 7260,
        "by_reason": [{"reason": "unknown_user", "events": 2, "oldest_s": 7260,
                       "queues": {"usage": 1, "billing": 1}},
                      {"reason": "no_cost", "events": 1, "oldest_s": 5, "queues": {"usage": 1}}],
        "by_queue_reason": [
            {"queue": "billing", "reason": "unknown_user", "events": 1, "oldest_s": 60},
            {"queue": "usage", "reason": "no_cost", "events": 1, "oldest_s": 5},
            {"queue": "usage", "reason": "unknown_user", "events": 1, "oldest_s": 7260},
        ],
    }  # fmt: skip
    def scrape(waiting):
        text = render_metrics(RedisDown(), waiting).decode()  # type: ignore[arg-type]
        return {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
        }

    samples = scrape(view)
    assert samples[("pedro_redis_up", ())] == 0  # Redis down: waiting is still served
    assert samples[("pedro_postgres_up", ())] == 1
    billing = (("queue", "billing"), ("reason", "unknown_user"))
    assert samples[("pedro_waiting_events", billing)] == 1
    assert samples[("pedro_waiting_oldest_seconds", (("reason", "unknown_user"),))] == 7260
    down = scrape({"error": "PostgreSQL unreachable (OSError)"})
    assert down[("pedro_postgres_up", ())] == 0
    assert not [name for name, _ in down if name.startswith("pedro_waiting")]
    assert ("pedro_postgres_up", ()) not in scrape(None)  # no DATABASE_URL: not served

    assert text_lines(view) == [
        "waiting: 3 event(s), oldest 2h01m",
        "  unknown_user                      2  oldest   2h01m  (billing: 1, usage: 1)",
        "  no_cost                           1  oldest      5s  (usage: 1)",
    ]
    assert text_lines({**view, "total": 0, "by_reason": []}) == ["waiting: none"]
    assert text_lines(None) == ["waiting: unknown (DATABASE_URL not set)"]
    assert text_lines({"error": "PostgreSQL unreachable (OSError)"}) == [
        "waiting: unknown (PostgreSQL unreachable (OSError))"
    ]
