"""Redis behind Sentinel (docs/topologies.md): the primary is SIGKILLed mid-run and the replica
promoted; every event the ingress answered 2xx is applied exactly once, by worker processes that
were never restarted. WAIT (`redis_wait_replicas`) is what makes a 2xx survive the failover:
without a replica to acknowledge, the ingress answers 503, within the WAIT timeout."""

from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis
from dramatiq import Message
from pydantic import SecretStr, ValidationError
from redis.sentinel import SentinelConnectionPool, SentinelManagedSSLConnection

from tests.integration.helpers import balance, count, make_user, usage
from tests.integration.ingress.providers import API_TOKEN
from tests.integration.topology.sentinel import MASTER, SentinelTopology
from worker.broker import QUEUES, build_broker
from worker.ingress.server import IngressServer
from worker.ops.keys import Keys
from worker.publisher import Publisher
from worker.redis_client import ReplicasNotAcknowledged, parse_host_port, redis_client
from worker.repo.reconcile import find_balance_drift
from worker.settings import Settings

AUTH = {"Authorization": f"Bearer {API_TOKEN}"}


# --- settings and the client factory (no server) ---------------------------------------------


def test_sentinels_parse_from_a_comma_separated_variable(monkeypatch):
    monkeypatch.setenv("PEDRO_REDIS_SENTINELS", " s1:26379, 10.0.0.2:26380 ,[::1]:26381,")
    monkeypatch.setenv("PEDRO_REDIS_SENTINEL_MASTER", "pedro")
    monkeypatch.delenv("REDIS_URL", raising=False)
    monkeypatch.delenv("PEDRO_REDIS_URL", raising=False)
    settings = Settings(_env_file=None)
    assert settings.redis_sentinels == ["s1:26379", "10.0.0.2:26380", "[::1]:26381"]
    assert [parse_host_port(s) for s in settings.redis_sentinels] == [("s1", 26379), ("10.0.0.2", 26380), ("::1", 26381)]
    assert settings.require_redis_url() == ""  # the sentinels give the address: REDIS_URL is optional


@pytest.mark.parametrize("entry", ["s1", "s1:", ":26379", "s1:0", "s1:65536", "s1:26x79", "::1:26379", "s1 26379"])
def test_a_sentinel_that_is_not_host_port_is_refused_at_start(entry):
    with pytest.raises(ValidationError, match="host:port|brackets"):
        Settings(_env_file=None, redis_sentinels=f"ok:26379,{entry}")


def test_wait_must_end_before_the_ingress_gives_up_on_redis():
    with pytest.raises(ValidationError, match="PEDRO_REDIS_WAIT_TIMEOUT_MS"):
        Settings(_env_file=None, redis_wait_replicas=1, redis_wait_timeout_ms=2_000, ingress_redis_timeout_ms=2_000)
    Settings(_env_file=None, redis_wait_replicas=0, redis_wait_timeout_ms=5_000)  # no WAIT: no bound


def test_the_factory_takes_password_db_and_tls_from_the_url_and_the_address_from_the_sentinels():
    settings = Settings(_env_file=None, redis_sentinels="s1:1,s2:2", redis_sentinel_master="pedro",
                        redis_url=SecretStr("rediss://:s3cret@ignored:6379/3?ssl_cert_reqs=none"))  # fmt: skip
    client = redis_client(settings, socket_timeout=0.5)
    pool = client.connection_pool
    assert isinstance(pool, SentinelConnectionPool) and pool.service_name == "pedro"
    kwargs = pool.connection_kwargs
    assert (kwargs["password"], kwargs["db"], kwargs["socket_timeout"]) == ("s3cret", 3, 0.5)
    assert pool.connection_class is SentinelManagedSSLConnection and kwargs["ssl_cert_reqs"] == "none"
    assert "ignored" not in repr(kwargs.get("host"))
    sentinels = pool.sentinel_manager.sentinels
    assert [s.connection_pool.connection_kwargs["port"] for s in sentinels] == [1, 2]
    assert "password" not in sentinels[0].connection_pool.connection_kwargs or \
        sentinels[0].connection_pool.connection_kwargs["password"] is None  # fmt: skip
    # a private CA in the URL's query goes to the master's connections
    with_ca = Settings(_env_file=None, redis_sentinels="s1:1", redis_url=SecretStr("rediss://:pw@x:1/0?ssl_ca_certs=/ca.crt"))
    assert redis_client(with_ca).connection_pool.connection_kwargs["ssl_ca_certs"] == "/ca.crt"
    # without sentinels: the URL, with the caller's timeouts
    plain = redis_client(Settings(_env_file=None, redis_url=SecretStr("redis://h:7/2")), socket_timeout=3)
    assert (plain.connection_pool.connection_kwargs["host"], plain.connection_pool.connection_kwargs["socket_timeout"]) == ("h", 3)


