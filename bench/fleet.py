"""Real worker processes for the end-to-end paths, and the bench's side of the queue; a real
ingress process for the credit API (the chaos run's holds).

A fleet is `python -m dramatiq <module> --processes P --threads T` (what `pedro-worker worker`
runs) with DATABASE_URL / REDIS_URL and a fresh Redis namespace in its environment. It is ready
when every worker process has a heartbeat in Redis, i.e. has booted (pool created, schema
checked) and started consuming. A sampler thread records the RSS of every process of the fleet.
A run is over when the broker's `qsize` of the queue (queued + delayed + unacked) reaches 0:
a message is acked only after its transaction has committed.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self

import httpx
import psutil
from pydantic import SecretStr

from worker.broker import build_broker
from worker.settings import ROOT, Settings

_POLL_S = 0.005


def log_tail(path: Path, lines: int = 15) -> str:
    """The last lines of a process's log, indented, for an error message."""
    try:
        text = path.read_text(errors="replace").splitlines()[-lines:]
    except OSError:
        return ""
    return "\n  " + "\n  ".join(text)


class FleetError(RuntimeError):
    pass


@dataclass
class RssPeak:
    per_process_mb: float = 0.0  # largest single process
    fleet_mb: float = 0.0  # largest sum over the fleet at one instant
    worker_processes: int = 0
    by_pid: dict[int, float] = field(default_factory=dict)


