"""The bench's figures, the targets of issues 6, 18, 19, 20 and 21 and the printed table."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .cpu import COMPONENTS, CpuUse
from .holds import ClosedLoop, OpenLoop
from .latency import LatencyResult

PATHS = {
    "a": "(a) naive: txn per event, no queue",
    "a1": "    same, on one connection",
    "b": "(b) ceiling: apply_usage_batch, no queue",
    "b_part": "    same, users partitioned across lanes",
    "k": "(k) write ceiling: (c)'s rows by COPY",
    "c": "(c) e2e, batch messages",
    "c3": "    same, 3 live grants per user (c3)",
    "cn": "    same, notifications on (cn)",
    "cp": "    same, through PgBouncer (cp)",
    "d": "(d) e2e, single-event messages",
    "e": "(e) dramatiq no-op actor, 1 event/msg",
    "h": "(h) e2e over HTTP, 1 event/POST",
    "i": "(i) e2e over HTTP, 100 events/POST",
    "f": "(f) replay e2e, batch messages",
    "f_direct": "(f) replay direct (apply_usage_batch)",
}

RATIOS = (("c", "a1"), ("c", "a"), ("c", "b"), ("d", "e"), ("c3", "c"), ("c3", "b"), ("cn", "c"), ("c", "k"),
          ("i", "c"), ("f", "c"), ("cp", "c"))
RATIO_LABELS = {("c3", "c"): "(c) 3 grants / (c) 1 grant", ("c3", "b"): "(c) 3 grants / (b)",
                ("cn", "c"): "(c) notifications on / (c)", ("cp", "c"): "(c) through PgBouncer / (c) direct"}  # fmt: skip
_OPTIONAL = ("c3", "cn", "cp", "k", "i")  # ratios with these are printed only when they were measured


@dataclass
class Figure:
    path: str
    distribution: str
    events: int
    seconds: float
    cpu: CpuUse | None = None

    @property
    def rate(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else math.inf


@dataclass
class ScaleRun:
    processes: int
    events: int
    deliveries: int
    seconds: float
    verified: str
    cpu: CpuUse | None = None

    @property
    def rate(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else math.inf


@dataclass
class Report:
    header: dict[str, Any] = field(default_factory=dict)
    figures: dict[tuple[str, str], Figure] = field(default_factory=dict)
    latencies: list[LatencyResult] = field(default_factory=list)  # the first at half of (d)'s rate
    rss_per_process_mb: float = 0.0
    rss_fleet_mb: float = 0.0
    scale: list[ScaleRun] = field(default_factory=list)
    checks: list[tuple[str, str]] = field(default_factory=list)  # (measurement, what was verified)
    crossings: dict[str, int] = field(default_factory=dict)  # dist -> (c3) debits from 2+ grants
    notified: dict[str, int] = field(default_factory=dict)  # dist -> (cn) credits.low written (= crossings)
    holds_closed: list[ClosedLoop] = field(default_factory=list)  # (g) closed loops, healthz and holds
    holds_open: list[OpenLoop] = field(default_factory=list)  # (g) paced hold -> capture
    holds_setup: str = ""
    http_healthz: list[ClosedLoop] = field(default_factory=list)  # GET /healthz beside (h) and (i)
    http_setup: str = ""
    violation: str | None = None

    def add(self, path: str, distribution: str, events: int, seconds: float, cpu: CpuUse | None = None) -> Figure:
        fig = Figure(path, distribution, events, seconds, cpu)
        self.figures[(path, distribution)] = fig
        return fig

    def rate(self, path: str, distribution: str) -> float | None:
        fig = self.figures.get((path, distribution)) or self.figures.get((path, "any"))
        return fig.rate if fig else None

    def ratio(self, top: str, bottom: str, distribution: str) -> float | None:
        a, b = self.rate(top, distribution), self.rate(bottom, distribution)
        return a / b if a is not None and b else None

    def healthz(self, distribution: str) -> float | None:
        """GET /healthz requests/s measured beside (h) and (i)."""
        runs = [c.rate for c in self.http_healthz if c.distribution == distribution]
        return runs[0] if runs else None

    def http_over_healthz(self, distribution: str) -> float | None:
        """(h) events/s (one event per request) / healthz requests/s, same ingress and client."""
        h, floor = self.rate("h", distribution), self.healthz(distribution)
        return h / floor if h is not None and floor else None

    def holds_best(self, distribution: str) -> tuple[ClosedLoop, ClosedLoop] | None:
        """(g): the closed loop with the most hold -> capture pairs/s, and healthz at its concurrency."""
        holds = [c for c in self.holds_closed if c.distribution == distribution and c.kind == "holds"]
        if not holds:
            return None
        best = max(holds, key=lambda c: c.rate)
        healthz = [c for c in self.holds_closed if c.distribution == distribution and c.kind == "healthz"
                   and c.concurrency == best.concurrency]  # fmt: skip
        return (best, healthz[0]) if healthz else None

    def holds_distributions(self) -> list[str]:
        seen = [c.distribution for c in self.holds_closed] + [o.distribution for o in self.holds_open]
        return [d for d in ("uniform", "hot") if d in seen]

    def distributions(self) -> list[str]:
        return [d for d in ("uniform", "hot") if any(k[1] == d for k in self.figures)]

    # --- targets -------------------------------------------------------------------------------

    def targets(self) -> list[tuple[str, str, float | None, bool | None]]:
        """(target, distribution, value, passed)."""
        rows: list[tuple[str, str, float | None, bool | None]] = []

        def check(name: str, dist: str, value: float | None, ok: Any) -> None:
            rows.append((name, dist, value, None if value is None else bool(ok(value))))

        for d in self.distributions():
            check("(c) >= 20,000 events/s", d, self.rate("c", d), lambda v: v >= 20_000)
            check("(c)/(a) >= 15, (a) on one connection", d, self.ratio("c", "a1", d), lambda v: v >= 15)
            check("(c)/(a) >= 15, (a) as concurrent as (c)", d, self.ratio("c", "a", d), lambda v: v >= 15)
            check("(c)/(b) >= 0.6", d, self.ratio("c", "b", d), lambda v: v >= 0.6)
            check("(d)/(e) >= 0.7", d, self.ratio("d", "e", d), lambda v: v >= 0.7)
            check("(c) 3 grants / (c) 1 grant >= 0.9", d, self.ratio("c3", "c", d), lambda v: v >= 0.9)
            check("(c) 3 grants / (b) >= 0.6", d, self.ratio("c3", "b", d), lambda v: v >= 0.6)
            check("(c) notifications on / (c) >= 0.9", d, self.ratio("cn", "c", d), lambda v: v >= 0.9)
            check("(f) replay e2e >= 100,000 events/s", d, self.rate("f", d), lambda v: v >= 100_000)
            check("(c)/(k) >= 0.5, (k) the write ceiling", d, self.ratio("c", "k", d), lambda v: v >= 0.5)
            check("(f)/(c) >= 5", d, self.ratio("f", "c", d), lambda v: v >= 5)
            check("(h) events/s / healthz req/s >= 0.6", d, self.http_over_healthz(d), lambda v: v >= 0.6)
            check("(i)/(c) >= 0.5", d, self.ratio("i", "c", d), lambda v: v >= 0.5)
        for lat in self.latencies:
            name = (f"p99 <= 100 ms @ half (d) = {lat.rate:,}/s" if lat.basis.startswith("half")
                    else f"p99 publish->commit <= 100 ms @ {lat.rate:,}/s")  # the first targets' name
            check(name, "uniform", lat.p99_ms, lambda v: v <= 100)
        if self.rss_per_process_mb:
            check("peak worker RSS <= 200 MB", "-", self.rss_per_process_mb, lambda v: v <= 200)
        for d in self.holds_distributions():
            for o in self.holds_open:
                if o.distribution == d and o.rate <= 200:
                    check(f"(g) hold p99 <= 10 ms @ {o.rate:,} holds/s", d, o.hold_p99_ms, lambda v: v <= 10)
            if best := self.holds_best(d):
                check("(g) hold->capture/s / healthz req/s >= 0.5", d, best[0].rate / best[1].rate,
                      lambda v: v >= 0.5)  # fmt: skip
        return rows

    # --- output --------------------------------------------------------------------------------

    def render(self) -> str:
        out: list[str] = []
        h = self.header
        out.append("pedro-worker bench" + (" --quick" if h.get("quick") else ""))
        for key in ("machine", "postgres", "pgbouncer", "redis", "workers", "workload", "code", "duration"):
            if key in h:
                out.append(f"  {key:<9} {h[key]}")
        dists = self.distributions()
        if dists:  # (g) alone has no events/s figures
            out += self._render_figures(dists)
        if self.crossings:
            out.append("(c3): debits that took from 2-3 grants      "
                       + "".join(f"{_num(self.crossings.get(d)):>14}" for d in dists))  # fmt: skip
        if self.notified:
            out.append("(cn): credits.low written (= crossings)     "
                       + "".join(f"{_num(self.notified.get(d)):>14}" for d in dists))  # fmt: skip
        for lat in self.latencies:
            out.append("")
            out.append(f"latency publish->commit at {lat.rate:,}/s, {lat.basis} (achieved {lat.achieved_rate:,.0f}/s, "
                       f"{lat.samples:,} samples, single-event messages, uniform):")  # fmt: skip
            out.append(f"  p50 {lat.p50_ms:.1f} ms   p99 {lat.p99_ms:.1f} ms   max {lat.max_ms:.1f} ms"
                       f"   [commit = {lat.clock}]")  # fmt: skip
        if self.http_healthz:
            out.append("")
            out.append(f"HTTP ingress beside (h) and (i): {self.http_setup}")
            for c in self.http_healthz:
                ingress = c.cpu.cores("ingress") if c.cpu else None
                out.append(f"  GET /healthz {c.distribution:<8} x{c.concurrency}: {c.rate:,.0f} requests/s "
                           f"(ingress {_num(ingress, 2)} cores, other {_num(c.cpu.cores('other') if c.cpu else None, 2)})")  # fmt: skip
        if self.rss_per_process_mb:
            out.append(f"peak RSS: {self.rss_per_process_mb:.0f} MB per worker process, "
                       f"{self.rss_fleet_mb:.0f} MB whole fleet (incl. dramatiq's parent process)")  # fmt: skip
        if self.scale:
            out.append("")
            out.append("scale-out (uniform; every event published twice, the copy in another message):")
            for s in self.scale:
                out.append(f"  {s.processes} process{'es' if s.processes > 1 else '  '}  "
                           f"{_num(s.rate):>10} distinct events/s  ({s.deliveries:,} deliveries)  "
                           f"exactly-once OK: {s.verified}"
                           + (f"; {s.cpu.total_cores:.2f} cores" if s.cpu else ""))  # fmt: skip
        if self.holds_closed or self.holds_open:
            out.append("")
            out += self._render_holds()
        out.append("")
        out.append(f"{'target':<44}{'dist':>8}{'value':>14}  result")
        for name, dist, value, passed in self.targets():
            verdict = "n/a" if passed is None else ("PASS" if passed else "MISS")
            out.append(f"{name:<44}{dist:>8}{_num(value, 2 if value is not None and value < 100 else 0):>14}  {verdict}")
        measured = [*self.figures.values(), *self.holds_closed, *self.holds_open, *self.http_healthz]
        busiest = max((f.cpu.cores("other") or 0.0 for f in measured if f.cpu), default=0.0)
        if busiest > 0.3:
            out.append("")
            out.append(f"WARNING: other processes on this machine used up to {busiest:.2f} cores during the "
                       "measurements (column 'other'): the figures are lower than on an idle machine.")  # fmt: skip
        out.append("")
        if self.violation:
            out.append(f"EXACTLY-ONCE VIOLATION: {self.violation}")
        else:
            out.append(f"exactly-once verified after each of {len(self.checks)} measurements "
                       "(row counts, journal, drift, computed balances)")  # fmt: skip
        return "\n".join(out)

    def _render_figures(self, dists: list[str]) -> list[str]:
        out: list[str] = []
        out.append("")
        out.append(f"{'events/s':<44}" + "".join(f"{d:>14}" for d in dists) + f"{'events':>12}")
        for path, label in PATHS.items():
            rates = [self.rate(path, d) for d in dists]
            if all(r is None for r in rates):
                continue
            counts = {f.events for (p, _), f in self.figures.items() if p == path}
            out.append(f"{label:<44}" + "".join(f"{_num(r):>14}" for r in rates)
                       + f"{'/'.join(f'{c:,}' for c in sorted(counts)):>12}")  # fmt: skip
        if any(f.cpu for f in self.figures.values()):
            out.append("")
            out.append(f"{'CPU, in cores (2.0 = both cores busy)':<44}{'dist':>8}"
                       + "".join(f"{c:>10}" for c in COMPONENTS[:-1]) + f"{'total':>8}{'other':>8}")  # fmt: skip
            for (path, dist), fig in self.figures.items():
                if fig.cpu is None:
                    continue
                cells = "".join(f"{_num(fig.cpu.cores(c), 2):>10}" for c in COMPONENTS[:-1])
                out.append(f"{PATHS[path][:44]:<44}{dist:>8}{cells}{fig.cpu.total_cores:>8.2f}"
                           f"{_num(fig.cpu.cores('other'), 2):>8}")  # fmt: skip
        out.append("")
        out.append(f"{'ratios':<44}" + "".join(f"{d:>14}" for d in dists))
        for top, bottom in RATIOS:
            if {top, bottom} & set(_OPTIONAL) and all(self.ratio(top, bottom, d) is None for d in dists):
                continue
            label = RATIO_LABELS.get((top, bottom), f"({top})/({bottom})")
            out.append(f"{label:<44}" + "".join(f"{_num(self.ratio(top, bottom, d), 2):>14}" for d in dists))
        if self.http_healthz:
            out.append(f"{'(h) events/s / healthz requests/s':<44}"
                       + "".join(f"{_num(self.http_over_healthz(d), 2):>14}" for d in dists))  # fmt: skip
        return out

    def _render_holds(self) -> list[str]:
        """(g): closed loops (healthz next to hold -> capture, same client and connections), then
        the paced open loops. CPU in cores: the ingress process, PostgreSQL, the client."""

        def cores(run: ClosedLoop | OpenLoop | None, component: str) -> str:
            return _num(run.cpu.cores(component) if run is not None and run.cpu else None, 2)

        out = [f"holds over HTTP (g): {self.holds_setup}"]
        if self.holds_closed:
            out.append(f"  {'closed loop':<12}{'conns':>5}{'healthz/s':>11}{'pairs/s':>9}{'ratio':>8}   "
                       f"{'ingress h | p':>13}{'postgres':>10}{'client h | p':>15}{'other h | p':>15}")  # fmt: skip
            healthz = {(c.distribution, c.concurrency): c for c in self.holds_closed if c.kind == "healthz"}
            for c in self.holds_closed:
                if c.kind != "holds":
                    continue
                h = healthz.get((c.distribution, c.concurrency))
                ratio = c.rate / h.rate if h is not None and h.rate else None
                out.append(f"  {c.distribution:<12}{c.concurrency:>5}{_num(h.rate if h else None):>11}"
                           f"{_num(c.rate):>9}{_num(ratio, 3):>8}   "
                           f"{cores(h, 'workers'):>6} |{cores(c, 'workers'):>5}{cores(c, 'postgres'):>10}"
                           f"{cores(h, 'bench'):>8} |{cores(c, 'bench'):>5}{cores(h, 'other'):>8} |{cores(c, 'other'):>5}")  # fmt: skip
            out.append("  (pairs/s: hold -> capture pairs, two HTTP requests each; ratio = pairs/s / healthz/s;"
                       " CPU in cores, h = during healthz, p = during pairs)")  # fmt: skip
        if self.holds_open:
            out.append(f"  {'open loop':<12}{'holds/s':>8}{'done/s':>8}   hold p50 / p99 / max ms"
                       f"   hold->capture p50 / p99 ms   client lag p99   cores: ingress postgres other")  # fmt: skip
            for o in self.holds_open:
                out.append(f"  {o.distribution:<12}{o.rate:>8,}{o.completed_rate:>8,.0f}   "
                           f"{o.hold_p50_ms:>8.1f} / {o.hold_p99_ms:.1f} / {o.hold_max_ms:.1f}"
                           f"{o.pair_p50_ms:>14.1f} / {o.pair_p99_ms:.1f}{o.send_lag_p99_ms:>14.1f} ms"
                           f"{cores(o, 'workers'):>15}{cores(o, 'postgres'):>9}{cores(o, 'other'):>6}"
                           + ("   SATURATED: arrivals stopped" if o.saturated else ""))  # fmt: skip
            out.append("  (latency from each hold's due time: waiting for a connection or behind a backlog counts)")
        return out

    def to_json(self) -> dict[str, Any]:
        return {
            "header": self.header,
            "figures": [_figure_json(f) for f in self.figures.values()],
            "ratios": {
                f"{t}/{b}": {d: self.ratio(t, b, d) for d in self.distributions()}
                for t, b in RATIOS
            },
            "grant_crossings": self.crossings,
            "low_notifications": self.notified,
            "latency": asdict(self.latencies[0]) if self.latencies else None,  # at half of (d)'s rate
            "latencies": [asdict(lat) for lat in self.latencies],
            "rss_mb": {"per_process": self.rss_per_process_mb, "fleet": self.rss_fleet_mb},
            "scale_out": [{**asdict(s), "rate": s.rate, "cores": s.cpu and s.cpu.total_cores} for s in self.scale],
            "holds": {
                "setup": self.holds_setup,
                "closed": [_holds_json(c, rate=c.rate) for c in self.holds_closed],
                "open": [_holds_json(o) for o in self.holds_open],
            },
            "http": {
                "setup": self.http_setup,
                "healthz": [_holds_json(c, rate=c.rate) for c in self.http_healthz],
                "h_over_healthz": {d: self.http_over_healthz(d) for d in self.distributions()},
            },
            "targets": [{"target": n, "distribution": d, "value": v, "passed": p} for n, d, v, p in self.targets()],
            "checks": self.checks,
            "violation": self.violation,
        }

    def write_json(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_json(), indent=2, default=str) + "\n")


def _figure_json(f: Figure) -> dict[str, Any]:
    cpu = f.cpu
    return {
        **asdict(f),
        "rate": f.rate,
        "cores": {c: cpu.cores(c) for c in COMPONENTS} if cpu else None,
        "us_per_event": {c: cpu.us_per_event(c) for c in COMPONENTS} if cpu else None,
    }


def _holds_json(run: ClosedLoop | OpenLoop, **more: Any) -> dict[str, Any]:
    cpu = run.cpu
    out = {k: v for k, v in asdict(run).items() if k != "cpu"}
    out["cores"] = None
    if cpu is not None:
        cores = {c: cpu.cores(c) for c in COMPONENTS}
        if cores["ingress"] is None:  # (g) measures its ingress process as "workers"
            cores["ingress"] = cores.pop("workers")
        cores["client"] = cores.pop("bench")
        out["cores"] = cores
    return {**out, **more}


def _num(value: float | None, digits: int = 0) -> str:
    if value is None:
        return "-"
    if math.isinf(value) or math.isnan(value):
        return str(value)
    return f"{value:,.{digits}f}"