def test_sentinels_with_a_password_are_asked_with_it_and_refuse_without_it():
    with SentinelTopology(replicas=0, sentinels=1, sentinel_password="s3ntinel") as guarded:
        settings = Settings(_env_file=None, redis_sentinels=guarded.sentinel_addresses, redis_sentinel_master=MASTER,
                            redis_sentinel_password=SecretStr("s3ntinel"))  # fmt: skip
        client = redis_client(settings, socket_timeout=2)
        assert client.ping() and client.set("through-a-guarded-sentinel", 1)
        unguarded = redis_client(settings.model_copy(update={"redis_sentinel_password": None}), socket_timeout=2)
        with pytest.raises(redis.ConnectionError, match="No master found"):  # the sentinel said NOAUTH
            unguarded.ping()


# --- the topology ------------------------------------------------------------------------------


@pytest.fixture
def topology() -> Iterator[SentinelTopology]:
    with SentinelTopology(sentinels=3) as running:
        yield running


def sentinel_settings(settings: Settings, topology: SentinelTopology, **update) -> Settings:
    return settings.model_copy(update={
        "redis_url": None, "redis_sentinels": topology.sentinel_addresses, "redis_sentinel_master": MASTER,
        "redis_wait_replicas": 1, "redis_wait_timeout_ms": 500, "api_tokens": [SecretStr(API_TOKEN)],
        **update,
    })  # fmt: skip


def start_worker(settings: Settings, database_url: str, log: Path) -> subprocess.Popen:
    """`pedro-worker worker` (dramatiq's CLI, one process) reaching Redis through the sentinels only."""
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "PEDRO_REDIS_URL")}
    env.update({"DATABASE_URL": database_url, "PEDRO_REDIS_SENTINELS": ",".join(settings.redis_sentinels),
                "PEDRO_REDIS_SENTINEL_MASTER": MASTER, "PEDRO_REDIS_NAMESPACE": settings.redis_namespace,
                "PEDRO_LOG_FORMAT": "json"})  # fmt: skip
    return subprocess.Popen([sys.executable, "-m", "worker.cli", "worker", "--processes", "1", "--threads", "4"],
                            env=env, stdout=subprocess.DEVNULL, stderr=log.open("w"), start_new_session=True)  # fmt: skip


def worker_pids(proc: subprocess.Popen) -> list[int]:
    """The dramatiq CLI's worker processes (it would start new ones for any that exited)."""
    tasks = Path(f"/proc/{proc.pid}/task").glob("*/children")
    return sorted(int(pid) for task in tasks for pid in task.read_text().split())


