"""Read what ops look at: queue depths, live workers, rates, ledger totals, the last reconcile.

Everything comes from Redis (dramatiq's keys and the counters `recorder.OpsStats` writes), in a
few pipelined round trips, so the dashboard, `/metrics` and `pedro-worker stats` can ask often.
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from typing import Any

import redis

from ..broker import QUEUES
from .keys import LATENCY_BUCKETS_MS, RATE_BUCKET_S, RATE_WINDOW_BUCKETS, Keys, bucket_of
from .recorder import SEP

RATE_FIELDS = ("processed", "failed", "retried", "dead")
LEDGER_RATE_FIELDS = ("applied", "duplicate", "rejected")
STALE_WORKER_MS = 10 * 60 * 1000  # registrations without a heartbeat for this long are dropped


@dataclass
class QueueStats:
    name: str
    ready: int = 0
    delayed: int = 0
    in_progress: int = 0
    dead: int = 0
    rates: dict[str, float] = field(default_factory=dict)  # per second over the last minute
    series: dict[str, list[int]] = field(default_factory=dict)  # per 10 s bucket, oldest first


@dataclass
class WorkerProcess:
    id: str
    host: str
    pid: int | None
    threads: int | None
    queues: list[str]
    started_ms: int | None
    heartbeat_ms: int
    processed: int


def _int(value: Any) -> int:
    return int(value) if value is not None else 0


def parse_totals(raw: dict[bytes, bytes]) -> dict[str, dict[tuple[str, ...], int]]:
    """`{b"events|usage|rejected|insufficient_credits": b"3"}` -> {"events": {(usage, rejected, …): 3}}."""
    out: dict[str, dict[tuple[str, ...], int]] = defaultdict(dict)
    for key, value in raw.items():
        kind, *labels = key.decode().split(SEP)
        out[kind][tuple(labels)] = int(value)
    return out


def histogram(
    totals: dict[str, dict[tuple[str, ...], int]], name: str
) -> dict[tuple[str, ...], dict[str, int]]:
    """One histogram's series: labels -> {"<bound>" | "+Inf" | "sum" | "count": n} (not cumulative)."""
    series: dict[tuple[str, ...], dict[str, int]] = defaultdict(dict)
    for labels, value in totals.get("h", {}).items():
        if labels and labels[0] == name:
            series[labels[1:-1]][labels[-1]] = value
    return series


def quantile(buckets: dict[str, int], bounds: tuple[int, ...], q: float) -> float | None:
    """Upper bound of the bucket holding the q-quantile (None when empty or beyond the last)."""
    count = buckets.get("count", 0)
    if not count:
        return None
    seen = 0
    for bound in bounds:
        seen += buckets.get(str(bound), 0)
        if seen >= q * count:
            return float(bound)
    return None


class StatsReader:
    def __init__(
        self,
        client: redis.Redis,
        namespace: str,
        *,
        heartbeat_timeout_ms: int,
        queues: tuple[str, ...] = QUEUES,
    ) -> None:
        self.client = client
        self.keys = Keys(namespace)
        self.heartbeat_timeout_ms = heartbeat_timeout_ms
        self.queues = queues

    def heartbeats(self) -> dict[str, int]:
        return {
            k.decode(): int(s)
            for k, s in self.client.zrange(self.keys.heartbeats, 0, -1, withscores=True)
        }

    def workers(self, heartbeats: dict[str, int], now_ms: int) -> tuple[list[WorkerProcess], int]:
        """Live worker processes (registered and heartbeating) and how many other live clients
        (publishers, the ingress) share the broker."""
        registered = {
            k.decode(): json.loads(v) for k, v in self.client.hgetall(self.keys.workers).items()
        }
        alive_after = now_ms - self.heartbeat_timeout_ms
        workers = [
            WorkerProcess(
                id=broker_id,
                host=info.get("host", "?"),
                pid=info.get("pid"),
                threads=info.get("threads"),
                queues=info.get("queues", []),
                started_ms=info.get("started_ms"),
                heartbeat_ms=heartbeats[broker_id],
                processed=_int(info.get("processed")),
            )
            for broker_id, info in registered.items()
            if heartbeats.get(broker_id, 0) >= alive_after
        ]
        stale = [
            b
            for b, info in registered.items()
            if max(heartbeats.get(b, 0), _int(info.get("seen_ms"))) < now_ms - STALE_WORKER_MS
        ]
        if stale:
            self.client.hdel(self.keys.workers, *stale)
        others = sum(1 for b, at in heartbeats.items() if at >= alive_after and b not in registered)
        return sorted(workers, key=lambda w: (w.host, w.pid or 0)), others

    def depths(self, broker_ids: list[str]) -> dict[str, QueueStats]:
        pipe = self.client.pipeline(transaction=False)
        for q in self.queues:
            pipe.llen(self.keys.ready(q))
            pipe.hlen(self.keys.delayed_messages(q))
            pipe.zcard(self.keys.dead(q))
            for broker_id in broker_ids:
                pipe.scard(self.keys.acks(broker_id, q))
        values = iter(pipe.execute())
        out: dict[str, QueueStats] = {}
        for q in self.queues:
            ready, delayed, dead = next(values), next(values), next(values)
            in_progress = sum(next(values) for _ in broker_ids)
            out[q] = QueueStats(q, ready=ready, delayed=delayed, in_progress=in_progress, dead=dead)
        return out

    def rate_buckets(self, now_s: float) -> list[tuple[int, dict[str, int]]]:
        last = bucket_of(now_s)
        starts = [last - RATE_BUCKET_S * i for i in range(RATE_WINDOW_BUCKETS - 1, -1, -1)]
        pipe = self.client.pipeline(transaction=False)
        for start in starts:
            pipe.hgetall(self.keys.rate(start))
        return [
            (start, {k.decode(): int(v) for k, v in raw.items()})
            for start, raw in zip(starts, pipe.execute())
        ]

    def totals(self) -> dict[str, dict[tuple[str, ...], int]]:
        return parse_totals(self.client.hgetall(self.keys.totals))

    def last_reconcile(self) -> dict[str, Any] | None:
        raw = self.client.get(self.keys.reconcile)
        return json.loads(raw) if raw else None


