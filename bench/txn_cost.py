"""What one usage transaction costs, by its size: the worker's database path alone.

    .venv/bin/python -m bench.txn_cost                              # sizes 1,4,16,64,500
    .venv/bin/python -m bench.txn_cost --sizes 1,16 --pg-stat-statements

`apply_usage_batch` is the whole of what a worker does with a usage message once it has it: the
decided-events lookup, validation, the balance locks, the reads, `decide`, `write_ledger`, the
exact counters and the commit. Here it runs alone, on one connection, over batches of N new
events (bench/workload.py, uniform): no Redis, no dramatiq, no HTTP. For each size, on a fresh
copy of the bench's template (users with one legacy grant each, analyzed), after a warm-up: the
Python CPU (this process), the backend's CPU and the wall time per transaction and per event,
and each size's CPU per event against the largest size's, measured in the same run — what a
worker pays for events that arrive alone or in small groups ((d), (h), latency) rather than in
batch messages ((c)). With `--pg-stat-statements`: each statement's time and calls per
transaction, which also counts the round trips.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from dataclasses import dataclass

from worker import db
from worker.ledger.apply import OpenedUsers, apply_usage_batch
from worker.ledger.operation_types import OperationTypes
from worker.logs import configure_logging
from worker.settings import Settings

from . import servers as servers_module
from .cpu import tree_cpu
from .servers import BenchServers
from .workload import START_CREDITS, Workload

WARMUP_TRANSACTIONS = 30


@dataclass
class Cost:
    size: int
    transactions: int
    python_s: float
    backend_s: float
    wall_s: float

    def per_transaction_us(self, seconds: float) -> float:
        return seconds * 1e6 / self.transactions

    def per_event_us(self, seconds: float) -> float:
        return seconds * 1e6 / (self.transactions * self.size)


def transactions_for(size: int) -> int:
    return max(20, min(300, 30_000 // size))


def _backend_cpu(pid: int) -> float:
    """The backend's CPU seconds; NaN when it is not on this machine (a DATABASE_URL elsewhere)."""
    seconds = tree_cpu(pid)
    return float("nan") if seconds is None else seconds


async def measure(dsn: str, workload: Workload, size: int, *, statements: bool) -> Cost:
    settings = Settings()
    n = transactions_for(size)
    events = workload.events(f"t{size}", (WARMUP_TRANSACTIONS + n) * size, "uniform")
    batches = [events[i : i + size] for i in range(0, len(events), size)]
    conn = await db.connect(dsn, worker_planning=True)  # planned as the workers' pool plans (worker/db.py)
    try:
        backend = await conn.fetchval("SELECT pg_backend_pid()")
        opened, labels = OpenedUsers(), OperationTypes()
        for batch in batches[:WARMUP_TRANSACTIONS]:
            await apply_usage_batch(conn, batch, settings, opened=opened, labels=labels)
        if statements:
            await conn.execute("SELECT pg_stat_statements_reset()")
        cpu0, py0, wall0 = _backend_cpu(backend), time.process_time(), time.perf_counter()
        for batch in batches[WARMUP_TRANSACTIONS:]:
            await apply_usage_batch(conn, batch, settings, opened=opened, labels=labels)
        cost = Cost(size, n, time.process_time() - py0, _backend_cpu(backend) - cpu0, time.perf_counter() - wall0)
        if statements:
            await print_statements(conn, n)
        return cost
    finally:
        await conn.close()


async def print_statements(conn, transactions: int) -> None:
    rows = await conn.fetch(
        "SELECT calls, total_exec_time + total_plan_time AS ms, query FROM pg_stat_statements "
        "WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database()) "
        "AND query NOT LIKE '%pg_stat_statements%' ORDER BY 2 DESC")  # fmt: skip
    calls = sum(r["calls"] for r in rows) / transactions
    print(f"    {calls:.2f} statements (round trips) per transaction; PostgreSQL's time per transaction:")
    for r in rows[:10]:
        print(f"    {r['ms'] * 1000 / transactions:8.0f} us  {r['calls'] / transactions:5.2f} calls  "
              + " ".join(r["query"].split())[:80])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.txn_cost", description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default="1,4,16,64,500", help="events per transaction, comma-separated")
    p.add_argument("--users", type=int, default=10_000)
    p.add_argument("--seed", type=int, default=6)
    p.add_argument("--pg-stat-statements", action="store_true", help="each statement's time per transaction")
    p.add_argument("--pg-setting", action="append", default=[], metavar="NAME=VALUE",
                   help="a setting of the embedded PostgreSQL (e.g. synchronous_commit=off), repeatable")
    args = p.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",") if s]
    extra = dict(kv.split("=", 1) for kv in args.pg_setting)
    if args.pg_stat_statements:
        extra = {"shared_preload_libraries": "pg_stat_statements", **extra}
    servers_module.BENCH_PG_SETTINGS = {**servers_module.BENCH_PG_SETTINGS, **extra}
    configure_logging(Settings(log_level="WARNING"))  # not a line per transaction
    servers = BenchServers(Settings()).start()  # DATABASE_URL set: that server (as `pedro-worker bench`)
    workload = Workload(args.users, args.seed)
    costs: list[Cost] = []
    try:
        asyncio.run(servers.build_template(workload.clerk_ids, START_CREDITS))
        for size in sizes:
            dsn = asyncio.run(servers.new_database())
            if args.pg_stat_statements:
                asyncio.run(_create_extension(dsn))
            print(f"  {size} event(s) per transaction, {transactions_for(size)} transactions:")
            cost = asyncio.run(measure(dsn, workload, size, statements=args.pg_stat_statements))
            costs.append(cost)
            asyncio.run(servers.drop_database(dsn))
    finally:
        asyncio.run(servers.drop_all())
        servers.stop()
    print_table(costs)
    return 0


async def _create_extension(dsn: str) -> None:
    conn = await db.connect(dsn)
    try:
        await conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
    finally:
        await conn.close()


def print_table(costs: list[Cost]) -> None:
    base = max(costs, key=lambda c: c.size)
    base_us = base.per_event_us(base.python_s + base.backend_s)  # NaN without the backend's CPU
    print(f"\n{'events/txn':>10} {'python us/txn':>14} {'backend us/txn':>15} {'wall us/txn':>12} "
          f"{'python us/ev':>13} {'backend us/ev':>14} {'CPU/ev vs ' + str(base.size):>14}")  # fmt: skip
    for c in costs:
        cpu_us = c.per_event_us(c.python_s + c.backend_s)
        print(f"{c.size:>10} {c.per_transaction_us(c.python_s):>14,.0f} {c.per_transaction_us(c.backend_s):>15,.0f} "
              f"{c.per_transaction_us(c.wall_s):>12,.0f} {c.per_event_us(c.python_s):>13,.0f} "
              f"{c.per_event_us(c.backend_s):>14,.0f} {cpu_us / base_us:>13.2f}x")  # fmt: skip


if __name__ == "__main__":
    raise SystemExit(main())
