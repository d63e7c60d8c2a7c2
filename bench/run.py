"""One bench run: every path, both distributions, exactly-once verified after each measurement.

Order: per distribution (a) naive baseline, (b) ceiling and its direct replay, (b) again with
users partitioned across the lanes (what the SQL does without lock waits), (k) the write ceiling
((c)'s rows by COPY, bench/ceiling.py), then one worker fleet for (c) batch messages, (f) their
replay and (d) single-event messages — (c) measured in turns with its variants, the same events
on fleets of their own: (c3) whose users hold three grants each, (cn) with notifications on
(`Bench.compared`) — then on that fleet the latency runs (uniform only: half of (d)'s rate,
then 1,000/s) and GET /healthz, (h) and (i) through an ingress process (bench/http_paths.py);
then (g) holds over HTTP through an ingress process of its own
(bench/holds.py); then (e) the no-op fleet; then the scale-out runs. Each measurement has its
own database copied from the seeded template, or new event ids on the fleet's database. Every
fleet but (cn)'s runs with notifications off.
"""

from __future__ import annotations

import asyncio
import logging
import os
import platform
import random
import shutil
import subprocess
import sys
import tempfile
import time
import zlib
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from worker import db
from worker.publisher import Publisher
from worker.settings import ROOT, Settings

from . import notify
from .ceiling import deal_openings
from .cli import BenchOptions
from .cpu import CpuMeter, CpuUse, tree_cpu
from .fleet import Fleet, FleetError
from .grants import (
    count_crossings,
    expected_three_grants,
    lay_out_three_grants,
    three_grant_shares,
    used_by_user,
)
from .holds import HoldsRun, server_description, verify_holds
from .http_paths import EVENTS_PER_POST, HttpRun
from .lanes import run_lanes
from .latency import commit_times, publish_paced, summarize
from .noop import noop_message
from .report import Report, ScaleRun
from .servers import BenchServers, ServerInfo
from .verify import ExactlyOnceViolation, verify_baseline, verify_product, verify_untouched
from .workload import START_CREDITS, Expected, Workload

_CHUNK_MESSAGES = 10  # batch messages per pipelined publish call
_SINGLE_CHUNK = 500  # single-event messages per pipelined publish call
VARIANTS = ("c3", "cn", "cp")  # variants of (c), measured in turns with it (Bench.compared)


def aio(coro: Coroutine[Any, Any, Any]) -> Any:
    return asyncio.run(coro)


_T0 = time.monotonic()


def say(text: str) -> None:
    print(f"[{time.monotonic() - _T0:6.1f}s] {text}" if text else "", flush=True)


def _chunks(items: list, size: int) -> list[list]:
    return [items[i : i + size] for i in range(0, len(items), size)]


@dataclass
class Variant:
    """A variant of (c) measured in turns with it: the same events, its own fleet and database.
    `verify`, once every turn has run: what was checked (it raises ExactlyOnceViolation)."""

    path: str
    fleet: Fleet
    dsn: str
    verify: Callable[[], str]


def _code_version() -> str:
    try:
        git = {"cwd": ROOT, "capture_output": True, "text": True, "timeout": 5}
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], check=False, **git).stdout.strip()
        status = ["git", "status", "--porcelain", "--untracked-files=no"]
        dirty = subprocess.run(status, check=False, **git).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{rev}{' + uncommitted changes' if dirty else ''}" if rev else "unknown"


