"""(h) and (i): usage events through the HTTP ingress to their commit, next to GET /healthz.

The ingress runs in its own process (`python -m bench.holds serve`: what `pedro-worker ingress`
runs) and enqueues into the Redis namespace of the worker fleet that measured (d), on that
fleet's database; the bench process is the client (bench/holds.py's raw-asyncio HTTP/1.1
client, one keep-alive connection per caller). At `--http-connections` connections, each
sending its next request as soon as the previous answer is in:

- `GET /healthz` for `--healthz-seconds` after a short warm-up: the floor of the HTTP stack;
- (h): `--http-events` events like (d)'s (the same generator, new ids), one per
  `POST /v1/events`;
- (i): `--http-batch-events` events, 100 per `POST /v1/events` (`{"events": [...]}`).

(h) and (i) are timed as (d) is (`Fleet.run`): from the first POST until the queue is empty,
every message acknowledged after its transaction committed. Every answer must be 202 with all
of its events accepted, or the run fails; the request bodies are encoded before the clock starts.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .cpu import CpuMeter, CpuUse
from .fleet import Fleet
from .holds import ClosedLoop, HttpConn, closed_loop, ingress_process, open_connections, request_bytes

EVENTS_PER_POST = {"h": 1, "i": 100}
WARMUP_S = 0.5


def post_requests(events: list[dict[str, Any]], per_post: int) -> list[bytes]:
    """The `POST /v1/events` requests carrying `events`: one event object each, or batches of
    `per_post` as `{"events": [...]}`."""
    if per_post == 1:
        bodies = [json.dumps(e, separators=(",", ":")) for e in events]
    else:
        bodies = [json.dumps({"events": events[n : n + per_post]}, separators=(",", ":"))
                  for n in range(0, len(events), per_post)]  # fmt: skip
    return [request_bytes("POST", "/v1/events", body.encode()) for body in bodies]


async def post_all(host: str, port: int, requests: list[bytes], connections: int) -> int:
    """Send every request, `connections` at a time (closed loop); the events accepted. Any
    answer but 202, or an event not accepted, fails the run."""
    conns = await open_connections(host, port, connections)
    pending = iter(requests)
    accepted = [0]

    async def lane(conn: HttpConn) -> None:
        for raw in pending:  # one shared iterator: each request is sent once, by whichever lane is free
            status, body = await conn.request(raw)
            answer = json.loads(body)
            if status != 202 or answer.get("rejected"):
                raise RuntimeError(f"POST /v1/events answered {status}: {body[:300]!r}")
            accepted[0] += answer["accepted"]

    try:
        await asyncio.gather(*(lane(c) for c in conns))
    finally:
        for c in conns:
            c.close()
    return accepted[0]


class HttpRun:
    """The ingress of one distribution's (h) and (i), bound to `fleet`'s queue and database."""

    def __init__(self, fleet: Fleet, *, database_url: str, redis_url: str, log_path: Path, log_level: str,
                 connections: int, meter: CpuMeter, timeout: Callable[[int], float]) -> None:  # fmt: skip
        self.fleet = fleet
        self.connections = connections
        self.answered_s = 0.0  # the last post(): until every POST was answered
        self.meter = meter
        self.timeout = timeout
        self.ingress = ingress_process(database_url=database_url, redis_url=redis_url, log_path=log_path,
                                       log_level=log_level, namespace=fleet.namespace)  # fmt: skip

    def _snapshot(self) -> dict[str, float | None]:
        return self.meter.snapshot(self.fleet.proc.pid if self.fleet.proc else None, self.ingress.pid)

    def healthz(self, distribution: str, seconds: float) -> ClosedLoop:
        """GET /healthz requests/s at `connections`, the fleet idle."""
        before = self._snapshot()
        count, window = asyncio.run(closed_loop(self.ingress.host, self.ingress.port, "healthz", self.connections,
                                                seconds, WARMUP_S, None, None, "healthz", 0))  # fmt: skip
        run = ClosedLoop(distribution, "healthz", self.connections, window, count)
        # the warm-up's CPU is in the snapshot too, as in (g)
        run.cpu = self.meter.use(before, self._snapshot(), window + WARMUP_S, count)
        return run

    def post(self, events: list[dict[str, Any]], per_post: int) -> tuple[float, CpuUse]:
        """`events` POSTed `per_post` at a time, until every one is committed: seconds and CPU."""
        requests = post_requests(events, per_post)
        accepted = [0]

        def publish() -> None:
            started = time.monotonic()
            accepted[0] = asyncio.run(post_all(self.ingress.host, self.ingress.port, requests, self.connections))
            self.answered_s = time.monotonic() - started

        before = self._snapshot()
        try:
            seconds = self.fleet.run(publish, self.timeout(len(events)))
        except (asyncio.IncompleteReadError, ConnectionError) as exc:  # the bench reports RuntimeErrors
            raise RuntimeError(f"the ingress dropped a connection: {exc!r}; its log: {self.ingress.log_path}") from exc
        cpu = self.meter.use(before, self._snapshot(), seconds, len(events))
        if accepted[0] != len(events):
            raise RuntimeError(f"the ingress accepted {accepted[0]:,} of {len(events):,} events")
        return seconds, cpu
