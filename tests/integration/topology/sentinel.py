"""Debian's redis-server as a primary and its replicas (one by default), watched by Redis
Sentinel, for the failover tests (docs/topologies.md).

Every server is its own process group on a free loopback port, in a temporary directory, and is
killed with `os.killpg` on the way out. Every Redis server runs `appendonly yes` with
`appendfsync everysec`: what a production Redis should run (`always` costs an fsync per write),
and the tests kill processes, not machines, so what a server acknowledged is in the kernel's page
cache either way — the durability under test is the replication's (WAIT), not the disk's.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import redis

from tests.integration.topology.servers import require_binary
from worker.embedded import free_port

MASTER = "mymaster"
DOWN_AFTER_MS = 1_000  # the sentinels call a silent primary down after this
FAILOVER_TIMEOUT_MS = 3_000


class Node:
    """One server process (redis-server or redis-sentinel) in its own process group."""

    def __init__(self, binary: str, conf: Path, port: int, args: tuple[str, ...] = (), password: str | None = None) -> None:
        self.binary, self.conf, self.port, self.args, self.password = binary, conf, port, args, password
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen([self.binary, str(self.conf), *self.args], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
        deadline = time.monotonic() + 10
        while True:
            try:
                redis.Redis(port=self.port, password=self.password, socket_timeout=1).ping()
                return
            except redis.ConnectionError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"{self.binary} did not start on port {self.port} ({self.conf})") from None
                time.sleep(0.05)

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                pass
            self.proc.wait(10)
        self.proc = None

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


class SentinelTopology:
    """A primary, `replicas` replicas and `sentinels` sentinels (quorum: a majority of them)."""

    def __init__(self, *, replicas: int = 1, sentinels: int = 3, appendfsync: str = "everysec",
                 sentinel_password: str | None = None) -> None:  # fmt: skip
        self.server = require_binary("redis-server")
        self.sentinel_binary = require_binary("redis-sentinel")
        self.base = Path(tempfile.mkdtemp(prefix="pedro-sentinel-"))
        self.appendfsync = appendfsync
        self.redis: list[Node] = []
        self.sentinels: list[Node] = []
        self.sentinel_count = sentinels
        self.replica_count = replicas
        self.sentinel_password = sentinel_password  # `requirepass` on the sentinels (and sentinel-pass among them)

    # --- lifecycle -------------------------------------------------------------------------

    def start(self) -> SentinelTopology:
        primary = self._redis_node("primary")
        primary.start()
        self.redis = [primary]
        for n in range(self.replica_count):
            replica = self._redis_node(f"replica-{n}", replica_of=primary.port)
            replica.start()
            self.redis.append(replica)
        quorum = self.sentinel_count // 2 + 1
        for n in range(self.sentinel_count):
            port = free_port()
            conf = self.base / f"sentinel-{n}.conf"  # the sentinel rewrites it: one file each
            conf.write_text("\n".join([
                f"port {port}", "bind 127.0.0.1", "daemonize no", f"dir {self.base}",
                f"sentinel monitor {MASTER} 127.0.0.1 {primary.port} {quorum}",
                f"sentinel down-after-milliseconds {MASTER} {DOWN_AFTER_MS}",
                f"sentinel failover-timeout {MASTER} {FAILOVER_TIMEOUT_MS}",
                f"sentinel parallel-syncs {MASTER} 1",
                *([f"requirepass {self.sentinel_password}", f"sentinel sentinel-pass {self.sentinel_password}"]
                  if self.sentinel_password else []),
            ]) + "\n")  # fmt: skip
            node = Node(self.sentinel_binary, conf, port, ("--sentinel",), password=self.sentinel_password)
            node.start()
            self.sentinels.append(node)
        self._wait(self._ready, 30, "the sentinels to see the replica and each other")
        return self

    def stop(self) -> None:
        for node in [*self.sentinels, *self.redis]:
            node.kill()
        shutil.rmtree(self.base, ignore_errors=True)

    def __enter__(self) -> SentinelTopology:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- what the tests use ----------------------------------------------------------------

    @property
    def sentinel_addresses(self) -> list[str]:
        return [f"127.0.0.1:{node.port}" for node in self.sentinels]

    def master_port(self) -> int | None:
        """The primary's port as the first sentinel that answers sees it."""
        for node in self.sentinels:
            try:
                _, port = self.sentinel_client(node).sentinel_get_master_addr_by_name(MASTER)
                return int(port)
            except (redis.RedisError, TypeError):
                continue
        return None

    def sentinel_client(self, node: Node) -> redis.Redis:
        return redis.Redis(port=node.port, password=self.sentinel_password, socket_timeout=1)

    def node(self, port: int) -> Node:
        return next(node for node in self.redis if node.port == port)

    def primary(self) -> Node:
        port = self.master_port()
        assert port is not None, "no sentinel names a primary"
        return self.node(port)

    def replica(self) -> Node:
        primary = self.primary()
        return next(node for node in self.redis if node is not primary)

    def kill_primary(self) -> Node:
        """SIGKILL the primary (a crash: no shutdown, no last fsync); returns it."""
        primary = self.primary()
        primary.kill()
        return primary

    def wait_promoted(self, old: Node, timeout: float = 30) -> tuple[Node, float]:
        """Wait until the sentinels name another node than `old` the primary and it says so;
        returns it and the seconds taken."""
        started = time.monotonic()
        self._wait(lambda: self._confirmed_primary(other_than=old), timeout, "the sentinels to promote a replica")
        return self.primary(), time.monotonic() - started

    def settled_primary(self, timeout: float = 30) -> Node:
        """The node the sentinels name the primary, once it says so itself. On a loaded machine
        (a 1 s down-after) the sentinels may fail over a second time, back to the restarted old
        primary once it is a replica in sync: a test that checks where the workers resumed asks
        this, not the node promoted first."""
        self._wait(self._confirmed_primary, timeout, "the sentinels' primary to say it is one")
        return self.primary()

    def wait_replicating(self, timeout: float = 30) -> float:
        """Wait until the primary has a replica in sync again (a restarted old primary is made
        one by the sentinels, after a full resync); seconds taken."""
        started = time.monotonic()

        def online() -> bool:
            port = self.master_port()
            if port is None:
                return False
            info = redis.Redis(port=port, socket_timeout=1).info("replication")
            return info.get("role") == "master" and info.get("slave0", {}).get("state") == "online"

        self._wait(online, timeout, "a replica in sync with the primary")
        return time.monotonic() - started

    def client(self, node: Node) -> redis.Redis:
        return redis.Redis(port=node.port, socket_timeout=5)

    # --- internals -------------------------------------------------------------------------

    def _redis_node(self, name: str, *, replica_of: int | None = None) -> Node:
        port = free_port()
        data = self.base / name
        data.mkdir()
        lines = [
            f"port {port}", "bind 127.0.0.1", "daemonize no", f"dir {data}",
            "appendonly yes", f"appendfsync {self.appendfsync}", 'save ""',
            "repl-diskless-sync-delay 0",  # the replica's first sync starts at once, not after 5 s
            f"logfile {data / 'redis.log'}",
        ]  # fmt: skip
        if replica_of is not None:
            lines.append(f"replicaof 127.0.0.1 {replica_of}")
        conf = self.base / f"{name}.conf"
        conf.write_text("\n".join(lines) + "\n")
        return Node(self.server, conf, port)

    def _confirmed_primary(self, other_than: Node | None = None) -> bool:
        """Whether the node the sentinels name the primary (other than `other_than`) says so too."""
        port = self.master_port()
        if port is None or (other_than is not None and port == other_than.port):
            return False
        return redis.Redis(port=port, socket_timeout=1).info("replication")["role"] == "master"

    def _ready(self) -> bool:
        try:
            for node in self.sentinels:
                state = self.sentinel_client(node).sentinel_master(MASTER)
                if state["num-slaves"] < self.replica_count or state["num-other-sentinels"] < len(self.sentinels) - 1:
                    return False
            info = redis.Redis(port=self.redis[0].port, socket_timeout=1).info("replication")
            return all(info.get(f"slave{n}", {}).get("state") == "online" for n in range(self.replica_count))
        except redis.RedisError:
            return False

    @staticmethod
    def _wait(check, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not check():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}")
            time.sleep(0.05)
