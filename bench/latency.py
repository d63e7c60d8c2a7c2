"""Publish→commit latency at a steady rate, one event per message (how the app publishes).

The rate is half of what (d) measured in the same run (a load the machine carries with room to
spare, whatever its speed), then 1,000/s, the fixed rate of the first targets, for continuity;
`--latency-rate` sets one rate instead.

The publisher is paced on a schedule (event n at t0 + n/rate) and records, per event id, the
wall-clock time just before `Publisher.publish`. The commit time is PostgreSQL's own record of
when the transaction that wrote the event's "UsageHistory" row committed
(`pg_xact_commit_timestamp(xmin)`, needs `track_commit_timestamp = on`, which the bench's
embedded server has). Both clocks are this machine's. On a server without commit timestamps the
bench falls back to `worker.event_log.processed_at`, the claiming transaction's start, which
under-states latency by the rest of that transaction; the report says which was used.
The first second is warm-up and left out of the percentiles.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from worker import db
from worker.publisher import Publisher

from .fleet import Fleet

WARMUP_S = 1.0

_COMMIT_TIMES = """
SELECT id, extract(epoch FROM pg_xact_commit_timestamp(xmin))::float8 AS t
FROM "UsageHistory" WHERE id = ANY($1::text[])
"""
_CLAIM_TIMES = """
SELECT event_id AS id, extract(epoch FROM processed_at)::float8 AS t
FROM worker.event_log WHERE event_id = ANY($1::text[])
"""


@dataclass
class LatencyResult:
    rate: int
    achieved_rate: float
    samples: int
    p50_ms: float
    p99_ms: float
    max_ms: float
    clock: str  # what "commit" means in this run
    basis: str = ""  # why this rate: "half of (d)'s …/s", "for continuity", "--latency-rate"


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    k = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[k]


def publish_paced(fleet: Fleet, events: list[dict[str, Any]], rate: int) -> tuple[dict[str, float], float]:
    publisher = Publisher(fleet.broker, batch_size=1, validate=False)
    published: dict[str, float] = {}
    start = time.time()
    for n, event in enumerate(events):
        target = start + n / rate
        while (now := time.time()) < target:
            time.sleep(min(target - now, 0.001))
        published[event["id"]] = time.time()
        publisher.publish(event)
    elapsed = time.time() - start
    return published, len(events) / elapsed if elapsed > 0 else float("inf")


async def commit_times(dsn: str, ids: list[str], commit_timestamps: bool) -> dict[str, float]:
    conn = await db.connect(dsn)
    try:
        rows = await conn.fetch(_COMMIT_TIMES if commit_timestamps else _CLAIM_TIMES, ids)
    finally:
        await conn.close()
    return {r["id"]: r["t"] for r in rows if r["t"] is not None}


def summarize(published: dict[str, float], committed: dict[str, float], rate: int, achieved: float,
              commit_timestamps: bool, basis: str = "") -> LatencyResult:  # fmt: skip
    start = min(published.values())
    latencies = sorted(
        (committed[i] - t) * 1000 for i, t in published.items() if t - start >= WARMUP_S and i in committed
    )
    clock = ("PostgreSQL commit timestamp of the row's transaction" if commit_timestamps
             else "worker.event_log.processed_at (transaction start: under-states latency)")  # fmt: skip
    return LatencyResult(
        rate=rate, achieved_rate=achieved, samples=len(latencies),
        p50_ms=percentile(latencies, 0.50), p99_ms=percentile(latencies, 0.99),
        max_ms=latencies[-1] if latencies else float("nan"), clock=clock, basis=basis,
    )  # fmt: skip
