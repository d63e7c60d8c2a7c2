"""Prometheus `/metrics`, computed from Redis at scrape time.

Why not dramatiq's own `Prometheus` middleware: it keeps counters in prometheus_client's
multiprocess files on each worker host and serves them from a forked process on its own port,
so every worker container is a separate target, its counters vanish with the container, and the
in-process worker of `pedro-worker dev` has no exposition server at all. `recorder.OpsStats`
implements the same hooks and keeps the counters in Redis, so the web process answers for the
whole cluster. Its families keep dramatiq's names and labels (`dramatiq_messages_total`,
`dramatiq_message_errors_total`, `dramatiq_message_retries_total`,
`dramatiq_message_rejects_total`, `dramatiq_message_duration_milliseconds`,
`dramatiq_messages_inprogress`), so dashboards written for that middleware keep working; the
ledger's own families are `pedro_*`. Waiting events (`pedro_waiting_*`) live in PostgreSQL:
the web process reads them at scrape time too (`WaitingCollector`), as it reads the credits
about to expire (`CreditExpiryCollector`), the credit holds (`HoldsCollector`) and the
notifications' outbox (`NotificationsCollector`).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import redis
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from .keys import BATCH_SIZE_BUCKETS, DURATION_BUCKETS_MS, LATENCY_BUCKETS_MS
from .stats import StatsReader, histogram
from .outcomes import EXACT, usable

__all__ = ["CONTENT_TYPE_LATEST", "render_metrics"]


def _histogram(
    name: str,
    doc: str,
    labels: list[str],
    series: dict[tuple[str, ...], dict[str, int]],
    bounds: tuple[int, ...],
    scale: float = 1.0,
) -> HistogramMetricFamily:
    family = HistogramMetricFamily(name, doc, labels=labels)
    for label_values, buckets in sorted(series.items()):
        cumulative, points = 0, []
        for bound in bounds:
            cumulative += buckets.get(str(bound), 0)
            points.append((f"{bound * scale:g}", cumulative))
        points.append(("+Inf", buckets.get("count", 0)))
        family.add_metric(list(label_values), points, sum_value=buckets.get("sum", 0) * scale)
    return family


class RedisStatsCollector(Collector):
    def __init__(self, reader: StatsReader, exact: dict[tuple[str, str, str], int] | None = None) -> None:
        self.reader = reader
        self.exact = exact

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("pedro_redis_up", "1 if the broker's Redis answered this scrape.")
        try:
            families = list(self._families())
        except redis.RedisError:
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from families

    def _families(self) -> Iterator[Metric]:
        reader = self.reader
        now_ms = int(time.time() * 1000)
        heartbeats = reader.heartbeats()
        workers, others = reader.workers(heartbeats, now_ms)
        depths = reader.depths(list(heartbeats))
        totals = reader.totals()

        depth = GaugeMetricFamily(
            "pedro_queue_depth",
            "Messages waiting or running, per queue and state.",
            labels=["queue", "state"],
        )
        dead = GaugeMetricFamily(
            "pedro_dead_letters",
            "Dead-lettered messages kept in Redis, per queue.",
            labels=["queue"],
        )
        inprogress = GaugeMetricFamily(
            "dramatiq_messages_inprogress",
            "Messages fetched by workers and not yet acknowledged.",
            labels=["queue_name"],
        )
        for q in depths.values():
            depth.add_metric([q.name, "ready"], q.ready)
            depth.add_metric([q.name, "delayed"], q.delayed)
            depth.add_metric([q.name, "in_progress"], q.in_progress)
            dead.add_metric([q.name], q.dead)
            inprogress.add_metric([q.name], q.in_progress)
        yield from (depth, dead, inprogress)

        procs = GaugeMetricFamily(
            "pedro_worker_processes", "Live worker processes (broker heartbeats)."
        )
        procs.add_metric([], len(workers))
        clients = GaugeMetricFamily(
            "pedro_broker_clients", "Other live broker clients (publishers, ingress)."
        )
        clients.add_metric([], others)
        yield from (procs, clients)

        for kind, name, doc in (
            ("messages", "dramatiq_messages", "Messages processed (every attempt)."),
            ("errors", "dramatiq_message_errors", "Attempts that raised."),
            ("retries", "dramatiq_message_retries", "Attempts sent back with a backoff."),
        ):
            family = CounterMetricFamily(name, doc, labels=["queue_name", "actor_name"])
            for labels, n in sorted(totals.get(kind, {}).items()):
                family.add_metric(list(labels), n)
            yield family
        rejects = CounterMetricFamily(
            "dramatiq_message_rejects",
            "Messages dead-lettered.",
            labels=["queue_name", "actor_name"],
        )
        dead_total = CounterMetricFamily(
            "pedro_dead_lettered_messages",
            "Messages dead-lettered, by reason.",
            labels=["queue", "actor", "reason"],
        )
        by_actor: dict[tuple[str, str], int] = {}
        for (queue, actor, reason), n in sorted(totals.get("dead", {}).items()):
            dead_total.add_metric([queue, actor, reason], n)
            by_actor[(queue, actor)] = by_actor.get((queue, actor), 0) + n
        for labels, n in sorted(by_actor.items()):
            rejects.add_metric(list(labels), n)
        yield from (rejects, dead_total)

        events = CounterMetricFamily(
            "pedro_events",
            "Ledger outcomes per event: applied, duplicate, rejected, retry, waiting (by reason).",
            labels=["queue", "outcome", "reason"],
        )
        counted = totals.get("events", {})
        if self.exact is not None:  # PostgreSQL's exact totals (ops/outcomes.py); retries from Redis
            counted = {**{k: n for k, n in counted.items() if k[1] not in EXACT}, **self.exact}
        for labels, n in sorted(counted.items()):
            events.add_metric(list(labels), n)
        dead_events = CounterMetricFamily(
            "pedro_dead_lettered_events",
            "Events inside dead-lettered messages.",
            labels=["queue", "reason"],
        )
        for labels, n in sorted(totals.get("dead_events", {}).items()):
            dead_events.add_metric(list(labels), n)
        yield from (events, dead_events)

        yield _histogram(
            "dramatiq_message_duration_milliseconds",
            "Time spent processing a message.",
            ["queue_name", "actor_name"],
            histogram(totals, "duration_ms"),
            DURATION_BUCKETS_MS,
        )
        yield _histogram(
            "pedro_batch_size_events",
            "Events per message.",
            ["queue"],
            histogram(totals, "batch_size"),
            BATCH_SIZE_BUCKETS,
        )
        yield _histogram(
            "pedro_publish_to_commit_seconds",
            "From publish (message option published_at_ms) to the commit of its events.",
            ["queue"],
            histogram(totals, "latency_ms"),
            LATENCY_BUCKETS_MS,
            scale=0.001,
        )

        reconcile = reader.last_reconcile()
        if reconcile:
            for name, doc, value in (
                (
                    "pedro_reconcile_drift_balances",
                    "Balances that differ from opening + journal.",
                    reconcile["drift"],
                ),
                (
                    "pedro_reconcile_checked_balances",
                    "Balances the last reconcile checked.",
                    reconcile["checked"],
                ),
                (
                    "pedro_reconcile_timestamp_seconds",
                    "When the last reconcile finished.",
                    reconcile["at_ms"] / 1000,
                ),
            ):
                gauge = GaugeMetricFamily(name, doc)
                gauge.add_metric([], value)
                yield gauge


class WaitingCollector(Collector):
    """Durable waiting, read from PostgreSQL at scrape time (worker/ops/waiting.py): one cheap
    query over the partial index of open waiting rows."""

    def __init__(self, view: dict[str, Any]) -> None:
        self.view = view

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily(
            "pedro_postgres_up", "1 if PostgreSQL answered this scrape's waiting read."
        )
        up.add_metric([], 0 if "error" in self.view else 1)
        yield up
        if "error" in self.view:
            return
        events = GaugeMetricFamily(
            "pedro_waiting_events",
            "Events waiting in PostgreSQL (waiting or released, not yet applied), per queue and "
            "reason.",
            labels=["queue", "reason"],
        )
        for row in self.view["by_queue_reason"]:
            events.add_metric([row["queue"], row["reason"]], row["events"])
        oldest = GaugeMetricFamily(
            "pedro_waiting_oldest_seconds",
            "How long the oldest event still waiting for this reason has waited.",
            labels=["reason"],
        )
        for row in self.view["by_reason"]:
            oldest.add_metric([row["reason"]], row["oldest_s"])
        yield from (events, oldest)


class CreditExpiryCollector(Collector):
    """Credits about to expire, read from PostgreSQL at scrape time (worker/ops/grants.py): a
    range scan of the partial index of live grants with an expiry. No family when the read
    failed (`pedro_postgres_up` already says so)."""

    def __init__(self, view: dict[str, Any]) -> None:
        self.view = view

    def collect(self) -> Iterator[Metric]:
        if "error" in self.view:
            return
        expiring = self.view["expiring_7d"]
        for name, doc, value in (
            (
                "pedro_credits_expiring_7d",
                "Credits left in live grants that expire within the next 7 days.",
                expiring["credits"],
            ),
            (
                "pedro_credits_expiring_users_7d",
                "Users holding credits that expire within the next 7 days.",
                expiring["users"],
            ),
        ):
            gauge = GaugeMetricFamily(name, doc)
            gauge.add_metric([], value)
            yield gauge


def _gauges(*rows: tuple[str, str, float]) -> Iterator[Metric]:
    """One unlabelled gauge per (name, doc, value)."""
    for name, doc, value in rows:
        gauge = GaugeMetricFamily(name, doc)
        gauge.add_metric([], value)
        yield gauge


class HoldsCollector(Collector):
    """Credit holds, read from PostgreSQL at scrape time (worker/ops/holds.py): the partial
    indexes of open and of resolved holds. `pedro_holds_overdue` counts holds past their expiry
    that no sweep has released: it stays at 0 while the grant sweep runs (alert on it staying
    above 0, or on `pedro_holds_overdue_oldest_seconds`). No family when the read failed
    (`pedro_postgres_up` already says so)."""

    def __init__(self, view: dict[str, Any]) -> None:
        self.view = view

    def collect(self) -> Iterator[Metric]:
        if "error" in self.view:
            return
        v = self.view
        yield from _gauges(
            ("pedro_holds_open", "Holds placed and not resolved yet (overdue ones included).",
             v["open"]["holds"]),
            ("pedro_holds_open_credits", "Credits open holds keep out of the balances.",
             v["open"]["credits"]),
            ("pedro_holds_overdue", "Open holds past their expiry that no sweep has released yet.",
             v["overdue"]["holds"]),
            ("pedro_holds_overdue_oldest_seconds",
             "How long the earliest-expired overdue hold has been past its expiry (0: none).",
             v["overdue"]["oldest_s"] or 0),
            ("pedro_holds_expired_24h", "Holds that expired (released unused) in the last 24 hours.",
             v["resolved_24h"]["expired"]["holds"]),
        )  # fmt: skip
        resolved = GaugeMetricFamily(
            "pedro_holds_resolved_24h",
            "Holds resolved in the last 24 hours, per status: captured, released, expired.",
            labels=["status"],
        )
        for status, r in v["resolved_24h"].items():
            resolved.add_metric([status], r["holds"])
        yield resolved


class NotificationsCollector(Collector):
    """Notifications to the app, read from PostgreSQL at scrape time (worker/ops/notifications.py):
    the partial indexes of pending and of finished deliveries. The lag,
    `pedro_notifications_pending_oldest_seconds`, is how long ago the oldest notification still
    pending was written (alert on it staying above a few minutes: the dispatcher is down or an
    endpoint keeps failing).
    `pedro_notifications_failed` counts deliveries whose retries ran out and nobody redelivered
    (`pedro-worker notifications redeliver --failed`). No family when the read failed
    (`pedro_postgres_up` already says so)."""

    def __init__(self, view: dict[str, Any]) -> None:
        self.view = view

    def collect(self) -> Iterator[Metric]:
        if "error" in self.view:
            return
        v = self.view
        yield from _gauges(
            ("pedro_notifications_pending", "Notification deliveries not delivered yet (retries included).",
             v["pending"]["deliveries"]),
            ("pedro_notifications_pending_oldest_seconds",
             "How long ago the oldest notification still pending was written (0: none pending).",
             v["pending"]["oldest_s"] or 0),
            ("pedro_notifications_failed", "Deliveries failed for good (retries ran out), not redelivered.",
             v["failed"]["deliveries"]),
            ("pedro_notifications_failed_24h", "Deliveries that failed for good in the last 24 hours.",
             v["failed"]["last_24h"]),
        )  # fmt: skip
        delivered = GaugeMetricFamily(
            "pedro_notifications_delivered_24h",
            "Deliveries delivered in the last 24 hours, per notification type.",
            labels=["type"],
        )
        for notice_type, n in sorted(v["delivered_24h"].items()):
            delivered.add_metric([notice_type], n)
        yield delivered


def render_metrics(
    reader: StatsReader, waiting: dict[str, Any] | None = None,
    credits: dict[str, Any] | None = None, holds: dict[str, Any] | None = None,
    notifications: dict[str, Any] | None = None, outcomes: dict[str, Any] | None = None,
) -> bytes:  # fmt: skip
    """`waiting`: `ops.waiting.waiting_view`, `credits`: `ops.grants.expiry_view`, `holds`:
    `ops.holds.holds_view`, `notifications`: `ops.notifications.notifications_view` (None
    without a DATABASE_URL: no waiting, credit, hold or notification families); `outcomes`:
    `ops.outcomes.outcomes_view`, the exact `pedro_events_total` when PostgreSQL answered."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(RedisStatsCollector(reader, usable(outcomes)))
    if waiting is not None:
        registry.register(WaitingCollector(waiting))
    if credits is not None:
        registry.register(CreditExpiryCollector(credits))
    if holds is not None:
        registry.register(HoldsCollector(holds))
    if notifications is not None:
        registry.register(NotificationsCollector(notifications))
    return generate_latest(registry)
