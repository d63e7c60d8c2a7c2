"""Run a database job without a queue: P processes × C connections, like the worker fleet.

Used by (a) the naive baseline (items are events), (b) the ceiling (items are batches given
to the project's `apply_usage_batch`) and (k) the write ceiling (items are batches with the users
whose opening they write, made rows before the clock starts: bench/ceiling.py). Items are dealt round-robin to the P×C lanes; each lane
works through its items one after the other on its own connection. The clock starts when every
process has connected (a barrier) and stops when the last lane finishes.
"""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import queue
import sys
import threading
import time
import traceback
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_START_TIMEOUT_S = 120


@dataclass
class LaneResult:
    seconds: float
    outcomes: Counter  # applied / duplicate / rejected / retry (ceiling); applied (baseline)
    lane_cpu: float  # CPU seconds of the lane processes while measured
    snapshots: tuple[Any, Any] = (None, None)  # `snapshot()` at start and end, if given


def run_lanes(
    job: str,
    dsn: str,
    items: list[Any],
    *,
    processes: int,
    connections: int,
    settings: Any,
    log_path: Path,
    timeout_s: float,
    snapshot: Callable[[], Any] | None = None,
    dealt: list[list[Any]] | None = None,
) -> LaneResult:
    """`dealt`: the items of each lane, already dealt (then `items` is ignored)."""
    ctx = mp.get_context("spawn")  # a clean interpreter, as a worker process has
    lanes = processes * connections
    if dealt is None:
        dealt = [items[n::lanes] for n in range(lanes)]
    elif len(dealt) != lanes:
        raise ValueError(f"{len(dealt)} dealt lanes for {processes} x {connections}")
    barrier = ctx.Barrier(processes + 1)
    done = ctx.Barrier(processes + 1)  # lanes keep their connections until the end is measured
    results = ctx.Queue()
    procs = []
    for p in range(processes):
        lanes_of_p = dealt[p * connections : (p + 1) * connections]
        args = (job, dsn, lanes_of_p, settings, str(log_path), barrier, done, results)
        procs.append(ctx.Process(target=_child, args=args, daemon=True))
    for proc in procs:
        proc.start()
    try:
        try:
            barrier.wait(timeout=_START_TIMEOUT_S)
        except threading.BrokenBarrierError:
            try:
                _, detail = results.get(timeout=5)
            except queue.Empty:
                detail = "a lane process did not start"
            raise RuntimeError(f"{job} lanes failed to start:\n{detail}") from None
        started = time.monotonic()
        first = snapshot() if snapshot else None
        finished: list[float] = []
        outcomes: Counter = Counter()
        lane_cpu = 0.0
        deadline = started + timeout_s
        while len(finished) < processes:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"{job}: lanes did not finish within {timeout_s:.0f}s")
            try:
                status, payload = results.get(timeout=min(remaining, 1.0))
            except queue.Empty:  # check that nobody died silently
                dead = [p for p in procs if p.exitcode not in (None, 0)]
                if dead:
                    raise RuntimeError(f"{job}: a lane process exited with {dead[0].exitcode}") from None
                continue
            if status != "ok":
                raise RuntimeError(f"{job} lane failed:\n{payload}")
            end, counts, cpu = payload
            finished.append(end)
            outcomes.update(counts)
            lane_cpu += cpu
        last = snapshot() if snapshot else None
        done.wait(timeout=_START_TIMEOUT_S)
        return LaneResult(max(finished) - started, outcomes, lane_cpu, (first, last))
    finally:
        for proc in procs:
            proc.join(10)
            if proc.is_alive():
                proc.kill()
                proc.join()


def _child(job, dsn, lanes, settings, log_path, barrier, done, results) -> None:
    sys.stderr = open(log_path, "a", buffering=1)
    try:
        asyncio.run(_child_main(job, dsn, lanes, settings, log_path, barrier, done, results))
    except BaseException:
        results.put(("error", traceback.format_exc()))
        barrier.abort()
        done.abort()


async def _child_main(job, dsn, lanes, settings, log_path, barrier, done, results) -> None:
    from worker import db
    from worker.logs import configure_logging
    configure_logging(settings)
    # (b) and (k) run as the worker's pool would plan; (a) is a plain ORM-style session
    conns = [await db.connect(dsn, worker_planning=job != "baseline") for _ in lanes]
    run_lane = _LANE_JOBS[job]
    if job == "copy":
        from .ceiling import prepare_lanes

        lanes = await prepare_lanes(conns, lanes)
    barrier.wait(timeout=_START_TIMEOUT_S)  # blocks the loop on purpose: nothing runs yet
    cpu_start = time.process_time()
    counts = await asyncio.gather(*(run_lane(conn, items, settings) for conn, items in zip(conns, lanes)))
    end = time.monotonic()
    results.put(("ok", (end, sum(counts, Counter()), time.process_time() - cpu_start)))
    done.wait(timeout=_START_TIMEOUT_S)
    for conn in conns:
        await conn.close()


async def _baseline_lane(conn, events, settings) -> Counter:
    from .baseline import apply_one

    for event in events:
        await apply_one(conn, event)
    return Counter(applied=len(events))


async def _ceiling_lane(conn, batches, settings) -> Counter:
    from worker.ledger.apply import OpenedUsers, apply_usage_batch
    from worker.ledger.operation_types import OperationTypes

    counts: Counter = Counter()
    opened, labels = OpenedUsers(), OperationTypes()  # as a worker process's coalescer has
    for batch in batches:
        result = await apply_usage_batch(conn, batch, settings, opened=opened, labels=labels)
        counts.update(o.status for o in result.outcomes)
    return counts


async def _copy_lane(conn, batches, settings) -> Counter:
    from .ceiling import copy_lane

    return await copy_lane(conn, batches, settings)


_LANE_JOBS = {"baseline": _baseline_lane, "ceiling": _ceiling_lane, "copy": _copy_lane}