class Bench:
    def __init__(self, opts: BenchOptions, settings: Settings, servers: BenchServers, info: ServerInfo,
                 workload: Workload, report: Report, logs: Path) -> None:  # fmt: skip
        self.opts = opts
        self.settings = settings
        self.servers = servers
        self.info = info
        self.workload = workload
        self.report = report
        self.logs = logs
        self.fleets: list[Fleet] = []
        self.meter = CpuMeter(servers.postgres_pid, servers.redis_pid)
        self.lanes_settings = settings.model_copy(update={"log_level": opts.worker_log_level})

    # --- helpers ---------------------------------------------------------------------------------

    def _timeout(self, events: int) -> float:
        return 120 + events / 500  # generous: a hung path fails instead of hanging the bench

    def _check(self, measurement: str, verify: Callable[[], Coroutine[Any, Any, str]]) -> str:
        summary = aio(verify())
        self.report.checks.append((measurement, summary))
        return summary

    def _fleet(self, module: str, dsn: str, processes: int, name: str,
               env: Mapping[str, str] | None = None) -> Fleet:  # fmt: skip
        """A started fleet; notifications off unless `env` turns them on."""
        fleet = Fleet(
            module, database_url=dsn, redis_url=self.servers.redis_url, processes=processes,
            threads=self.opts.threads, settings=self.settings, log_path=self.logs / f"{name}.log",
            log_level=self.opts.worker_log_level, prefetch=self.opts.prefetch,
            env={**notify.NOTIFY_OFF, **(env or {})},
        )  # fmt: skip
        self.fleets.append(fleet)
        return fleet.start()

    def _stop(self, fleet: Fleet, *, product: bool) -> None:
        """Measurements are over: let the fleet shut down in the background (reaped in close())."""
        fleet.terminate()
        if product:
            self.report.rss_per_process_mb = max(self.report.rss_per_process_mb, fleet.rss.per_process_mb)
            self.report.rss_fleet_mb = max(self.report.rss_fleet_mb, fleet.rss.fleet_mb)

    def _lanes(self, job: str, dsn: str, items: list, events: int, dealt: list[list] | None = None,
               lanes: tuple[int, int] | None = None) -> tuple[Any, CpuUse]:  # fmt: skip
        processes, connections = lanes or (self.opts.processes, self.opts.connections)
        result = run_lanes(
            job, dsn, items, processes=processes, connections=connections,
            settings=self.lanes_settings, log_path=self.logs / f"lanes-{job}.log",
            timeout_s=self._timeout(events), snapshot=self.meter.snapshot, dealt=dealt,
        )  # fmt: skip
        before, after = result.snapshots
        return result, self.meter.use(before, after, result.seconds, events, {"workers": result.lane_cpu})

    def _measure(self, fleet: Fleet, publish: Callable[[], None], events: int,
                 timeout_s: float | None = None) -> tuple[float, CpuUse]:  # fmt: skip
        """Publish, wait until everything is acked; the seconds and the CPU it took."""
        pid = fleet.proc.pid if fleet.proc else None
        bouncer = self.servers.pgbouncer.proc.pid if self.servers.pgbouncer and self.servers.pgbouncer.proc else None
        before, bouncer_before = self.meter.snapshot(pid), tree_cpu(bouncer)
        seconds = fleet.run(publish, timeout_s or self._timeout(events))
        after, bouncer_after = self.meter.snapshot(pid), tree_cpu(bouncer)
        # PgBouncer's CPU ((cp)) is the bench's own, not "other": counted in the total
        extra = None
        if bouncer_before is not None and bouncer_after is not None:
            extra = {"pgbouncer": bouncer_after - bouncer_before}
        return seconds, self.meter.use(before, after, seconds, events, extra)

    def _publish_batches(self, fleet: Fleet, events: list[dict]) -> Callable[[], None]:
        publisher = Publisher(fleet.broker, batch_size=self.opts.batch_size, validate=False)
        chunks = _chunks(events, self.opts.batch_size * _CHUNK_MESSAGES)

        def publish() -> None:
            for chunk in chunks:
                publisher.publish_many(chunk)

        return publish

    def _publish_singles(self, fleet: Fleet, events: list[dict]) -> Callable[[], None]:
        publisher = Publisher(fleet.broker, batch_size=1, validate=False)
        chunks = _chunks(events, _SINGLE_CHUNK)

        def publish() -> None:
            for chunk in chunks:
                publisher.publish_many(chunk)

        return publish

    def _no_dead_letters(self, fleet: Fleet, label: str) -> None:
        if dead := fleet.dead_letters():
            raise ExactlyOnceViolation(label, [f"{dead} messages dead-lettered: their events were never applied"])

    def _record(self, path: str, dist: str, events: int, seconds: float, verified: str, cpu: CpuUse) -> None:
        fig = self.report.add(path, dist, events, seconds, cpu)
        say(f"  ({path}) {dist:<7} {events:>8,} events in {seconds:6.2f}s = {fig.rate:>9,.0f}/s   "
            f"verified: {verified}\n{'':>13}{cpu.render()}")  # fmt: skip

    # --- paths -------------------------------------------------------------------------------------

    def baseline(self, dist: str, *, one_connection: bool = False) -> None:
        """(a) at the workers' concurrency (processes x connections), or on one connection: a
        consumer that applies one event at a time, the figure the issue quotes (1-2k/s)."""
        path = "a1" if one_connection else "a"
        dsn = aio(self.servers.new_database())
        events = self.workload.events(f"{path}-{dist}", self.opts.single_events, dist)
        result, cpu = self._lanes("baseline", dsn, events, len(events), lanes=(1, 1) if one_connection else None)
        expected = Expected(self.workload.clerk_ids)
        expected.apply(events)
        label = f"(a) naive baseline{' on one connection' if one_connection else ''}, {dist}"
        verified = self._check(label, lambda: verify_baseline(dsn, expected, label))
        self._record(path, dist, len(events), result.seconds, verified, cpu)
        aio(self.servers.drop_database(dsn))

    def ceiling(self, dist: str) -> None:
        dsn = aio(self.servers.new_database())
        events = self.workload.events(f"b-{dist}", self.opts.events, dist)
        batches = _chunks(events, self.opts.batch_size)
        expected = Expected(self.workload.clerk_ids)
        expected.apply(events)
        runs = (("b", f"(b) ceiling, {dist}", "applied"), ("f_direct", f"(f) direct replay, {dist}", "duplicate"))
        for path, label, status in runs:
            result, cpu = self._lanes("ceiling", dsn, batches, len(events))
            if result.outcomes.get(status) != len(events):
                raise ExactlyOnceViolation(label, [f"outcomes {dict(result.outcomes)}, expected {len(events)} {status}"])
            verified = self._check(label, lambda label=label: verify_product(dsn, expected, label))
            self._record(path, dist, len(events), result.seconds, verified, cpu)
        aio(self.servers.drop_database(dsn))

    def ceiling_partitioned(self, dist: str) -> None:
        """(b) again, but each lane only ever sees its own users (hash of the Clerk id): what the
        project's batch SQL does when concurrent transactions never wait on each other's rows."""
        dsn = aio(self.servers.new_database())
        events = self.workload.events(f"bp-{dist}", self.opts.events, dist)
        lanes = self.opts.processes * self.opts.connections
        groups: list[list[dict]] = [[] for _ in range(lanes)]
        for event in events:
            groups[zlib.crc32(event["clerkUserId"].encode()) % lanes].append(event)
        dealt = [_chunks(group, self.opts.batch_size) for group in groups]
        expected = Expected(self.workload.clerk_ids)
        expected.apply(events)
        result, cpu = self._lanes("ceiling", dsn, [], len(events), dealt=dealt)
        label = f"(b) ceiling partitioned by user, {dist}"
        if result.outcomes.get("applied") != len(events):
            raise ExactlyOnceViolation(label, [f"outcomes {dict(result.outcomes)}, expected {len(events)} applied"])
        verified = self._check(label, lambda: verify_product(dsn, expected, label))
        self._record("b_part", dist, len(events), result.seconds, verified, cpu)
        aio(self.servers.drop_database(dsn))

    def write_ceiling(self, dist: str) -> None:
        """(k): (c)'s rows for `--events` new events by COPY, in (b)'s batches, with as many
        transactions in flight as (c) has (bench/ceiling.py)."""
        dsn = aio(self.servers.new_database())
        events = self.workload.events(f"k-{dist}", self.opts.events, dist)
        batches = deal_openings(_chunks(events, self.opts.batch_size))
        expected = Expected(self.workload.clerk_ids)
        expected.apply(events)
        result, cpu = self._lanes("copy", dsn, batches, len(events), lanes=(self.opts.processes, self._ceiling_lanes()))
        label = f"(k) write ceiling, {dist}"
        if result.outcomes.get("applied") != len(events):
            raise ExactlyOnceViolation(label, [f"outcomes {dict(result.outcomes)}, expected {len(events)} applied"])
        verified = self._check(label, lambda: verify_product(dsn, expected, label, grants=True))
        if retried := result.outcomes.get("deadlock_retried"):
            verified += f"; {retried} transactions retried after a deadlock"
        self._record("k", dist, len(events), result.seconds, verified, cpu)
        aio(self.servers.drop_database(dsn))

    def _ceiling_lanes(self) -> int:
        """(k)'s connections per process: as many transactions in flight as (c)'s fleet has."""
        return self.opts.ceiling_connections or self.settings.micro_batch_concurrency

    def end_to_end(self, dist: str, with_latency: bool) -> None:
        dsn = aio(self.servers.new_database())
        expected = Expected(self.workload.clerk_ids)
        fleet = self._fleet("worker.app", dsn, self.opts.processes, f"e2e-{dist}")
        try:
            events = self.workload.events(f"c-{dist}", self.opts.events, dist)
            singles = self.workload.events(f"d-{dist}", self.opts.single_events, dist)
            runs = (
                ("c", f"(c) e2e batch messages, {dist}", events, self._publish_batches, True),
                ("f", f"(f) e2e replay, {dist}", events, self._publish_batches, False),
                ("d", f"(d) e2e single-event messages, {dist}", singles, self._publish_singles, True),
            )
            wanted = self.opts.paths | ({"c"} if self.opts.paths & {"f", *VARIANTS} else set())  # all need (c)
            for path, label, batch, publish, new in runs:
                if path not in wanted:
                    continue
                if path == "c" and self.opts.paths & set(VARIANTS):
                    self.compared(dist, fleet, dsn, events, expected)
                    continue
                seconds, cpu = self._measure(fleet, publish(fleet, batch), len(batch))
                self._no_dead_letters(fleet, label)
                if new:
                    expected.apply(batch)
                verified = self._check(label, lambda label=label: verify_product(dsn, expected, label))
                self._record(path, dist, len(batch), seconds, verified, cpu)
            if with_latency:
                for rate, basis in self._latency_rates(dist):
                    self.latency(fleet, dsn, dist, expected, rate, basis)
            if self.opts.paths & {"h", "i"}:
                self.http_paths(fleet, dsn, dist, expected)
        finally:
            self._stop(fleet, product=True)

    def compared(self, dist: str, fleet: Fleet, dsn: str, events: list[dict], expected: Expected) -> None:
        """(c) (`fleet`, on `dsn`: one live grant per user, notifications off) and the variants
        among --paths, each on a fleet and database of its own, the same events through all.
        Measured in turns over `--rounds` consecutive parts of the events (2 by default), the
        order reversed from one part to the next — (c), (c3), (cn) over the first half, then (cn),
        (c3), (c) over the second — so that the machine's drift during the run weighs on all
        alike; each figure is all its parts' events over their seconds."""
        variants: list[Variant] = []
        try:
            if "c3" in self.opts.paths:
                variants.append(self._three_grants(dist, events))
            if "cn" in self.opts.paths:
                variants.append(self._notifications_on(dist, events))
            if "cp" in self.opts.paths:
                variants.append(self._through_pgbouncer(dist, events))
            measured = self._in_turns(dist, [("c", fleet), *((v.path, v.fleet) for v in variants)], events)
        finally:
            for variant in variants:  # all shut down at once: dramatiq takes a few seconds
                self._stop(variant.fleet, product=True)
            for variant in variants:
                variant.fleet.stop()
                self.fleets.remove(variant.fleet)
        expected.apply(events)
        label = f"(c) e2e batch messages, one grant per user, {dist}"
        verified = self._check(label, lambda: verify_product(dsn, expected, label, grants=True))
        seconds, cpu = measured["c"]
        self._record("c", dist, len(events), seconds, verified, cpu)
        for variant in variants:
            seconds, cpu = measured[variant.path]
            self._record(variant.path, dist, len(events), seconds, variant.verify(), cpu)
            aio(self.servers.drop_database(variant.dsn))

    def _in_turns(self, dist: str, fleets: list[tuple[str, Fleet]],
                  events: list[dict]) -> dict[str, tuple[float, CpuUse | None]]:  # fmt: skip
        """path -> (seconds, CPU) of `events` through each fleet, in the parts and turns of `compared`."""
        size = self.opts.batch_size
        batches = -(-len(events) // size)
        cuts = [batches * k // self.opts.rounds * size for k in range(self.opts.rounds)] + [len(events)]
        parts = [events[a:b] for a, b in zip(cuts, cuts[1:]) if b > a]  # whole batches, but the last
        measured: dict[str, tuple[float, CpuUse | None]] = {path: (0.0, None) for path, _ in fleets}
        rates: list[str] = []
        for n, part in enumerate(parts):
            for path, which in fleets if n % 2 == 0 else reversed(fleets):
                seconds, cpu = self._measure(which, self._publish_batches(which, part), len(part))
                self._no_dead_letters(which, f"({path}) {dist}")
                total, sofar = measured[path]
                measured[path] = (total + seconds, cpu if sofar is None else sofar.plus(cpu))
                rates.append(f"({path}) {len(part) / seconds:,.0f}/s")
        say(f"  {', '.join(f'({path})' for path, _ in fleets)} in turns, {dist}: " + ", ".join(rates))
        return measured

    def _three_grants(self, dist: str, events: list[dict]) -> Variant:
        """(c3): users with three live grants each (bench/grants.py)."""
        used = used_by_user(events)
        shares = three_grant_shares(self.workload.clerk_ids, used)
        dsn = aio(self.servers.new_database())
        aio(lay_out_three_grants(dsn, shares))
        fleet = self._fleet("worker.app", dsn, self.opts.processes, f"e2e-grants-{dist}")

        def verify() -> str:
            expected = Expected(self.workload.clerk_ids)
            expected.apply(events)
            remaining = expected_three_grants(shares, expected.balances, START_CREDITS, used)
            label = f"(c3) e2e batch messages, three grants per user, {dist}"
            verified = self._check(label, lambda: verify_product(dsn, expected, label, grant_remaining=remaining))
            crossings = aio(count_crossings(dsn))
            self.report.crossings[dist] = crossings
            return f"{verified}; {crossings:,} debits took from 2-3 grants"

        return Variant("c3", fleet, dsn, verify)

    def _notifications_on(self, dist: str, events: list[dict]) -> Variant:
        """(cn): an endpoint and low-balance thresholds configured (bench/notify.py)."""
        expected = Expected(self.workload.clerk_ids)
        expected.apply(events)
        thresholds = notify.thresholds(used_by_user(events), self.workload.clerk_ids)
        lows = notify.expected_lows(events, expected.balances, thresholds)
        dsn = aio(self.servers.new_database())
        env = notify.fleet_env(thresholds)
        fleet = self._fleet("worker.app", dsn, self.opts.processes, f"e2e-notify-{dist}", env)
        say(f"  (cn) {dist}: PEDRO_NOTIFY_LOW_THRESHOLDS={','.join(thresholds)}")

        def verify() -> str:
            label = f"(cn) e2e batch messages, notifications on, {dist}"

            async def both() -> str:
                product = await verify_product(dsn, expected, label, grants=True)
                return f"{product}; {await notify.verify_notifications(dsn, lows, label)}"

            verified = self._check(label, both)
            self.report.notified[dist] = sum(len(c) for c in lows.values())
            return verified

        return Variant("cn", fleet, dsn, verify)

    def _through_pgbouncer(self, dist: str, events: list[dict]) -> Variant:
        """(cp): (c)'s fleet and events, its DATABASE_URL through a PgBouncer in transaction mode
        (PEDRO_DATABASE_POOLER=transaction, docs/topologies.md); checked on PostgreSQL directly."""
        bouncer = self.servers.start_pgbouncer()
        dsn = aio(self.servers.new_database())
        env = {"PEDRO_DATABASE_POOLER": "transaction", "PEDRO_DIRECT_DATABASE_URL": dsn}
        fleet = self._fleet("worker.app", bouncer.url_for(dsn), self.opts.processes, f"e2e-pgbouncer-{dist}", env)
        self.report.header["pgbouncer"] = (
            f"(cp): PgBouncer {bouncer.version()}, pool_mode transaction, default_pool_size "
            f"{bouncer.settings['default_pool_size']}, on this machine (its CPU counted in the totals)"
        )

        def verify() -> str:
            expected = Expected(self.workload.clerk_ids)
            expected.apply(events)
            label = f"(cp) e2e batch messages through PgBouncer, {dist}"
            return self._check(label, lambda: verify_product(dsn, expected, label, grants=True))

        return Variant("cp", fleet, dsn, verify)

    def _latency_rates(self, dist: str) -> list[tuple[int, str]]:
        """(rate, why): half of (d)'s measured rate, then 1,000/s for continuity with the first
        targets; `--latency-rate` alone when given."""
        if self.opts.latency_rate is not None:
            return [(self.opts.latency_rate, "--latency-rate")]
        d = self.report.rate("d", dist)
        if d is None:
            return [(1_000, "fixed: (d) not measured")]
        return [(max(1, round(d / 2)), f"half of (d)'s {d:,.0f}/s"), (1_000, "fixed, for continuity")]

    def latency(self, fleet: Fleet, dsn: str, dist: str, expected: Expected, rate: int, basis: str) -> None:
        count = max(1, int(rate * self.opts.latency_seconds))
        events = self.workload.events(f"l{rate}-{dist}", count, dist)
        say(f"  latency: {count:,} single-event messages at {rate:,}/s ({basis}) …")
        box: dict[str, Any] = {}

        def publish() -> None:
            box["published"], box["achieved"] = publish_paced(fleet, events, rate)

        _, cpu = self._measure(fleet, publish, count, self._timeout(count) + self.opts.latency_seconds)
        self._no_dead_letters(fleet, f"latency run, {dist}")
        expected.apply(events)
        label = f"latency run, {dist}"
        verified = self._check(label, lambda: verify_product(dsn, expected, label))
        committed = aio(commit_times(dsn, [e["id"] for e in events], self.info.commit_timestamps))
        lat = summarize(box["published"], committed, rate, box["achieved"], self.info.commit_timestamps, basis)
        self.report.latencies.append(lat)
        say(f"  latency: p50 {lat.p50_ms:.1f} ms, p99 {lat.p99_ms:.1f} ms, max {lat.max_ms:.1f} ms "
            f"({lat.samples:,} samples, achieved {lat.achieved_rate:,.0f}/s)   verified: {verified}\n"
            f"{'':>13}{cpu.render()}")  # fmt: skip

    def http_paths(self, fleet: Fleet, dsn: str, dist: str, expected: Expected) -> None:
        """GET /healthz, then (h) and (i) through an ingress process into `fleet`'s queue
        (bench/http_paths.py); exactly-once checked after each."""
        run = HttpRun(fleet, database_url=dsn, redis_url=self.servers.redis_url, log_path=self.logs / f"http-{dist}.log",
                      log_level=self.opts.worker_log_level, connections=self.opts.http_connections,
                      meter=self.meter, timeout=self._timeout)  # fmt: skip
        self.report.http_setup = (
            f"{server_description(self.settings.ingress_pool_max_size, self.opts.worker_log_level)}; "
            f"the (d) fleet; client: the bench process, raw asyncio HTTP/1.1, {self.opts.http_connections} "
            "keep-alive connections"
        )
        counts = {"h": self.opts.http_events, "i": self.opts.http_batch_events}
        with run.ingress:
            healthz = run.healthz(dist, self.opts.healthz_seconds)
            self.report.http_healthz.append(healthz)
            say(f"  GET /healthz {dist:<7} x{healthz.concurrency}: {healthz.rate:,.0f} requests/s\n"
                f"{'':>13}{healthz.cpu.render() if healthz.cpu else ''}")  # fmt: skip
            for path in ("h", "i"):
                if path not in self.opts.paths:
                    continue
                events = self.workload.events(f"{path}-{dist}", counts[path], dist)
                seconds, cpu = run.post(events, EVENTS_PER_POST[path])
                posts = -(-len(events) // EVENTS_PER_POST[path])
                say(f"  ({path}) {dist:<7} every POST answered after {run.answered_s:.2f}s "
                    f"({posts / run.answered_s:,.0f} requests/s), every event committed after {seconds:.2f}s")  # fmt: skip
                label = f"({path}) e2e over HTTP, {EVENTS_PER_POST[path]} event(s) per POST, {dist}"
                self._no_dead_letters(fleet, label)
                expected.apply(events)
                verified = self._check(label, lambda label=label: verify_product(dsn, expected, label))
                self._record(path, dist, len(events), seconds, verified, cpu)

    def noop(self) -> None:
        dsn = aio(self.servers.new_database())
        fleet = self._fleet("bench.noop_app", dsn, self.opts.processes, "noop")
        try:
            events = self.workload.events("e", self.opts.single_events, "uniform")
            chunks = _chunks(events, _SINGLE_CHUNK)
            publisher = Publisher(fleet.broker)

            def publish() -> None:
                for chunk in chunks:
                    publisher.enqueue_pipelined([noop_message(e) for e in chunk])

            seconds, cpu = self._measure(fleet, publish, len(events))
            label = "(e) no-op actor"
            self._record("e", "any", len(events), seconds, self._check(label, lambda: verify_untouched(dsn, label)), cpu)
        finally:
            self._stop(fleet, product=False)

    def scale_out(self, processes: int) -> None:
        dsn = aio(self.servers.new_database())
        expected = Expected(self.workload.clerk_ids)
        fleet = self._fleet("worker.app", dsn, processes, f"scale-{processes}")
        try:
            events = self.workload.events(f"s{processes}", self.opts.scale_events, "uniform")
            copies = list(events)
            random.Random(self.opts.seed + processes).shuffle(copies)
            publisher = Publisher(fleet.broker, batch_size=self.opts.batch_size, validate=False)
            size = self.opts.batch_size * _CHUNK_MESSAGES
            originals, duplicates = _chunks(events, size), _chunks(copies, size)

            def publish() -> None:  # interleaved, so a copy is often in flight with its original
                for first, second in zip(originals, duplicates):
                    publisher.publish_many(first)
                    publisher.publish_many(second)

            seconds, cpu = self._measure(fleet, publish, len(events), self._timeout(2 * len(events)))
            self._no_dead_letters(fleet, f"scale-out, {processes} worker processes")
            expected.apply(events)
            label = f"scale-out, {processes} worker processes"
            verified = self._check(label, lambda: verify_product(dsn, expected, label))
            run = ScaleRun(processes, len(events), 2 * len(events), seconds, verified, cpu)
            self.report.scale.append(run)
            say(f"  scale-out {processes} process(es): {len(events):,} events ({2 * len(events):,} deliveries) "
                f"in {seconds:.2f}s = {run.rate:,.0f}/s   verified: {verified}\n{'':>13}{cpu.render()}")  # fmt: skip
        finally:
            self._stop(fleet, product=True)

    def holds_http(self, dist: str) -> None:
        """(g) hold -> capture over HTTP next to GET /healthz (bench/holds.py): the ingress in its
        own process on its own database, the bench process as the client."""
        dsn = aio(self.servers.new_database())
        users = self.workload.clerk_ids[: self.opts.holds_users]
        say(f"  (g) {dist}: the ingress in its own process, {len(users):,} users …")
        run = HoldsRun(
            dsn=dsn, redis_url=self.servers.redis_url, clerk_ids=users, distribution=dist, meter=self.meter,
            log_path=self.logs / f"ingress-{dist}.log", log_level=self.opts.worker_log_level, seed=self.opts.seed,
            seconds=self.opts.holds_seconds, rates=self.opts.holds_rates, concurrency=self.opts.holds_concurrency,
            say=say,
        )  # fmt: skip
        run.run()
        label = f"(g) holds over HTTP, {dist}"
        verified = self._check(label, lambda: verify_holds(dsn, run.books, label))
        self.report.holds_closed += run.closed
        self.report.holds_open += run.open
        self.report.holds_setup = (
            f"{server_description(self.settings.ingress_pool_max_size, self.opts.worker_log_level)}; "
            f"{len(users):,} users; client: the bench process, raw asyncio HTTP/1.1, keep-alive"
        )
        say(f"  (g) {dist}: {run.books.statuses()}   verified: {verified}")
        aio(self.servers.drop_database(dsn))

    def run_all(self) -> None:
        dists = self.opts.distributions
        latency_dist = "uniform" if "uniform" in dists else (dists[0] if dists else None)
        paths = self.opts.paths
        for dist in dists:
            say(f"distribution {dist}:")
            if "a" in paths:
                self.baseline(dist)
            if "a1" in paths:
                self.baseline(dist, one_connection=True)
            if "b" in paths:
                self.ceiling(dist)
            if "b_part" in paths:
                self.ceiling_partitioned(dist)
            if "k" in paths:
                self.write_ceiling(dist)
            with_latency = dist == latency_dist and self.opts.latency_seconds > 0 and "latency" in paths
            if paths & {"c", *VARIANTS, "d", "f", "h", "i"} or with_latency:
                self.end_to_end(dist, with_latency=with_latency)
            if "g" in paths:
                self.holds_http(dist)
        if "e" in paths:
            self.noop()
        if "scale" in paths:
            for processes in self.opts.scale_out:
                self.scale_out(processes)

    def close(self) -> None:
        for fleet in self.fleets:
            fleet.terminate()
        for fleet in self.fleets:
            try:
                fleet.stop()
            except Exception as exc:
                print(f"could not stop a worker fleet: {exc}", file=sys.stderr)
        self.fleets.clear()


def _header(opts: BenchOptions, settings: Settings, info: ServerInfo) -> dict[str, Any]:
    import psutil

    prefetch = opts.prefetch or settings.worker_prefetch
    return {
        "quick": opts.quick,
        "machine": f"{os.cpu_count()} cores, {psutil.virtual_memory().total / 2**30:.0f} GiB, "
                   f"Python {platform.python_version()}, {platform.system()} {platform.release()}",
        "postgres": info.postgres,
        "redis": info.redis,
        "workers": f"{opts.processes} processes x {opts.threads} threads, prefetch {prefetch} messages "
                   f"/ {settings.worker_prefetch_events:,} events, "
                   f"pool_max_size {settings.pool_max_size}, log level {opts.worker_log_level}; "
                   f"(a)/(b) on {opts.processes} processes x {opts.connections} connections"
                   + (f", (k) on {opts.processes} x {opts.ceiling_connections or settings.micro_batch_concurrency}"
                      if "k" in opts.paths else ""),
        "workload": f"{opts.users:,} users, batch {opts.batch_size} events/message, "
                    f"usage.recorded with explicit credits, seed {opts.seed}"
                    + (f"; (c) and {'/'.join(sorted(opts.paths & set(VARIANTS)))} in turns over {opts.rounds} parts"
                       if opts.paths & set(VARIANTS) else ""),
        "code": _code_version(),
    }  # fmt: skip


def main(opts: BenchOptions, settings: Settings) -> int:
    # this process's own queries are the checks, which read whole tables (reconcile's grant
    # check takes ~0.5 s a page): not slow queries worth a warning line in the report
    db.set_slow_query_threshold(600_000)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # a line per readiness poll of an ingress
    logs = Path(tempfile.mkdtemp(prefix="pedro-bench-logs-"))
    report = Report()
    servers = BenchServers(settings)
    workload = Workload(opts.users, opts.seed)
    bench: Bench | None = None
    failed: str | None = None
    started = time.monotonic()
    load_at_start = os.getloadavg()[0]
    try:
        servers.start()
        info = aio(servers.info())
        report.header = _header(opts, settings, info)
        say(f"pedro-worker bench: {info.postgres}; seeding {opts.users:,} users …")
        aio(servers.build_template(workload.clerk_ids, START_CREDITS))
        bench = Bench(opts, settings, servers, info, workload, report, logs)
        bench.run_all()
    except ExactlyOnceViolation as exc:
        report.violation = str(exc)
        failed = "exactly-once violation"
        print("\n" + "!" * 80 + f"\nEXACTLY-ONCE VIOLATION in {exc.measurement}:", file=sys.stderr)
        for problem in exc.problems:
            print(f"  - {problem}", file=sys.stderr)
        print("!" * 80, file=sys.stderr, flush=True)
    except (FleetError, RuntimeError, TimeoutError, OSError) as exc:
        failed = f"{type(exc).__name__}: {exc}"
        print(f"\nbench failed: {failed}", file=sys.stderr, flush=True)
    finally:
        if bench is not None:
            bench.close()
        try:
            aio(servers.drop_all())
        except Exception as exc:
            print(f"could not drop the bench databases: {exc}", file=sys.stderr)
        servers.stop()
    load = os.getloadavg()[0]
    report.header["duration"] = f"{time.monotonic() - started:.0f} s; load average {load_at_start:.2f} at start, {load:.2f} at end"
    print("\n" + report.render(), flush=True)
    if opts.json_out:
        report.write_json(opts.json_out)
        print(f"\nfigures written to {opts.json_out}")
    if failed or opts.keep_logs:
        print(f"worker and lane logs kept in {logs}")
    else:
        shutil.rmtree(logs, ignore_errors=True)
    return 1 if failed else 0
