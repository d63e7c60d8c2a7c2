"""(g) Holds over HTTP: hold -> capture through the ingress, next to GET /healthz.

The ingress runs in its own process, as `pedro-worker ingress` runs it (`serve` below: the same
uvicorn config, `worker/ingress/server.py`), on a copy of the bench's template database; the
load generator is the bench process, a minimal HTTP/1.1 client on raw asyncio streams with
keep-alive connections (~55 µs of CPU per request here; httpx.AsyncClient ~1.1 ms, which would
make the client what is measured).
Each hold is `POST /v1/holds` {id, clerkUserId, credits 1-10, operationType, ttlSeconds}, then,
on its 201, `POST /v1/holds/{id}/capture` {credits: 1..held} on the same connection.

- **closed loop**, at each concurrency: that many connections, each sending its next request as
  soon as the previous answer is in, for `seconds` after a short warm-up. First GET /healthz
  (the floor of the HTTP stack: uvicorn, Starlette, the request-id middleware and its log line,
  nothing else), then hold -> capture pairs, with the same client and connections.
- **open loop**, at each rate: hold n is due at t0 + n/rate whatever happened before (paced
  arrivals); its latency is counted from that due time, so a queue in front of the ingress (a
  busy connection, a backlog) shows in the figure instead of slowing the arrivals
  (coordinated omission). Arrivals in the first second (quarter, for short runs) are warm-up.
  Once more than MAX_BACKLOG_S of arrivals wait unanswered the arrivals stop (`saturated`).
- after the warm-up, `ANALYZE` of the tables the holds write (`_analyze`): the template was
  analyzed while worker.credit_hold was empty, and the ingress's generic plans made from those
  statistics read the whole table on every call (docs/performance.md, "Holds over HTTP").

Afterwards every hold placed must be captured, every balance must be its start minus what was
captured, `find_balance_drift` and `find_grant_drift` empty, and "UsageHistory" one row per
capture (`verify_holds`). Any answer other than 201/200 fails the run: the users have plenty of
credits.

Standalone, for experiments (`python -m bench.holds run --help`): the same measurements with the
ingress served by httptools/uvloop (`--pythonpath`), at another log level, profiled with cProfile,
counting its SQL statements, or with PostgreSQL's time per statement (pg_stat_statements).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import signal
import sys
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from worker import db
from worker.repo.reconcile import find_balance_drift, find_grant_drift
from worker.repo.users import get_balances

from .cpu import CpuMeter, CpuUse
from .fleet import IngressProcess
from .latency import percentile
from .verify import ExactlyOnceViolation
from .workload import HOT_SHARE, START_CREDITS

TOKEN = "bench-holds-token"
OPERATION = "AI_TEXT_CHAT"
TTL_SECONDS = 600
OPEN_LOOP_CONNECTIONS = 64  # the open loop's client connections (a hold waits for a free one)
WARMUP_S = 1.0
MAX_BACKLOG_S = 1.0  # an open loop stops its arrivals once this many seconds of them are unanswered


# --- the ingress in its own process ----------------------------------------------------------------


def ingress_process(*, database_url: str, redis_url: str, log_path: Path, log_level: str, http: str = "auto",
                    loop: str = "auto", profile: Path | None = None, count_queries: Path | None = None,
                    pythonpath: str | None = None, pool_size: int | None = None,
                    namespace: str | None = None) -> IngressProcess:  # fmt: skip
    """`python -m bench.holds serve` (what `pedro-worker ingress` runs, plus experiment knobs) in
    its own process (bench/fleet.py's IngressProcess). `namespace`: the Redis namespace it
    enqueues into (a worker fleet's, for (h) and (i)); a fresh one by default."""
    argv = [sys.executable, "-m", "bench.holds", "serve", "--http", http, "--loop", loop]
    if profile:
        argv += ["--profile", str(profile)]
    if count_queries:
        argv += ["--count-queries", str(count_queries)]
    env = {
        **os.environ,
        "DATABASE_URL": database_url, "PEDRO_DATABASE_URL": database_url,
        "REDIS_URL": redis_url, "PEDRO_REDIS_URL": redis_url,
        "PEDRO_REDIS_NAMESPACE": namespace or f"pedro-bench-{uuid.uuid4().hex[:10]}", "PEDRO_LOG_LEVEL": log_level,
    }  # fmt: skip
    if pool_size:
        env["PEDRO_INGRESS_POOL_MAX_SIZE"] = str(pool_size)
    if pythonpath:  # e.g. a directory with httptools and uvloop, not in the project's venv
        env["PYTHONPATH"] = os.pathsep.join(p for p in (pythonpath, env.get("PYTHONPATH")) if p)
    return IngressProcess(env, log_path, TOKEN, argv=argv)


def serve(args: argparse.Namespace) -> None:
    """The ingress as `pedro-worker ingress` serves it (worker/ingress/server.py's uvicorn config),
    with the HTTP parser and event loop named (`auto`: what uvicorn picks, httptools and uvloop
    when importable), optionally under cProfile or counting every SQL statement it sends."""
    import uvicorn

    from worker import db as worker_db
    from worker.ingress.server import _config
    from worker.logs import configure_logging
    from worker.settings import get_settings

    settings = get_settings()
    configure_logging(settings)
    counts: Counter = Counter()
    if args.count_queries:
        names = {sql: name for name, sql in worker_db.QUERIES.items()}
        original_init = worker_db._init_connection

        async def counting_init(conn: Any) -> None:
            await original_init(conn)
            conn.add_query_logger(lambda q: counts.update([names.get(q.query, q.query.split()[0].upper())]))

        worker_db._init_connection = counting_init  # read by _pool() when the lifespan creates it
    config = _config(settings, settings.ingress_host, settings.ingress_port)
    config.http, config.loop = args.http, args.loop
    server = uvicorn.Server(config)
    # uvicorn re-raises the SIGTERM it caught once it has shut down: let that end the process
    # through `finally` (the profile, the counts), not with the default action
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    profiler = None
    if args.profile:
        import cProfile

        profiler = cProfile.Profile(time.process_time)  # CPU, not wall: other processes' time left out
        profiler.enable()
    try:
        server.run()
    finally:
        if profiler is not None:
            profiler.disable()
            profiler.dump_stats(args.profile)
        if args.count_queries:
            Path(args.count_queries).write_text(json.dumps(counts, indent=1))


# --- the client --------------------------------------------------------------------------------


class HttpConn:
    """One keep-alive HTTP/1.1 connection: a request out, its answer (status, body) back."""

    __slots__ = ("reader", "writer")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, host: str, port: int) -> HttpConn:
        reader, writer = await asyncio.open_connection(host, port)
        return cls(reader, writer)

    async def request(self, raw: bytes) -> tuple[int, bytes]:
        self.writer.write(raw)
        head = await self.reader.readuntil(b"\r\n\r\n")
        at = head.lower().find(b"\r\ncontent-length:")
        if at < 0:
            raise RuntimeError(f"an answer without content-length: {head[:200]!r}")
        end = head.index(b"\r\n", at + 2)
        body = await self.reader.readexactly(int(head[at + 17 : end]))
        return int(head[9:12]), body

    def close(self) -> None:
        self.writer.close()


def request_bytes(method: str, path: str, body: bytes | None = None) -> bytes:
    """One HTTP/1.1 request, bearer-authenticated, ready for `HttpConn.request`."""
    head = f"{method} {path} HTTP/1.1\r\nHost: bench\r\nAuthorization: Bearer {TOKEN}\r\n"
    if body is None:
        return (head + "\r\n").encode()
    return (head + f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body


HEALTHZ = b"GET /healthz HTTP/1.1\r\nHost: bench\r\n\r\n"


@dataclass(slots=True)
class Pair:
    hold_id: str
    clerk: str
    held: int
    used: int

    def hold_request(self) -> bytes:
        body = {"id": self.hold_id, "clerkUserId": self.clerk, "credits": self.held, "operationType": OPERATION,
                "ttlSeconds": TTL_SECONDS}  # fmt: skip
        return request_bytes("POST", "/v1/holds", json.dumps(body).encode())

    def capture_request(self) -> bytes:
        return request_bytes("POST", f"/v1/holds/{self.hold_id}/capture", json.dumps({"credits": self.used}).encode())


class Users:
    """Who each hold is for: uniform over `clerk_ids`, or `hot` (half on the first user)."""

    def __init__(self, clerk_ids: list[str], distribution: str) -> None:
        self.clerk_ids = clerk_ids
        self.others = clerk_ids[1:] or clerk_ids
        self.hot = distribution == "hot"

    def pair(self, rng: random.Random, hold_id: str) -> Pair:
        if self.hot:
            clerk = self.clerk_ids[0] if rng.random() < HOT_SHARE else rng.choice(self.others)
        else:
            clerk = rng.choice(self.clerk_ids)
        held = rng.randint(1, 10)
        return Pair(hold_id, clerk, held, rng.randint(1, held))


class Books:
    """What the run did: answers by status, and what the database must hold afterwards."""

    def __init__(self, clerk_ids: list[str]) -> None:
        self.balances = dict.fromkeys(clerk_ids, START_CREDITS)
        self.holds: Counter = Counter()  # status -> count
        self.captures: Counter = Counter()
        self.placed = 0
        self.captured = 0
        self.failures: list[str] = []

    def record(self, pair: Pair, hold_status: int, capture_status: int | None, detail: bytes = b"") -> None:
        self.holds[hold_status] += 1
        if hold_status == 201:
            self.placed += 1
        if capture_status is not None:
            self.captures[capture_status] += 1
            if capture_status == 200:
                self.captured += 1
                self.balances[pair.clerk] -= pair.used
        if (hold_status != 201 or capture_status != 200) and len(self.failures) < 5:
            self.failures.append(f"{pair.hold_id}: hold {hold_status}, capture {capture_status} {detail[:200]!r}")

    def statuses(self) -> str:
        holds = ", ".join(f"{n:,}×{s}" for s, n in sorted(self.holds.items()))
        captures = ", ".join(f"{n:,}×{s}" for s, n in sorted(self.captures.items()))
        return f"holds {holds or '-'}; captures {captures or '-'}"


# --- measurements ------------------------------------------------------------------------------


@dataclass
class ClosedLoop:
    distribution: str
    kind: str  # "healthz" (requests/s) or "holds" (hold -> capture pairs/s)
    concurrency: int
    seconds: float
    count: int  # requests (healthz) or pairs (holds) completed in the window
    cpu: CpuUse | None = None

    @property
    def rate(self) -> float:
        return self.count / self.seconds if self.seconds > 0 else 0.0


@dataclass
class OpenLoop:
    distribution: str
    rate: int  # holds/s scheduled
    seconds: float
    scheduled: int
    completed_rate: float  # pairs completed / (last answer - first due time)
    samples: int  # pairs after the warm-up
    hold_p50_ms: float
    hold_p99_ms: float
    hold_max_ms: float
    pair_p50_ms: float  # due time -> capture answered
    pair_p99_ms: float
    capture_p50_ms: float  # capture sent -> answered
    capture_p99_ms: float
    send_lag_p99_ms: float  # due time -> hold written to a connection (client queueing + lateness)
    saturated: bool = False  # arrivals stopped early: more than MAX_BACKLOG_S of them unanswered
    cpu: CpuUse | None = None


async def open_connections(host: str, port: int, n: int) -> list[HttpConn]:
    return list(await asyncio.gather(*(HttpConn.open(host, port) for _ in range(n))))


async def closed_loop(host: str, port: int, kind: str, concurrency: int, seconds: float, warmup: float,
                      users: Users | None, books: Books | None, tag: str, seed: int) -> tuple[int, float]:  # fmt: skip
    """Requests (healthz) or pairs (holds) answered in the `seconds` after `warmup`; the window.
    `users` and `books`: for holds only."""
    conns = await open_connections(host, port, concurrency)
    loop = asyncio.get_running_loop()
    start = loop.time()
    window = (start + warmup, start + warmup + seconds)
    end = window[1]
    counted = [0]

    async def healthz(conn: HttpConn) -> None:
        while loop.time() < end:
            status, body = await conn.request(HEALTHZ)
            if status != 200:
                raise RuntimeError(f"/healthz answered {status}: {body[:200]!r}")
            if window[0] <= loop.time() < end:
                counted[0] += 1

    async def holds(conn: HttpConn, worker: int) -> None:
        assert users is not None and books is not None
        rng = random.Random(f"{seed}-{tag}-{worker}")
        n = 0
        while loop.time() < end:
            pair = users.pair(rng, f"g-{tag}-{worker}-{n}")
            n += 1
            status, body = await conn.request(pair.hold_request())
            capture = None
            if status == 201:
                capture, body = await conn.request(pair.capture_request())
            books.record(pair, status, capture, body)
            if window[0] <= loop.time() < end:
                counted[0] += 1

    try:
        if kind == "healthz":
            await asyncio.gather(*(healthz(c) for c in conns))
        else:
            await asyncio.gather(*(holds(c, i) for i, c in enumerate(conns)))
    finally:
        for c in conns:
            c.close()
    return counted[0], seconds


async def open_loop(host: str, port: int, pairs: list[Pair], rate: int, books: Books,
                    connections: int = OPEN_LOOP_CONNECTIONS,
                    max_backlog_s: float = MAX_BACKLOG_S) -> list[tuple[float, float, float, float]]:  # fmt: skip
    """Pair n due at t0 + n/rate; per pair (due, sent, hold answered, capture answered), all
    relative to t0, in seconds. Arrivals stop early once more than `max_backlog_s` of them wait
    unanswered (the rate is past what the ingress sustains: the queue would only grow); the
    pairs returned are those sent."""
    free: asyncio.Queue[HttpConn] = asyncio.Queue()
    for conn in await open_connections(host, port, connections):
        free.put_nowait(conn)
    loop = asyncio.get_running_loop()
    requests = [(p.hold_request(), p.capture_request()) for p in pairs]
    times: list[tuple[float, float, float, float]] = []
    done = [0]
    t0 = loop.time() + 0.05

    async def one(n: int, due: float) -> None:
        conn = await free.get()
        try:
            sent = loop.time()
            status, body = await conn.request(requests[n][0])
            held = loop.time()
            capture = None
            if status == 201:
                capture, body = await conn.request(requests[n][1])
            answered = loop.time()
        finally:
            free.put_nowait(conn)
        books.record(pairs[n], status, capture, body)
        times[n] = (due - t0, sent - t0, held - t0, answered - t0)
        done[0] += 1

    tasks = []
    for n in range(len(pairs)):
        due = t0 + n / rate
        if (wait := due - loop.time()) > 0:
            await asyncio.sleep(wait)
        if n - done[0] > rate * max_backlog_s:
            break
        times.append((0.0, 0.0, 0.0, 0.0))
        tasks.append(asyncio.create_task(one(n, due)))
    await asyncio.gather(*tasks)
    while not free.empty():
        free.get_nowait().close()
    return times


def summarize_open(dist: str, rate: int, seconds: float, times: list[tuple[float, float, float, float]],
                   planned: int) -> OpenLoop:  # fmt: skip
    warm = WARMUP_S if seconds >= 4 else seconds / 4
    kept = [t for t in times if t[0] >= warm]
    hold = sorted((h - due) * 1000 for due, _, h, _ in kept)
    pair = sorted((d - due) * 1000 for due, _, _, d in kept)
    capture = sorted((d - h) * 1000 for _, _, h, d in kept)
    lag = sorted((s - due) * 1000 for due, s, _, _ in kept)
    last = max((d for *_, d in times), default=0.0)
    return OpenLoop(
        distribution=dist, rate=rate, seconds=seconds, scheduled=len(times),
        completed_rate=len(times) / last if last > 0 else 0.0, samples=len(kept),
        hold_p50_ms=percentile(hold, 0.5), hold_p99_ms=percentile(hold, 0.99),
        hold_max_ms=hold[-1] if hold else float("nan"),
        pair_p50_ms=percentile(pair, 0.5), pair_p99_ms=percentile(pair, 0.99),
        capture_p50_ms=percentile(capture, 0.5), capture_p99_ms=percentile(capture, 0.99),
        send_lag_p99_ms=percentile(lag, 0.99), saturated=len(times) < planned,
    )  # fmt: skip


# --- verification ------------------------------------------------------------------------------

_HOLDS = """
SELECT count(*) AS holds, count(*) FILTER (WHERE status = 'captured') AS captured,
       coalesce(sum(captured), 0)::bigint AS charged
FROM worker.credit_hold
"""
_USAGE = 'SELECT count(*) AS n, coalesce(sum("creditsUsed"), 0)::bigint AS used FROM "UsageHistory"'
_HISTORY_MISMATCH = """
SELECT count(*) FROM "CreditBalance" cb
LEFT JOIN (SELECT "creditBalanceId", sum("creditsUsed")::bigint AS used FROM "UsageHistory" GROUP BY 1) u
       ON u."creditBalanceId" = cb.id
WHERE cb."creditsRemaining" <> $1::bigint - coalesce(u.used, 0)
"""


async def verify_holds(dsn: str, books: Books, measurement: str) -> str:
    """Every hold placed was captured once; balances, journal, grants and "UsageHistory" agree."""
    problems: list[str] = []
    if books.failures:
        problems.append(f"answers other than 201/200: {books.statuses()}; e.g. " + "; ".join(books.failures))
    conn = await db.connect(dsn)
    try:
        holds = await conn.fetchrow(_HOLDS)
        usage = await conn.fetchrow(_USAGE)
        charged = START_CREDITS * len(books.balances) - sum(books.balances.values())
        if holds["holds"] != books.placed:
            problems.append(f"worker.credit_hold has {holds['holds']} holds, {books.placed} were placed")
        if holds["captured"] != books.captured or holds["holds"] != holds["captured"]:
            problems.append(f"{holds['captured']} of {holds['holds']} holds captured, "
                            f"{books.captured} captures answered 200")  # fmt: skip
        if (usage["n"], usage["used"], holds["charged"]) != (books.captured, charged, charged):
            problems.append(f'"UsageHistory" {usage["n"]} rows / {usage["used"]} credits, holds charged '
                            f'{holds["charged"]}; expected {books.captured} rows, {charged} credits')  # fmt: skip
        claimed = await conn.fetchval("SELECT count(*) FROM worker.event_log")
        if claimed != books.placed:
            problems.append(f"worker.event_log has {claimed} ids, {books.placed} holds were placed")
        actual = await get_balances(conn, list(books.balances))
        wrong = [(c, b, actual.get(c)) for c, b in books.balances.items() if actual.get(c) != b]
        if wrong:
            sample = ", ".join(f"{c}: expected {b}, actual {a}" for c, b, a in wrong[:5])
            problems.append(f"{len(wrong)} balances differ from the computed ones ({sample})")
        if mismatched := await conn.fetchval(_HISTORY_MISMATCH, START_CREDITS):
            problems.append(f'{mismatched} balances != start - their "UsageHistory"')
        if drift := await find_balance_drift(conn):
            problems.append(f"find_balance_drift: {len(drift)} users, e.g. {drift[0]}")
        if grant_drift := await find_grant_drift(conn):
            problems.append(f"find_grant_drift: {len(grant_drift)} findings, e.g. {grant_drift[0]}")
    finally:
        await conn.close()
    if problems:
        raise ExactlyOnceViolation(measurement, problems)
    return f"{books.placed:,} holds placed and captured once, {len(books.balances):,} balances, no drift"


async def _analyze(dsn: str) -> None:
    """What autovacuum does to a table that grows: fresh statistics, and every cached plan over it
    made again (module docstring: the ingress's plans from the empty table)."""
    conn = await db.connect(dsn)
    try:
        await conn.execute('ANALYZE worker.credit_hold, worker.journal, worker.event_log, "UsageHistory"')
    finally:
        await conn.close()


# --- one distribution --------------------------------------------------------------------------


class HoldsRun:
    """(g) for one distribution: closed loops (healthz, then holds, at each concurrency), then
    the open-loop rates; the ingress and its database are this run's own."""

    def __init__(self, *, dsn: str, redis_url: str, clerk_ids: list[str], distribution: str, meter: CpuMeter,
                 log_path: Path, log_level: str, seed: int, seconds: float, rates: list[int],
                 concurrency: list[int], say: Any = print, analyze: bool = True,
                 kinds: tuple[str, ...] = ("healthz", "holds"),
                 **ingress: Any) -> None:  # fmt: skip
        self.dsn = dsn
        self.analyze = analyze
        self.kinds = kinds
        self.dist = distribution
        self.users = Users(clerk_ids, distribution)
        self.books = Books(clerk_ids)
        self.meter = meter
        self.seed = seed
        self.seconds = seconds
        self.rates = rates
        self.concurrency = concurrency
        self.say = say
        self.ingress = ingress_process(database_url=dsn, redis_url=redis_url, log_path=log_path, log_level=log_level,
                                       **ingress)  # fmt: skip
        self.closed: list[ClosedLoop] = []
        self.open: list[OpenLoop] = []

    def _cpu(self, before: dict, seconds: float, count: int) -> CpuUse:
        return self.meter.use(before, self.meter.snapshot(self.ingress.pid), seconds, count)

    def run(self) -> str:
        """The measurements; what the answers were, by status."""
        try:
            return self._run()
        except (asyncio.IncompleteReadError, ConnectionError) as exc:  # the bench reports RuntimeErrors
            raise RuntimeError(f"(g) the ingress dropped a connection: {exc!r}; "
                               f"its log: {self.ingress.log_path}") from exc  # fmt: skip

    def _run(self) -> str:
        host, port = self.ingress.host, self.ingress.port
        with self.ingress:
            # warm-up, not measured: the pool's connections, prepared statements, caches
            warm = min(1.0, self.seconds / 2)
            asyncio.run(closed_loop(host, port, "holds", max(self.concurrency), warm, 0.0, self.users, self.books,
                                    f"{self.dist}-warm", self.seed))  # fmt: skip
            asyncio.run(closed_loop(host, port, "healthz", max(self.concurrency), warm / 2, 0.0, self.users,
                                    self.books, "warm", self.seed))  # fmt: skip
            if self.analyze:
                asyncio.run(_analyze(self.dsn))
            for c in self.concurrency:
                for kind in self.kinds:
                    warm = min(0.5, self.seconds / 4)
                    before = self.meter.snapshot(self.ingress.pid)
                    count, seconds = asyncio.run(closed_loop(host, port, kind, c, self.seconds, warm, self.users,
                                                             self.books, f"{self.dist}-c{c}", self.seed))  # fmt: skip
                    run = ClosedLoop(self.dist, kind, c, seconds, count)
                    # the warm-up's CPU is in the snapshot too: per-request figures, not exact to the ms
                    run.cpu = self._cpu(before, seconds + warm, count)
                    self.closed.append(run)
                    what = "requests" if kind == "healthz" else "hold->capture pairs"
                    self.say(f"  (g) {self.dist:<7} closed loop x{c:<3} {kind:<8} {run.rate:>8,.0f} {what}/s"
                             f"\n{'':>13}{run.cpu.render()}")  # fmt: skip
            for rate in self.rates:
                rng = random.Random(f"{self.seed}-{self.dist}-r{rate}")
                count = max(1, int(rate * self.seconds))
                pairs = [self.users.pair(rng, f"g-{self.dist}-r{rate}-{n}") for n in range(count)]
                before = self.meter.snapshot(self.ingress.pid)
                times = asyncio.run(open_loop(host, port, pairs, rate, self.books))
                lat = summarize_open(self.dist, rate, self.seconds, times, len(pairs))
                lat.cpu = self._cpu(before, max(t[3] for t in times), len(times))
                self.open.append(lat)
                self.say(f"  (g) {self.dist:<7} open loop {rate:>6,}/s: hold p50 {lat.hold_p50_ms:.1f} ms, "
                         f"p99 {lat.hold_p99_ms:.1f} ms, max {lat.hold_max_ms:.1f} ms; hold->capture p50 "
                         f"{lat.pair_p50_ms:.1f} p99 {lat.pair_p99_ms:.1f} ms; completed {lat.completed_rate:,.0f}/s; "
                         f"client send lag p99 {lat.send_lag_p99_ms:.1f} ms"
                         + (f"; SATURATED: arrivals stopped after {len(times):,} of {len(pairs):,}"
                            if lat.saturated else "")
                         + f"\n{'':>13}{lat.cpu.render()}")  # fmt: skip
        return self.books.statuses()

    def verify(self) -> str:
        return asyncio.run(verify_holds(self.dsn, self.books, f"(g) holds over HTTP, {self.dist}"))


def uvicorn_auto(pythonpath: str | None = None) -> tuple[str, str]:
    """What uvicorn's `auto` picks in the ingress's environment: (HTTP parser, event loop)."""
    import importlib.util

    if pythonpath:
        sys.path.insert(0, pythonpath)
    try:
        http = "httptools" if importlib.util.find_spec("httptools") else "h11"
        loop = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
    finally:
        if pythonpath:
            sys.path.remove(pythonpath)
    return http, loop


def server_description(pool_size: int, log_level: str, pythonpath: str | None = None) -> str:
    http, loop = uvicorn_auto(pythonpath)
    return (f"the ingress in its own process (uvicorn, {http}, {loop} loop, one process), credit API pool "
            f"{pool_size} connections, log level {log_level}")  # fmt: skip


# --- standalone experiments --------------------------------------------------------------------


def _experiment(args: argparse.Namespace) -> int:
    """One (g) run on embedded servers with the ingress configured as asked (docs/performance.md)."""
    import tempfile

    from worker.settings import Settings

    from .servers import BenchServers
    from .workload import clerk_ids

    from . import servers as servers_module

    settings = Settings()
    extra = dict(kv.split("=", 1) for kv in args.pg_setting)
    if args.pg_stat_statements:
        extra = {"shared_preload_libraries": "pg_stat_statements", "pg_stat_statements.track_planning": "on", **extra}
    servers_module.BENCH_PG_SETTINGS = {**servers_module.BENCH_PG_SETTINGS, **extra}
    servers = BenchServers(settings).start()
    logs = Path(tempfile.mkdtemp(prefix="pedro-bench-holds-"))
    try:
        ids = clerk_ids(args.users)
        asyncio.run(servers.build_template(ids, START_CREDITS))
        meter = CpuMeter(servers.postgres_pid, servers.redis_pid)
        for dist in args.distributions.split(","):
            dsn = asyncio.run(servers.new_database())
            if args.pg_stat_statements:
                asyncio.run(_pg_stat_statements(dsn, reset=True))
            run = HoldsRun(dsn=dsn, redis_url=servers.redis_url, clerk_ids=ids, distribution=dist, meter=meter,
                           log_path=logs / f"ingress-{dist}.log", log_level=args.log_level, seed=args.seed,
                           seconds=args.seconds, rates=[int(r) for r in args.rates.split(",") if r],
                           concurrency=[int(c) for c in args.concurrency.split(",") if c], http=args.http,
                           analyze=not args.no_analyze, kinds=tuple(args.kinds.split(",")),
                           loop=args.loop, pythonpath=args.pythonpath, pool_size=args.pool_size,
                           profile=args.profile and Path(f"{args.profile}.{dist}"),
                           count_queries=args.count_queries and Path(f"{args.count_queries}.{dist}"))  # fmt: skip
            print(f"  {dist}: " + server_description(args.pool_size or settings.ingress_pool_max_size, args.log_level,
                                                      args.pythonpath))  # fmt: skip
            statuses = run.run()
            print(f"  {dist}: {statuses}; verified: {run.verify()}")
            healthz = {c.concurrency: c.rate for c in run.closed if c.kind == "healthz"}
            for c in run.closed:
                if c.kind == "holds" and c.concurrency in healthz:
                    print(f"  {dist} x{c.concurrency}: {c.rate:,.0f} pairs/s = {c.rate / healthz[c.concurrency]:.3f} "
                          f"of healthz {healthz[c.concurrency]:,.0f}/s")  # fmt: skip
            if args.count_queries:
                counts = json.loads(Path(f"{args.count_queries}.{dist}").read_text())
                pairs = run.books.placed
                print(f"  SQL statements per hold->capture pair ({pairs:,} pairs): "
                      f"{sum(counts.values()) / max(1, pairs):.2f}")  # fmt: skip
                for name, n in sorted(counts.items(), key=lambda kv: -kv[1]):
                    print(f"    {n / max(1, pairs):6.2f}  {name}")
            if args.pg_stat_statements:
                asyncio.run(_pg_stat_statements(dsn, pairs=run.books.placed))
            asyncio.run(servers.drop_database(dsn))
    finally:
        asyncio.run(servers.drop_all())
        if servers.postgres_pid and args.pg_setting:  # keep PostgreSQL's log (e.g. auto_explain's plans)
            argv = Path(f"/proc/{servers.postgres_pid}/cmdline").read_bytes().split(b"\0")
            pgdata = Path(argv[argv.index(b"-D") + 1].decode())
            shutil.copy(pgdata / "server.log", logs / "postgres.log")
        servers.stop()
        print(f"ingress logs in {logs}")
    return 0


async def _pg_stat_statements(dsn: str, *, reset: bool = False, pairs: int = 0) -> None:
    """PostgreSQL's time per statement (`--pg-stat-statements`): executor + planner, per pair."""
    conn = await db.connect(dsn)
    try:
        if reset:
            await conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
            await conn.execute("SELECT pg_stat_statements_reset()")
            return
        rows = await conn.fetch(
            "SELECT calls, total_exec_time + total_plan_time AS ms, min_exec_time AS min, max_exec_time AS max, "
            "stddev_exec_time AS sd, query FROM pg_stat_statements "
            "WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database()) "
            "ORDER BY 2 DESC LIMIT 14")  # fmt: skip
    finally:
        await conn.close()
    print(f"  PostgreSQL executor + planner time per hold->capture pair ({pairs:,} pairs):")
    for r in rows:
        print(f"    {r['ms'] * 1000 / max(1, pairs):7.0f} us  {r['calls'] / max(1, pairs):5.2f} calls  "
              f"(per call min {r['min'] * 1000:.0f} us, max {r['max']:.1f} ms, sd {r['sd'] * 1000:.0f} us)  "
              + " ".join(r["query"].split())[:90])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.holds", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("serve", help="the ingress (environment settings), as the bench starts it")
    s.add_argument("--http", default="auto", help="uvicorn HTTP parser: auto, h11, httptools")
    s.add_argument("--loop", default="auto", help="uvicorn event loop: auto, asyncio, uvloop")
    s.add_argument("--profile", help="cProfile the whole process into this file")
    s.add_argument("--count-queries", help="count the SQL statements sent, by name, into this JSON file")
    e = sub.add_parser("run", help="(g) alone on embedded servers, the ingress configured as asked")
    e.add_argument("--users", type=int, default=1_000)
    e.add_argument("--distributions", default="uniform")
    e.add_argument("--seconds", type=float, default=5.0)
    e.add_argument("--rates", default="200,1000")
    e.add_argument("--concurrency", default="16")
    e.add_argument("--seed", type=int, default=6)
    e.add_argument("--log-level", default="INFO")
    e.add_argument("--http", default="auto")
    e.add_argument("--loop", default="auto")
    e.add_argument("--pool-size", type=int)
    e.add_argument("--pythonpath", help="prepended to the ingress's PYTHONPATH (e.g. httptools + uvloop)")
    e.add_argument("--profile", help="cProfile the ingress into <this>.<distribution>")
    e.add_argument("--count-queries", help="count the ingress's SQL statements into <this>.<distribution>")
    e.add_argument("--kinds", default="healthz,holds", help="closed loops to run: healthz,holds")
    e.add_argument("--no-analyze", action="store_true", help="no ANALYZE after the warm-up (plans from empty tables)")
    e.add_argument("--pg-setting", action="append", default=[], help="a PostgreSQL setting k=v (repeatable)")
    e.add_argument("--pg-stat-statements", action="store_true", help="print PostgreSQL's time per statement")
    args = p.parse_args(argv)
    if args.command == "serve":
        serve(args)
        return 0
    return _experiment(args)


if __name__ == "__main__":
    sys.exit(main())
