"""Where the CPU went during a measurement: PostgreSQL, Redis, the workers, the bench itself,
and the ingress process when one serves the path ((h), (i): bench/http_paths.py).

Every local process is read with psutil: a process tree's time is its live processes' user+system
time plus what its root has reaped from exited children (`children_user/system`), so backends
that come and go are not lost. Servers given by URL are not on this machine's process table:
their share shows as "-". On a 2-core machine a total near 2.0 cores means the path is
CPU-bound; far below means it waits (locks, round trips, throttling). "other" is the rest of the
machine's busy time meanwhile: anything else running skews the figure.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import psutil

COMPONENTS = ("postgres", "redis", "workers", "bench", "ingress", "other")
_OWN = COMPONENTS[:-1]


def tree_cpu(pid: int | None) -> float | None:
    if pid is None:
        return None
    try:
        root = psutil.Process(pid)
        t = root.cpu_times()
        total = t.user + t.system + t.children_user + t.children_system
        for child in root.children(recursive=True):
            try:
                c = child.cpu_times()
                total += c.user + c.system
            except psutil.NoSuchProcess:
                continue
        return total
    except psutil.NoSuchProcess:
        return None


def machine_busy() -> float:
    """CPU seconds this machine spent not idle, over all cores, since boot."""
    t = psutil.cpu_times()
    return sum(t) - t.idle - getattr(t, "iowait", 0.0) - getattr(t, "guest", 0.0) - getattr(t, "guest_nice", 0.0)


def own_cpu() -> float:
    t = psutil.Process().cpu_times()
    return t.user + t.system


def postmaster_pid(pgdata: Path) -> int | None:
    try:
        return int((pgdata / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


@dataclass
class CpuUse:
    """CPU seconds per component over one measurement of `seconds` wall time."""

    seconds: float
    events: int
    cpu: dict[str, float | None] = field(default_factory=dict)

    def plus(self, other: CpuUse) -> CpuUse:
        """Two measurements of one path taken in turns (the grant comparison's rounds) as one."""
        cpu: dict[str, float | None] = {}
        for c in self.cpu.keys() | other.cpu.keys():
            a, b = self.cpu.get(c), other.cpu.get(c)
            cpu[c] = None if a is None or b is None else a + b
        return CpuUse(self.seconds + other.seconds, self.events + other.events, cpu)

    def cores(self, component: str) -> float | None:
        value = self.cpu.get(component)
        return None if value is None or self.seconds <= 0 else value / self.seconds

    @property
    def total_cores(self) -> float:
        """Cores used by the bench's own processes (not "other")."""
        own = sum(v for c, v in self.cpu.items() if v is not None and c != "other")
        return own / self.seconds if self.seconds > 0 else 0.0

    def us_per_event(self, component: str) -> float | None:
        value = self.cpu.get(component)
        return None if value is None or not self.events else value / self.events * 1e6

    def render(self) -> str:
        parts = []
        for c in (*_OWN, *sorted(set(self.cpu) - set(COMPONENTS))):  # and extras, e.g. (cp)'s pgbouncer
            cores = self.cores(c)
            if cores is not None:
                parts.append(f"{c} {cores:.2f} ({self.us_per_event(c):.0f} us/ev)")
        other = self.cores("other")
        tail = f"; other processes {other:.2f}" if other is not None else ""
        return "cores: " + ", ".join(parts) + f"; total {self.total_cores:.2f}{tail}"


class CpuMeter:
    def __init__(self, postgres_pid: int | None, redis_pid: int | None) -> None:
        self.postgres_pid = postgres_pid
        self.redis_pid = redis_pid

    def snapshot(self, workers_pid: int | None = None, ingress_pid: int | None = None) -> dict[str, float | None]:
        return {
            "postgres": tree_cpu(self.postgres_pid),
            "redis": tree_cpu(self.redis_pid),
            "workers": tree_cpu(workers_pid),
            "bench": own_cpu(),
            "ingress": tree_cpu(ingress_pid),
            "machine": machine_busy(),
        }

    @staticmethod
    def use(before: dict[str, float | None], after: dict[str, float | None], seconds: float, events: int,
            extra: dict[str, float] | None = None) -> CpuUse:  # fmt: skip
        cpu: dict[str, float | None] = {}
        for c in (*_OWN, "machine"):
            a, b = before.get(c), after.get(c)
            cpu[c] = None if a is None or b is None else max(0.0, b - a)
        for c, value in (extra or {}).items():  # e.g. the lane processes of (a)/(b) as "workers"
            cpu[c] = value
        machine = cpu.pop("machine")
        # Everything else that ran on this machine meanwhile (other jobs, the kernel's own work):
        # a large share means the figure was measured on a busy machine.
        ours = sum(v for v in cpu.values() if v is not None)
        cpu["other"] = None if machine is None else max(0.0, machine - ours)
        return CpuUse(seconds, events, cpu)
