"""Profile one end-to-end path: py-spy on every worker process + PostgreSQL wait events.

    .venv/bin/pip install py-spy        # profiling only, not a dependency of the project
    .venv/bin/python -m bench.profile c --events 100000 --out /tmp/pedro-profile
    .venv/bin/python -m bench.profile c --events 100000 --grants 3   # users with three live grants
    .venv/bin/python -m bench.profile c --events 100000 --notify     # (cn): notifications on
    .venv/bin/python -m bench.profile h --events 20000               # the ingress during (h)
    .venv/bin/python -m bench.profile h --events 20000 --workers     # the workers during (h)

Paths: c (batch messages), d (single-event messages), f (replay of batch messages), e (no-op
actor); h and i (events through POST /v1/events, 1 and 100 per request, bench/http_paths.py),
where the process profiled is the ingress, not the workers. Starts its own embedded servers and a worker fleet exactly as `pedro-worker bench` does,
records the stacks of the threads holding the GIL in every worker process with
`py-spy record --subprocesses --nonblocking --gil`
(folded-stack file, open it in speedscope or flamegraph.pl) while sampling `pg_stat_activity`
every 10 ms, then prints the hottest functions and what the database sessions were waiting on.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import signal
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path

import asyncpg

from worker.publisher import Publisher
from worker.settings import get_settings

from .cpu import CpuMeter
from .fleet import Fleet
from .http_paths import EVENTS_PER_POST, HttpRun
from . import notify
from .grants import lay_out_three_grants, three_grant_shares, used_by_user
from .noop import noop_message
from .servers import BenchServers
from .workload import START_CREDITS, Workload

_WAITS = """
SELECT state, wait_event_type, wait_event FROM pg_stat_activity
WHERE backend_type = 'client backend' AND pid <> pg_backend_pid() AND datname = current_database()
"""


def _sample_waits(dsn: str, stop: threading.Event, counts: Counter) -> None:
    async def run() -> None:
        conn = await asyncpg.connect(dsn)
        try:
            while not stop.is_set():
                for r in await conn.fetch(_WAITS):
                    counts[f"{r['state']} / {r['wait_event_type'] or '-'}:{r['wait_event'] or '-'}"] += 1
                await asyncio.sleep(0.01)
        finally:
            await conn.close()

    asyncio.run(run())


def summarize_folded(path: Path, top: int = 25) -> str:
    """Hottest functions of a py-spy folded-stack file: inclusive (on the stack) and self (leaf)."""
    inclusive: Counter = Counter()
    leaf: Counter = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = [f for f in stack.split(";")[2:] if f]  # drop the process and thread frames
        for frame in set(frames):
            inclusive[frame] += n
        if frames:
            leaf[frames[-1]] += n
    if not total:
        return "no samples"
    out = [f"{total:,} samples (on-CPU, all profiled processes)", "", "inclusive:"]
    out += [f"  {n / total:6.1%}  {f}" for f, n in inclusive.most_common(top)]
    out += ["", "self:"]
    out += [f"  {n / total:6.1%}  {f}" for f, n in leaf.most_common(top)]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__.split("\n")[0])
    parser.add_argument("path", choices=["c", "d", "f", "e", *EVENTS_PER_POST])
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--distribution", default="uniform", choices=["uniform", "hot"])
    parser.add_argument("--grants", type=int, default=1, choices=[1, 3],
                        help="live grants per user (bench/grants.py; 3: the events cross from one to the next)")
    parser.add_argument("--notify", action="store_true",
                        help="(cn): an endpoint and the bench's low-balance thresholds configured (bench/notify.py)")
    parser.add_argument("--processes", type=int)
    parser.add_argument("--threads", type=int)
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--rate", type=int, default=250, help="py-spy samples per second")
    parser.add_argument("--connections", type=int, default=32, help="h, i: the client's connections")
    parser.add_argument("--workers", action="store_true", help="h, i: profile the workers, not the ingress")
    parser.add_argument("--out", type=Path, default=Path("/tmp/pedro-profile"))
    args = parser.parse_args(argv)
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(py_spy).exists():
        print("py-spy is not installed: .venv/bin/pip install py-spy", file=sys.stderr)
        return 2

    settings = get_settings()
    args.out.mkdir(parents=True, exist_ok=True)
    servers = BenchServers(settings).start()
    workload = Workload(args.users, seed=6)
    fleet: Fleet | None = None
    http: HttpRun | None = None
    try:
        asyncio.run(servers.build_template(workload.clerk_ids, START_CREDITS))
        dsn = asyncio.run(servers.new_database())
        events = workload.events(f"p-{args.path}", args.events, args.distribution)
        if args.grants == 3:
            shares = three_grant_shares(workload.clerk_ids, used_by_user(events))
            asyncio.run(lay_out_three_grants(dsn, shares))
        module = "bench.noop_app" if args.path == "e" else "worker.app"
        env = notify.NOTIFY_OFF
        if args.notify:
            env = notify.fleet_env(notify.thresholds(used_by_user(events), workload.clerk_ids))
            print(f"PEDRO_NOTIFY_LOW_THRESHOLDS={env['PEDRO_NOTIFY_LOW_THRESHOLDS']}")
        fleet = Fleet(
            module, database_url=dsn, redis_url=servers.redis_url,
            processes=args.processes or settings.worker_processes, threads=args.threads or settings.worker_threads,
            settings=settings, log_path=args.out / "workers.log", log_level=settings.log_level, prefetch=None,
            env=env,
        ).start()  # fmt: skip
        batch_publisher = Publisher(fleet.broker, batch_size=args.batch_size, validate=False)
        single_publisher = Publisher(fleet.broker, batch_size=1, validate=False)
        chunks = [events[i : i + 5_000] for i in range(0, len(events), 5_000)]

        def publish() -> None:
            for chunk in chunks:
                if args.path in ("c", "f"):
                    batch_publisher.publish_many(chunk)
                elif args.path == "d":
                    single_publisher.publish_many(chunk)
                else:
                    single_publisher.enqueue_pipelined([noop_message(e) for e in chunk])

        if args.path == "f":  # apply once, unprofiled; the profiled run is the replay
            fleet.run(publish, 600)
        meter = CpuMeter(servers.postgres_pid, servers.redis_pid)
        if args.path in EVENTS_PER_POST:
            http = HttpRun(fleet, database_url=dsn, redis_url=servers.redis_url, log_path=args.out / "ingress.log",
                           log_level=settings.log_level, connections=args.connections, meter=meter,
                           timeout=lambda _: 600)  # fmt: skip
            http.ingress.start()
        profiled = http.ingress.pid if http and not args.workers else fleet.proc.pid

        folded = args.out / f"{args.path}.folded"
        spy = subprocess.Popen(
            [py_spy, "record", "--pid", str(profiled), "--subprocesses", "--nonblocking", "--gil",
             "--rate", str(args.rate), "--format", "raw", "--output", str(folded)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )  # fmt: skip
        stop, waits = threading.Event(), Counter()
        sampler = threading.Thread(target=_sample_waits, args=(dsn, stop, waits), daemon=True)
        sampler.start()
        asyncio.run(asyncio.sleep(1.0))  # let py-spy attach to every process
        if http is not None:
            seconds, use = http.post(events, EVENTS_PER_POST[args.path])
        else:
            before = meter.snapshot(fleet.proc.pid)
            seconds = fleet.run(publish, 600)
            use = meter.use(before, meter.snapshot(fleet.proc.pid), seconds, len(events))
        stop.set()
        spy.send_signal(signal.SIGINT)
        _, err = spy.communicate(timeout=60)
        sampler.join(5)

        print(f"path ({args.path}), {args.distribution}, {args.grants} grant(s) per user"
              f"{', notifications on' if args.notify else ''}: {len(events):,} events in {seconds:.2f}s "
              f"= {len(events) / seconds:,.0f}/s; {use.render()}")  # fmt: skip
        total = sum(waits.values())
        print("\nPostgreSQL sessions (share of samples):")
        for key, n in waits.most_common(8):
            print(f"  {n / total:6.1%}  {key}")
        print()
        print(summarize_folded(folded) if folded.exists() else f"py-spy wrote nothing: {err.decode()[-500:]}")
        print(f"\nfolded stacks: {folded}")
    finally:
        if http is not None:
            http.ingress.stop()
        if fleet is not None:
            fleet.stop()
        asyncio.run(servers.drop_all())
        servers.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
