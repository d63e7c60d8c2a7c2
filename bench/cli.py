"""Options of `pedro-worker bench` (argparse only, so building the CLI's parser stays cheap)."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PATHS = ("a", "a1", "b", "b_part", "k", "c", "c3", "cn", "cp", "d", "e", "f", "latency", "h", "i", "scale", "g")
OPT_IN = ("cp",)  # not in the default --paths: (cp) needs Debian's pgbouncer (--pgbouncer)

# (full, quick) defaults; an explicit option always wins.
_PRESETS: dict[str, tuple[Any, Any]] = {
    "events": (200_000, 10_000),
    "single_events": (40_000, 2_000),  # 20,000 (3-4 s for (d) and (e)) left (d)/(e) at the mercy of a second
    "latency_seconds": (15.0, 3.0),
    "scale_out": ("1,2,4", "1,2,4"),
    "scale_events": (50_000, 4_000),
    "holds_seconds": (10.0, 1.0),
    "healthz_seconds": (5.0, 1.0),
    "http_events": (10_000, 1_000),  # (h): ~10 s at the ~1k/s one ingress process gives on 2 cores
    "http_batch_events": (50_000, 5_000),  # (i)
}


@dataclass
class BenchOptions:
    events: int
    single_events: int
    users: int
    batch_size: int
    processes: int
    threads: int
    connections: int  # per process, for the paths without a queue (a, b)
    latency_rate: int | None  # None: half of (d)'s measured rate, and 1,000/s for continuity
    latency_seconds: float
    scale_out: list[int]
    scale_events: int
    distributions: list[str]
    paths: set[str]
    prefetch: int | None
    seed: int
    json_out: Path | None
    quick: bool
    worker_log_level: str
    keep_logs: bool
    holds_rates: list[int] = field(default_factory=lambda: [200, 1_000])  # (g) open-loop holds/s
    holds_seconds: float = 10.0  # (g) each closed-loop window and open-loop run
    holds_concurrency: list[int] = field(default_factory=lambda: [8, 32])  # (g) closed-loop connections
    holds_users: int = 1_000  # (g) users the holds are for (the first of the seeded ones)
    rounds: int = 2  # (c) and its variants (c3, cn) take turns over this many parts of the events
    http_connections: int = 32  # (h), (i) and their healthz: the client's keep-alive connections
    healthz_seconds: float = 5.0  # (h)'s GET /healthz closed loop
    http_events: int = 10_000  # (h): events, one per POST
    http_batch_events: int = 50_000  # (i): events, 100 per POST
    ceiling_connections: int | None = None  # (k) per process; None: the worker's transactions in flight
    extra: dict[str, Any] = field(default_factory=dict)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quick", action="store_true", help="small counts: every path, ~3 min on 2 cores")
    p.add_argument("--events", type=int, help="events for the batch paths (b), (c), (f) [200000; quick 10000]")
    p.add_argument("--single-events", type=int,
                   help="events for the per-event paths (a), (d), (e) [40000; quick 2000]")  # fmt: skip
    p.add_argument("--users", type=int, default=10_000, help="users seeded (default 10000)")
    p.add_argument("--batch-size", type=int, help="events per batch message (default: the publisher's)")
    p.add_argument("--processes", type=int, help="worker processes (default PEDRO_WORKER_PROCESSES)")
    p.add_argument("--threads", type=int, help="threads per worker process (default PEDRO_WORKER_THREADS)")
    p.add_argument("--connections", type=int,
                   help="connections per process for (a) and (b) (default: --threads)")  # fmt: skip
    p.add_argument("--ceiling-connections", type=int, help="connections per process for (k) (default: the "
                   "usage transactions a worker process keeps in flight, PEDRO_MICRO_BATCH_CONCURRENCY)")  # fmt: skip
    p.add_argument("--prefetch", type=int, help="messages each worker process prefetches (default PEDRO_WORKER_PREFETCH)")
    p.add_argument("--latency-rate", type=int,
                   help="events/s of the latency run (default: half of (d)'s measured rate, then 1,000/s "
                        "for continuity; 1,000/s alone without (d))")  # fmt: skip
    p.add_argument("--latency-seconds", type=float, help="length of the latency run [15; quick 3]")
    p.add_argument("--scale-out", help="worker process counts for the scale-out run, e.g. 1,2,4 ('' skips)")
    p.add_argument("--scale-events", type=int, help="distinct events per scale-out run [50000; quick 4000]")
    p.add_argument("--distributions", default="uniform,hot", help="uniform,hot (default both)")
    p.add_argument("--paths", default=",".join(p for p in PATHS if p not in OPT_IN),
                   help=f"what to measure, a subset of {','.join(PATHS)} (default all; b includes its "
                        "direct replay, f needs c; c3 is c with 3 grants per user, cn is c with a "
                        "notification endpoint and low-balance thresholds, cp is c through PgBouncer, each "
                        "measured in turns with c; "
                        "g is hold -> capture over HTTP next to GET /healthz; h and i are events through "
                        "POST /v1/events to their commit, 1 and 100 per request, next to GET /healthz, "
                        "on (d)'s fleet; k is the write ceiling: (c)'s rows by COPY, no queue)")  # fmt: skip
    p.add_argument("--pgbouncer", action="store_true",
                   help="add (cp): (c) through a PgBouncer in transaction mode (PEDRO_DATABASE_POOLER=transaction), "
                        "measured in turns with (c) direct; needs pgbouncer installed")  # fmt: skip
    p.add_argument("--rounds", type=int, default=2,
                   help="(c) with c3/cn: parts of the events they take turns over, the order reversed "
                        "from one part to the next (default 2: ABBA); more parts, less weight for "
                        "bursts of other load on a shared machine")  # fmt: skip
    p.add_argument("--holds-rates", default="200,1000", help="(g): open-loop holds/s, paced (default 200,1000)")
    p.add_argument("--holds-seconds", type=float, help="(g): each closed-loop window and open-loop run [10; quick 1]")
    p.add_argument("--holds-concurrency", default="8,32",
                   help="(g): client connections of the closed loops, healthz and hold->capture (default 8,32)")  # fmt: skip
    p.add_argument("--holds-users", type=int, default=1_000, help="(g): users the holds are for (default 1000)")
    p.add_argument("--http-events", type=int, help="(h): events, one per POST [10000; quick 1000]")
    p.add_argument("--http-batch-events", type=int, help="(i): events, 100 per POST [50000; quick 5000]")
    p.add_argument("--http-connections", type=int, default=32,
                   help="(h), (i): client keep-alive connections, and healthz's beside them (default 32)")  # fmt: skip
    p.add_argument("--healthz-seconds", type=float, help="(h): the GET /healthz closed loop [5; quick 1]")
    p.add_argument("--seed", type=int, default=6, help="random seed of the workload")
    p.add_argument("--json-out", type=Path, help="also write every figure to this JSON file")
    p.add_argument("--worker-log-level", default=None, help="log level of the workers (default: PEDRO_LOG_LEVEL)")
    p.add_argument("--keep-logs", action="store_true", help="keep the workers' log files and print where")


def options_from_args(args: argparse.Namespace, settings: Any) -> BenchOptions:
    from worker.publisher import DEFAULT_BATCH_SIZE

    def pick(name: str) -> Any:
        value = getattr(args, name)
        return value if value is not None else _PRESETS[name][1 if args.quick else 0]

    scale = pick("scale_out")
    threads = args.threads or settings.worker_threads
    distributions = [d.strip() for d in args.distributions.split(",") if d.strip()]
    for d in distributions:
        if d not in ("uniform", "hot"):
            raise SystemExit(f"unknown distribution {d!r} (uniform, hot)")
    paths = {x.strip() for x in args.paths.split(",") if x.strip()}
    if getattr(args, "pgbouncer", False):
        paths |= {"c", "cp"}
    if paths - set(PATHS):
        raise SystemExit(f"unknown paths {sorted(paths - set(PATHS))} (choose from {','.join(PATHS)})")
    return BenchOptions(
        events=pick("events"),
        single_events=pick("single_events"),
        users=args.users,
        batch_size=args.batch_size or DEFAULT_BATCH_SIZE,
        processes=args.processes or settings.worker_processes,
        threads=threads,
        connections=args.connections or threads,
        latency_rate=args.latency_rate,
        latency_seconds=pick("latency_seconds"),
        scale_out=[int(x) for x in scale.split(",") if x.strip()],
        scale_events=pick("scale_events"),
        distributions=distributions,
        paths=paths,
        prefetch=args.prefetch,
        seed=args.seed,
        json_out=args.json_out,
        quick=args.quick,
        worker_log_level=args.worker_log_level or settings.log_level,
        keep_logs=args.keep_logs,
        holds_rates=_ints(args.holds_rates, "--holds-rates"),
        holds_seconds=pick("holds_seconds"),
        holds_concurrency=_ints(args.holds_concurrency, "--holds-concurrency"),
        holds_users=min(args.holds_users, args.users),
        rounds=_ints(str(args.rounds), "--rounds")[0],  # a positive integer
        http_connections=_ints(str(args.http_connections), "--http-connections")[0],
        healthz_seconds=pick("healthz_seconds"),
        http_events=pick("http_events"),
        http_batch_events=pick("http_batch_events"),
        ceiling_connections=args.ceiling_connections,
    )


def _ints(text: str, option: str) -> list[int]:
    try:
        values = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise SystemExit(f"{option}: a comma-separated list of integers, not {text!r}") from None
    if any(v <= 0 for v in values):
        raise SystemExit(f"{option}: every value must be positive")
    return values


def run_bench_command(args: argparse.Namespace, settings: Any) -> int:
    """Entry point for `pedro-worker bench`. 0: every exactly-once check passed (performance
    targets may be missed: they are reported, not enforced); 1: a violation or a failed run."""
    from .run import main

    return main(options_from_args(args, settings), settings)