def _per_second(buckets: list[tuple[int, dict[str, int]]], name: str, now_s: float) -> float:
    """Rate over the last minute: the last 6 buckets (the newest is still filling)."""
    recent = buckets[-(60 // RATE_BUCKET_S) :]
    span = max(now_s - recent[0][0], 1.0)
    return round(sum(b.get(name, 0) for _, b in recent) / span, 2)


def overview(reader: StatsReader, *, now_s: float | None = None) -> dict[str, Any]:
    """Everything on the dashboard but the dead-letter list, JSON-ready."""
    now_s = now_s or time.time()
    now_ms = int(now_s * 1000)
    heartbeats = reader.heartbeats()
    workers, other_clients = reader.workers(heartbeats, now_ms)
    queues = reader.depths(list(heartbeats))
    buckets = reader.rate_buckets(now_s)
    totals = reader.totals()

    for q in queues.values():
        for name in RATE_FIELDS:
            key = f"{name}{SEP}{q.name}"
            q.series[name] = [b.get(key, 0) for _, b in buckets]
            q.rates[name] = _per_second(buckets, key, now_s)

    events = totals.get("events", {})
    by_outcome: dict[str, int] = defaultdict(int)
    rejected: dict[str, int] = defaultdict(int)
    retried: dict[str, int] = defaultdict(int)
    waited: dict[str, int] = defaultdict(int)
    for (_queue, outcome, reason), n in events.items():
        by_outcome[outcome] += n
        if outcome == "rejected":
            rejected[reason] += n
        elif outcome == "retry":
            retried[reason] += n
        elif outcome == "waiting":
            waited[reason] += n
    dead_by_reason: dict[str, int] = defaultdict(int)
    for (_queue, _actor, reason), n in totals.get("dead", {}).items():
        dead_by_reason[reason] += n
    merged_latency: dict[str, int] = defaultdict(int)
    for buckets_of_queue in histogram(totals, "latency_ms").values():
        for k, v in buckets_of_queue.items():
            merged_latency[k] += v
    batch = histogram(totals, "batch_size")
    batch_count = sum(b.get("count", 0) for b in batch.values())
    batch_sum = sum(b.get("sum", 0) for b in batch.values())

    ledger = {
        "applied": by_outcome["applied"],
        "duplicate": by_outcome["duplicate"],
        "rejected": sum(rejected.values()),
        "rejected_by_reason": dict(sorted(rejected.items(), key=lambda kv: -kv[1])),
        "retried_by_reason": dict(sorted(retried.items(), key=lambda kv: -kv[1])),
        # times events were found waiting (stored in worker.waiting), since counters began; what
        # waits now is the view's "waiting" (PostgreSQL, worker/ops/waiting.py)
        "waited_by_reason": dict(sorted(waited.items(), key=lambda kv: -kv[1])),
        "dead_lettered_by_reason": dict(sorted(dead_by_reason.items(), key=lambda kv: -kv[1])),
        "dead_lettered_now": sum(q.dead for q in queues.values()),
        "rates": {name: _per_second(buckets, name, now_s) for name in LEDGER_RATE_FIELDS},
        "series": {name: [b.get(name, 0) for _, b in buckets] for name in LEDGER_RATE_FIELDS},
        "latency_p50_ms": quantile(merged_latency, LATENCY_BUCKETS_MS, 0.5),
        "latency_p95_ms": quantile(merged_latency, LATENCY_BUCKETS_MS, 0.95),
        "batch_avg_events": round(batch_sum / batch_count, 1) if batch_count else None,
        "reconcile": reader.last_reconcile(),
    }
    result = {
        "now_ms": now_ms,
        "namespace": reader.keys.ns,
        "bucket_s": RATE_BUCKET_S,
        "queues": [asdict(q) for q in queues.values()],
        "workers": [asdict(w) for w in workers],
        "other_clients": other_clients,
        "ledger": ledger,
    }
    result["health"] = health(result)
    return result


def health(view: dict[str, Any]) -> dict[str, Any]:
    """A headline for the screen: ok, warn (needs a look) or critical (events do not flow)."""
    problems: list[tuple[str, str]] = []
    backlog = sum(q["ready"] + q["delayed"] for q in view["queues"])
    if not view["workers"]:
        problems.append(("critical" if backlog else "warn", "no live worker process"))
    dead = view["ledger"]["dead_lettered_now"]
    if dead:
        problems.append(("warn", f"{dead} dead-lettered message{'s' if dead != 1 else ''}"))
    reconcile = view["ledger"]["reconcile"]
    if reconcile and reconcile.get("drift"):
        problems.append(("critical", f"reconcile drift on {reconcile['drift']} balance(s)"))
    failing = sum(q["rates"].get("failed", 0) for q in view["queues"])
    if failing:
        problems.append(("warn", f"{failing:g} failures/s"))
    level = (
        "critical" if any(p[0] == "critical" for p in problems) else "warn" if problems else "ok"
    )
    return {"level": level, "problems": [p[1] for p in problems]}
