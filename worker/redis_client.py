"""The one place a Redis client is made from the settings (docs/topologies.md).

- `REDIS_URL` alone (`redis://`, `rediss://`): that server, as `redis.Redis.from_url` makes it.
- `PEDRO_REDIS_SENTINELS` set: the master the sentinels name for `PEDRO_REDIS_SENTINEL_MASTER`,
  through redis-py's `SentinelConnectionPool`, which asks the sentinels for the master's address
  whenever it opens a connection. A failover is followed without a restart: a connection to a
  dead master fails (`ConnectionError`, what every caller already treats as an outage) and the
  next one goes to the promoted replica; a master demoted to a replica answers `READONLY`, which
  the pool turns into a `ConnectionError` and a reconnect. `REDIS_URL` is then optional and gives
  only the password, db and TLS (its host is ignored); the sentinels get the same TLS settings
  and the caller's socket timeouts (1 s when it gives none: a dead sentinel must not hang a
  lookup), and their own password, `PEDRO_REDIS_SENTINEL_PASSWORD` (sentinels with
  `requirepass`), not the master's.

dramatiq's Lua scripts (`register_script`, run by EVALSHA) survive a failover: redis-py's
`Script` loads a script again on NOSCRIPT, and a pipeline checks its scripts before each run.

`ReplicaWait` is the other half of a failover that loses nothing acknowledged: the publisher
ends its pipeline with `WAIT replicas timeout`, so an enqueue returns (the ingress answers 2xx)
only once that many replicas have it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import redis
import redis.asyncio
from redis.asyncio.sentinel import Sentinel as AsyncSentinel
from redis.connection import SSLConnection, parse_url
from redis.sentinel import Sentinel

from .errors import WorkerError

if TYPE_CHECKING:
    from .settings import Settings

SENTINEL_TIMEOUT_S = 1.0  # a sentinel lookup's connect/read timeout when the caller gives none
_NOT_CONNECTION = ("host", "port", "path", "connection_class")  # the sentinels give the address


def parse_host_port(entry: str) -> tuple[str, int]:
    """`host:port` (`[::1]:26379` for IPv6) -> (host, port); ValueError when it is not one."""
    text = entry.strip()
    host, sep, port = text.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise ValueError(f"{entry!r}: an IPv6 address goes in brackets, e.g. [::1]:26379")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{entry!r} is not host:port (e.g. sentinel-1:26379)")
    return host, int(port)


def redis_client(
    settings: Settings,
    *,
    socket_timeout: float | None = None,
    socket_connect_timeout: float | None = None,
) -> redis.Redis:
    """A client for the settings' Redis (see the module docstring). Timeouts are in seconds;
    None keeps redis-py's default (no read timeout: the broker blocks on BLPOP)."""
    return _client(settings, redis.Redis, Sentinel, socket_timeout, socket_connect_timeout)


def async_redis_client(
    settings: Settings, *, socket_timeout: float | None = None
) -> redis.asyncio.Redis:
    """The same, as a `redis.asyncio` client (the ingress's enqueue, on its event loop)."""
    return _client(settings, redis.asyncio.Redis, AsyncSentinel, socket_timeout, None)


def _client(settings: Settings, redis_class: Any, sentinel_class: Any, socket_timeout: float | None,
            socket_connect_timeout: float | None) -> Any:  # fmt: skip
    given = {"socket_timeout": socket_timeout, "socket_connect_timeout": socket_connect_timeout}
    timeouts = {k: v for k, v in given.items() if v is not None}
    if not settings.redis_sentinels:
        return redis_class.from_url(settings.require_redis_url(), **timeouts)
    url = settings.redis_url
    options: dict[str, Any] = parse_url(url.get_secret_value()) if url is not None else {}
    tls: dict[str, Any] = {}
    if options.get("connection_class") is SSLConnection:
        tls = {"ssl": True, **{k: v for k, v in options.items() if k.startswith("ssl_")}}
    for key in (*_NOT_CONNECTION, *tls):  # the address comes from the sentinels, TLS from `tls`
        options.pop(key, None)
    lookup_s = socket_timeout or SENTINEL_TIMEOUT_S
    sentinel = sentinel_class(
        [parse_host_port(entry) for entry in settings.redis_sentinels],
        sentinel_kwargs={
            "socket_timeout": lookup_s,
            "socket_connect_timeout": socket_connect_timeout or lookup_s,
            **tls,
            **({"password": settings.redis_sentinel_password.get_secret_value()}
               if settings.redis_sentinel_password else {}),  # fmt: skip
        },
    )
    return sentinel.master_for(settings.redis_sentinel_master, **{**options, **tls, **timeouts})


class ReplicasNotAcknowledged(WorkerError, redis.ConnectionError):
    """Fewer replicas than `redis_wait_replicas` confirmed an enqueue within the timeout: it is
    not acknowledged (an outage to its caller: the ingress answers 503 and the sender retries).
    The messages may still be on the primary; sending them again is harmless (idempotent)."""

    reason = "replicas_not_acknowledged"

    def __init__(self, acknowledged: int, wanted: int, timeout_ms: int) -> None:
        self.acknowledged, self.wanted = acknowledged, wanted
        super().__init__(
            f"{acknowledged} of {wanted} Redis replicas acknowledged the enqueue in {timeout_ms} ms"
        )


@dataclass(frozen=True)
class ReplicaWait:
    """`WAIT replicas timeout_ms` at the end of an enqueue pipeline, and its check."""

    replicas: int
    timeout_ms: int

    @classmethod
    def of(cls, settings: Settings) -> ReplicaWait | None:
        if settings.redis_wait_replicas <= 0:
            return None
        return cls(settings.redis_wait_replicas, settings.redis_wait_timeout_ms)

    def add_to(self, pipe: Any) -> None:
        pipe.execute_command("WAIT", self.replicas, self.timeout_ms)

    def check(self, acknowledged: Any) -> None:
        if isinstance(acknowledged, Exception):
            raise acknowledged
        if int(acknowledged) < self.replicas:
            raise ReplicasNotAcknowledged(int(acknowledged), self.replicas, self.timeout_ms)