def stop_worker(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


class Sender(threading.Thread):
    """POSTs batches of one-credit usages, each until it gets a 2xx (503 and connection errors
    are retried with the same event ids, as the app's client does)."""

    def __init__(self, url: str, name: str, batch: int = 20) -> None:
        super().__init__(daemon=True)
        self.client = httpx.Client(base_url=url, timeout=10, headers=AUTH)
        self.prefix, self.batch = name, batch
        self.acknowledged: list[str] = []
        self.refused = 0  # answers that were not 2xx (503s, connection errors)
        self.first_refusal: float | None = None
        self.last_refusal: float | None = None
        self.stop = threading.Event()

    def run(self) -> None:
        n = 0
        while not self.stop.is_set():
            events = [usage("u", id=f"{self.prefix}-{n}-{i}", credits=1) for i in range(self.batch)]
            while True:
                try:
                    if self.client.post("/v1/events", json=events).status_code == 202:
                        break
                except httpx.TransportError:
                    pass
                now = time.monotonic()
                self.refused += 1
                self.first_refusal = self.first_refusal or now
                self.last_refusal = now
                time.sleep(0.1)
            self.acknowledged += [e["id"] for e in events]
            n += 1
        self.client.close()


async def wait_applied(conn, ids: list[str], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while await conn.fetchval("SELECT count(*) FROM worker.journal WHERE event_id = ANY($1)", ids) < len(ids):
        assert time.monotonic() < deadline, "acknowledged events not applied in time"
        time.sleep(0.2)


async def test_primary_killed_mid_run_every_acknowledged_event_is_applied_once_and_workers_resume(
    topology, settings, conn, database_url, tmp_path
):
    settings = sentinel_settings(settings, topology)
    await make_user(conn, "u", credits=1_000_000)
    worker = start_worker(settings, database_url, tmp_path / "worker.log")
    try:
        with IngressServer(settings) as server:
            senders = [Sender(server.url, f"s{n}") for n in range(2)]
            for sender in senders:
                sender.start()
            deadline = time.monotonic() + 30
            while await count(conn, "worker.journal") < 1000:  # events flow, the worker applies them
                assert time.monotonic() < deadline and worker.poll() is None, "the worker applies nothing"
                time.sleep(0.1)
            before = sum(len(s.acknowledged) for s in senders)
            assert before > 0
            processes = worker_pids(worker)
            assert processes
            killed_at = time.monotonic()
            old_primary = topology.kill_primary()
            promoted, failover_s = topology.wait_promoted(old_primary)
            promoted_ms = time.time() * 1000
            # The promoted replica has no replica of its own: WAIT 1 refuses every enqueue (503)
            # until the old primary, restarted as a supervisor would, is made its replica.
            old_primary.start()
            resync_s = topology.wait_replicating()
            time.sleep(3)  # and events flow again, to the new primary
            print(f"\nstopping senders {time.monotonic() - killed_at:.1f} s after the kill")
            for sender in senders:
                sender.stop.set()
            for sender in senders:
                sender.join(30)
                assert not sender.is_alive(), "a sender is still waiting for a 2xx"
        acknowledged = [i for s in senders for i in s.acknowledged]
        await wait_applied(conn, acknowledged)
        assert worker.poll() is None and worker_pids(worker) == processes, "a worker process was restarted"

        refusals = [s for s in senders if s.first_refusal]
        window = (max(s.last_refusal for s in refusals) - killed_at) if refusals else 0.0
        print(f"\n{len(acknowledged)} events acknowledged ({before} before the kill), promoted "
              f"{failover_s:.1f} s after the kill, a replica in sync {resync_s:.1f} s later; "
              f"{sum(s.refused for s in senders)} refused answers, the last {window:.1f} s after the kill")  # fmt: skip
        # every 2xx applied, exactly once
        assert len(set(acknowledged)) == len(acknowledged)
        assert await count(conn, '"UsageHistory"') == len(acknowledged) == await count(conn, "worker.journal")
        assert await balance(conn, "u") == 1_000_000 - len(acknowledged)
        assert await find_balance_drift(conn) == []
        # the worker resumed on the new primary: it is there, its stats are flushed there, and
        # nothing was dead-lettered or left queued
        settled = topology.settled_primary()
        if settled is not promoted:
            print("the sentinels failed over a second time, back to the restarted old primary")
        new_primary = topology.client(settled)
        keys = Keys(settings.redis_namespace)
        seen = [json.loads(info)["seen_ms"] for info in new_primary.hvals(keys.workers)]
        assert seen and max(seen) > promoted_ms  # the ops recorder flushes to the new primary
        for queue in QUEUES:
            assert new_primary.zcard(f"{settings.redis_namespace}:{queue}.XQ") == 0
            assert new_primary.hlen(f"{settings.redis_namespace}:{queue}.msgs") == 0
    finally:
        stop_worker(worker)


async def test_without_a_replica_to_acknowledge_the_ingress_answers_503_within_the_wait_timeout(
    topology, settings, conn
):
    settings = sentinel_settings(settings, topology, redis_wait_timeout_ms=300)
    await make_user(conn, "u", credits=100)
    broker = build_broker(settings, worker=False)
    try:
        with IngressServer(settings) as server, httpx.Client(base_url=server.url, timeout=10, headers=AUTH) as client:
            assert client.post("/v1/events", json=usage("u", id="with-replica")).status_code == 202
            replica = topology.replica()
            replica.kill()
            started = time.monotonic()
            refused = client.post("/v1/events", json=[usage("u", id="no-replica-1"), usage("u", id="no-replica-2")])
            elapsed = time.monotonic() - started
            body = refused.json()
            assert (refused.status_code, body["error"]) == (503, "queue_unavailable")
            assert "replicas did not acknowledge" in body["detail"] and refused.headers["retry-after"]
            assert "accepted" not in body and "results" not in body  # nothing claimed acknowledged
            assert 0.3 <= elapsed < 1.5, elapsed
            print(f"\nno replica: 503 after {elapsed * 1000:.0f} ms (WAIT timeout 300 ms)")
            # and the ingress says it is not ready (a load balancer takes it out of rotation)
            deadline = time.monotonic() + 10  # the primary notices the lost replica's connection
            while (ready := client.get("/readyz")).status_code != 503:
                assert time.monotonic() < deadline, ready.text
                time.sleep(0.2)
            assert ready.json()["checks"]["redis"] == "replicas_missing"
            # the Python publisher refuses the same way
            with pytest.raises(ReplicasNotAcknowledged, match="0 of 1 Redis replicas"):
                Publisher(broker).publish(usage("u", id="no-replica-3"))
            # the replica back (a resync): acknowledged again
            replica.start()
            deadline = time.monotonic() + 20
            while (answer := client.post("/v1/events", json=usage("u", id="replica-back"))).status_code != 202:
                assert time.monotonic() < deadline, answer.text
                time.sleep(0.2)
            assert client.get("/readyz").json()["checks"]["redis"] == "ok"
    finally:
        broker.close()


def test_wait_latency_cost(topology, settings, capsys):
    """The price of WAIT 1 on loopback: POST /v1/events latency with and without it, same run."""
    figures = {}
    for replicas in (0, 1, 0, 1):  # interleaved: neither side gets a warmer machine
        chosen = sentinel_settings(settings, topology, redis_wait_replicas=replicas)
        with IngressServer(chosen) as server, httpx.Client(base_url=server.url, timeout=10, headers=AUTH) as client:
            client.post("/v1/events", json=usage("u", id=f"warm-{replicas}-{time.monotonic_ns()}"))
            times = []
            for n in range(100):
                started = time.perf_counter()
                assert client.post("/v1/events", json=usage("u", id=f"lat-{replicas}-{time.monotonic_ns()}")).status_code == 202
                times.append((time.perf_counter() - started) * 1000)
        figures.setdefault(replicas, []).extend(times)
    with capsys.disabled():
        for replicas, times in figures.items():
            times.sort()
            print(f"\nWAIT {replicas}: POST /v1/events p50 {statistics.median(times):.2f} ms, "
                  f"p99 {times[int(len(times) * 0.99)]:.2f} ms ({len(times)} requests)")  # fmt: skip
        print(f"p50 ratio WAIT 1 / no WAIT: {statistics.median(figures[1]) / statistics.median(figures[0]):.2f}")


def test_a_demoted_primary_sends_its_clients_to_the_new_one_and_loses_nothing_acknowledged(topology, settings):
    """`SENTINEL FAILOVER`: the old primary lives on as a replica. A connection to it meets
    READONLY, which the client turns into a reconnect to the new primary; what it accepted after
    the replica's promotion (and before its demotion) never got a WAIT, so it was not
    acknowledged, and it is gone after its resync."""
    settings = sentinel_settings(settings, topology, redis_wait_timeout_ms=300)
    broker = build_broker(settings, worker=False)
    publisher, acknowledged, refused = Publisher(broker, batch_size=10), [], []
    old = topology.primary()
    try:
        deadline, n, failed_over = time.monotonic() + 30, 0, False
        while time.monotonic() < deadline:
            events = [usage("u", id=f"d{n}-{i}", credits=1) for i in range(50)]
            try:
                publisher.publish_many(events)
                acknowledged += [e["id"] for e in events]
                n += 1
            except redis.RedisError as exc:
                refused.append(type(exc).__name__)
                time.sleep(0.05)
            if n == 20 and not failed_over:
                redis.Redis(port=topology.sentinels[0].port).execute_command("SENTINEL", "FAILOVER", MASTER)
                failed_over = True
            if failed_over and topology.master_port() != old.port and n >= 60:
                break
        new = topology.primary()
        assert new is not old and n >= 60, (refused, n)
        stored = {e["id"] for _, data in topology.client(new).hscan_iter(f"{settings.redis_namespace}:usage.msgs")
                  for e in Message.decode(data).args[0]}  # fmt: skip
        assert set(acknowledged) <= stored
        print(f"\n{len(acknowledged)} acknowledged across a manual failover, refused meanwhile: {sorted(set(refused))}")
    finally:
        broker.close()