class Fleet:
    def __init__(
        self,
        module: str,
        *,
        database_url: str,
        redis_url: str,
        processes: int,
        threads: int,
        settings: Settings,
        log_path: Path,
        log_level: str,
        prefetch: int | None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        """`env`: more environment for the worker processes (it wins over the bench's own)."""
        self.module = module
        self.processes = processes
        self.threads = threads
        self.log_path = log_path
        self.namespace = f"pedro-bench-{uuid.uuid4().hex[:10]}"
        self.settings = settings.model_copy(update={
            "database_url": SecretStr(database_url), "redis_url": SecretStr(redis_url),
            "redis_namespace": self.namespace,
        })  # fmt: skip
        self.env = {
            **os.environ,
            "DATABASE_URL": database_url, "PEDRO_DATABASE_URL": database_url,
            "REDIS_URL": redis_url, "PEDRO_REDIS_URL": redis_url,
            "PEDRO_REDIS_NAMESPACE": self.namespace, "PEDRO_LOG_LEVEL": log_level,
        }  # fmt: skip
        if prefetch:
            self.env["PEDRO_WORKER_PREFETCH"] = str(prefetch)
        self.env.update(env or {})
        self.proc: subprocess.Popen | None = None
        self._terminated = False
        self.broker = build_broker(self.settings, worker=False)  # the publisher's side
        self.rss = RssPeak()
        self._sampling = threading.Event()
        self._sampler: threading.Thread | None = None

    # --- lifecycle -------------------------------------------------------------------------------

    def start(self, timeout_s: float = 90) -> Fleet:
        argv = [sys.executable, "-m", "dramatiq", self.module,
                "--processes", str(self.processes), "--threads", str(self.threads)]  # fmt: skip
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            argv, cwd=ROOT, env=self.env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True
        )
        self._wait_ready(timeout_s)
        self._sampling.set()
        self._sampler = threading.Thread(target=self._sample_rss, name="rss-sampler", daemon=True)
        self._sampler.start()
        return self

    def _wait_ready(self, timeout_s: float) -> None:
        key = f"{self.namespace}:__heartbeats__"
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self._check_alive()
            beating = {m.decode() for m in self.broker.client.zrange(key, 0, -1)} - {self.broker.broker_id}
            if len(beating) >= self.processes:
                return
            time.sleep(0.05)
        raise FleetError(f"{self.module}: {self.processes} workers not ready within {timeout_s:.0f}s" + self._tail())

    def _check_alive(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            code = None if self.proc is None else self.proc.returncode
            raise FleetError(f"{self.module}: worker fleet exited (code {code})" + self._tail())

    def _tail(self, lines: int = 15) -> str:
        return log_tail(self.log_path, lines)

    def terminate(self) -> None:
        """Ask the fleet to shut down gracefully (dramatiq takes a few seconds); `stop` waits."""
        self._sampling.clear()
        # Once only: dramatiq takes a second SIGTERM as "kill now" (no graceful stop).
        if self.proc is not None and self.proc.poll() is None and not self._terminated:
            self.proc.send_signal(signal.SIGTERM)
            self._terminated = True

    def stop(self, timeout_s: float = 30) -> None:
        self.terminate()
        if self.proc is not None:
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)  # the group of the fleet we started
                self.proc.wait()
        if self._sampler is not None:
            self._sampler.join(2)
        keys = list(self.broker.client.scan_iter(f"{self.namespace}*"))
        if keys:
            self.broker.client.delete(*keys)
        self.broker.close()
        if getattr(self, "_log", None):
            self._log.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- measurement -----------------------------------------------------------------------------

    def _sample_rss(self) -> None:
        assert self.proc is not None
        try:
            parent = psutil.Process(self.proc.pid)
        except psutil.NoSuchProcess:
            return
        while self._sampling.is_set():
            total = 0.0
            children = 0
            try:
                procs = [parent, *parent.children(recursive=True)]
            except psutil.NoSuchProcess:
                return
            for p in procs:
                try:
                    mb = p.memory_info().rss / 2**20
                except psutil.NoSuchProcess:
                    continue
                total += mb
                if p.pid != parent.pid:
                    children += 1
                    self.rss.per_process_mb = max(self.rss.per_process_mb, mb)
                self.rss.by_pid[p.pid] = max(self.rss.by_pid.get(p.pid, 0.0), mb)
            self.rss.fleet_mb = max(self.rss.fleet_mb, total)
            self.rss.worker_processes = max(self.rss.worker_processes, children)
            time.sleep(0.1)

    def qsize(self, queue: str = "usage") -> int:
        return self.broker.do_qsize(queue)

    def dead_letters(self, queue: str = "usage") -> int:
        return self.broker.client.hlen(f"{self.namespace}:{queue}.XQ.msgs")

    def run(self, publish: Callable[[], None], timeout_s: float, queue: str = "usage") -> float:
        """Seconds from the first publish until every message is acked (its work committed)."""
        started = time.monotonic()
        publish()
        deadline = started + timeout_s
        while self.qsize(queue):
            if time.monotonic() > deadline:
                raise FleetError(f"queue {queue!r} not drained within {timeout_s:.0f}s "
                                 f"({self.qsize(queue)} messages left)" + self._tail())  # fmt: skip
            self._check_alive()
            time.sleep(_POLL_S)
        return time.monotonic() - started


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class IngressProcess:
    """`pedro-worker ingress` (uvicorn, the credit API and POST /v1/events) in its own process
    group, on a free local port, accepting one bearer token. `env` carries DATABASE_URL,
    REDIS_URL and the Redis namespace, as a worker's does; `argv`, another command serving it
    the same way (bench (g)'s `python -m bench.holds serve`, with its experiment knobs)."""

    def __init__(self, env: dict[str, str], log_path: Path, token: str, host: str = "127.0.0.1",
                 argv: list[str] | None = None) -> None:  # fmt: skip
        self.host = host
        self.port = free_port(host)
        self.url = f"http://{host}:{self.port}"
        self.env = {**env, "PEDRO_INGRESS_HOST": host, "PEDRO_INGRESS_PORT": str(self.port),
                    "PEDRO_API_TOKENS": token}  # fmt: skip
        self.argv = argv or [sys.executable, "-m", "worker.cli", "ingress"]
        self.log_path = log_path
        self.proc: subprocess.Popen | None = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def _tail(self, lines: int = 15) -> str:
        return log_tail(self.log_path, lines)

    def start(self, timeout_s: float = 30) -> IngressProcess:
        with open(self.log_path, "ab") as out:
            self.proc = subprocess.Popen(
                self.argv, cwd=ROOT, env=self.env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise FleetError(f"the ingress exited (code {self.proc.returncode})" + self._tail())
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.stop()
        raise FleetError(f"the ingress did not answer /healthz within {timeout_s:.0f}s" + self._tail())

    def kill(self) -> None:
        """kill -9 of its process group (requests in flight are lost; their transactions roll back)."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def stop(self, timeout_s: float = 30) -> None:
        """SIGTERM (uvicorn finishes in-flight requests, the lifespan closes the pool, a profile
        is written), SIGKILL to its group if it lingers."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def __enter__(self) -> IngressProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
