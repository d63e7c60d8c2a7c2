"""One settings object, read from environment variables (and an optional `.env`).

Every field is documented in README.md's configuration table. URLs are `SecretStr` so that
printing the settings never shows a password; use `mask_url` for anything that is logged.
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AliasChoices, Field, PrivateAttr, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from .notify.config import Endpoint, Threshold

ROOT = Path(__file__).resolve().parent.parent
SQL_DIR = ROOT / "sql"

_PASSWORD_IN_URL = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)(?P<user>[^:/@\s]*):(?P<pw>[^@/\s]*)@", re.I)


# A password can also come as a query parameter: asyncpg's `password` and `sslpassword` (the
# client key's passphrase), redis-py's `password` and `ssl_password` (docs/topologies.md, TLS).
_PASSWORD_IN_QUERY = re.compile(r"(?P<key>[?&][a-z_]*password=)[^&#\s]*", re.I)


def mask_url(url: str | None) -> str:
    """`postgresql://app:s3cret@db/pedro` -> `postgresql://app:***@db/pedro`; a password given as a
    query parameter (`?sslpassword=…`, `&ssl_password=…`) is masked too."""
    if not url:
        return ""
    masked = _PASSWORD_IN_URL.sub(lambda m: f"{m['scheme']}{m['user']}:***@", url)
    return _PASSWORD_IN_QUERY.sub(lambda m: f"{m['key']}***", masked)


def _env(name: str) -> AliasChoices:
    return AliasChoices(name, f"PEDRO_{name}")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="PEDRO_", env_file=".env", extra="ignore", populate_by_name=True
    )

    # Servers. Unset -> `pedro-worker dev` starts embedded ones; other commands refuse to guess.
    database_url: SecretStr | None = Field(None, validation_alias=_env("DATABASE_URL"))
    redis_url: SecretStr | None = Field(None, validation_alias=_env("REDIS_URL"))
    redis_namespace: str = "pedro"

    # Production topologies (docs/topologies.md).
    # [pooler] `transaction`: DATABASE_URL reaches PostgreSQL through a transaction-mode pooler
    # (PgBouncer, Supavisor): no named prepared statements, no session state across transactions.
    database_pooler: Literal["none", "transaction"] = "none"
    # [pooler] A URL straight to PostgreSQL (Prisma's directUrl), for what needs a session of its
    # own: migrations and the notification dispatcher's LISTEN. Unset: migrations go through
    # DATABASE_URL, and behind a transaction pooler the dispatcher polls (notify_poll_ms).
    direct_database_url: SecretStr | None = Field(None, validation_alias=_env("DIRECT_DATABASE_URL"))
    # [sentinel] Redis through Sentinel: the sentinels (comma-separated host:port) and the name of
    # the master they watch. REDIS_URL then gives only the password, db and TLS (or is unset).
    redis_sentinels: Annotated[list[str], NoDecode] = []
    redis_sentinel_master: str = "mymaster"
    redis_sentinel_password: SecretStr | None = None  # the sentinels' own `requirepass`, if any
    # [wait] An acknowledged enqueue (the ingress's 2xx, the publisher's return) first waits until
    # this many replicas have it (Redis WAIT), at most redis_wait_timeout_ms; fewer -> an error
    # (503 at the ingress) and the caller sends again. 0: no wait (a single Redis).
    redis_wait_replicas: int = Field(0, ge=0)
    redis_wait_timeout_ms: int = Field(1_000, ge=1)

    # Logging: json in production, console in dev (`pedro-worker dev` switches it).
    log_format: Literal["json", "console"] = "json"
    log_level: str = "INFO"

    # Ledger policy. `allow` (default): a completed usage is always recorded, and the balance may
    # go below zero (the app gates new work on the balance). `reject`: a debit that would take it
    # below zero is refused and stored — only meaningful for apps that publish before the work.
    overdraft_policy: Literal["reject", "allow"] = "allow"
    # A refund or chargeback always takes its payment's credits back. `below_zero` (default):
    # the balance may go below zero (the app gates on it). `clamp`: it stops at zero and the
    # shortfall is recorded as a debt (worker.credit_debt) that the next credits pay first.
    reversal_policy: Literal["below_zero", "clamp"] = "below_zero"
    starter_credits: int = 100
    default_feature_costs: dict[str, int] = {"AI_TEXT_CHAT": 5, "AI_IMAGE_GENERATION": 10}

    # Retries (dramatiq Retries middleware): exponential backoff from min to max.
    max_retries: int = 8
    min_backoff_ms: int = 1_000
    max_backoff_ms: int = 300_000
    # A database or Redis outage does not spend the budget above: infrastructure errors get
    # their own (60 retries, backoff capped at max_backoff_ms: about 4.5 hours).
    infra_max_retries: int = 60

    # Broker tuning: how fast messages of a dead worker come back, how long dead letters stay.
    heartbeat_timeout_ms: int = 15_000
    maintenance_chance: int = 10_000  # per million broker calls
    dead_message_ttl_ms: int = 7 * 24 * 3600 * 1000

    # Worker process.
    worker_processes: int = 2
    worker_threads: int = 8  # 4 missed the p99 ≤ 100 ms latency target at 1,000 events/s (docs/performance.md)
    # Messages each worker process fetches ahead, per queue (dramatiq's prefetch), and at most
    # this many events in them: many single-event messages make large shared transactions,
    # while batch messages stay a few thousand events in memory (docs/performance.md).
    worker_prefetch: int = Field(128, ge=1)
    worker_prefetch_events: int = Field(8_000, ge=1)
    # While a queue is shallow, each consumer fetches at most this often (worker/wakeup.py): lone
    # messages wait that long for company; worker CPU per event at 1,000 lone events/s -38 %
    # and p99 at half of (d) 212 -> 82 ms with 4 ms, 71 ms with 10 (docs/performance.md)
    worker_fetch_linger_ms: float = Field(10.0, ge=0, le=1_000)
    pool_min_size: int = 1
    pool_max_size: int = 4
    statement_timeout_ms: int = 30_000
    # How long a transaction waits for a row another session holds (the app, a psql session left
    # open) before the events that need it go back with backoff: `balance_busy` (usage: one held
    # balance cannot stall the process's other usage messages, ledger/apply.py), `row_busy`
    # (users, billing, storage: no worker thread sits on a held row, domain/each.py).
    lock_wait_ms: int = Field(2_000, ge=1)
    # Micro-batching: concurrent messages of one process share a transaction (see coalesce.py).
    micro_batch_linger_ms: float = 2.0
    micro_batch_max_events: int = 1000
    micro_batch_concurrency: int = Field(1, ge=1)  # usage transactions in flight per process
    slow_query_ms: int = 500

    # Durable waiting (worker/waiting.py): how often each worker process sweeps for waiting
    # events whose condition now holds; after how long a released event that is still undecided
    # is sent again (its message lost with a Redis that had no AOF); how often events waiting for
    # something outside (a blob's size) are tried again.
    waiting_sweep_ms: int = Field(2_000, ge=50)
    waiting_resend_ms: int = Field(600_000, ge=1_000)
    waiting_retry_ms: int = Field(300_000, ge=1_000)
    # Credit grants (worker/grant_sweep.py): how often each worker process looks for grants to
    # expire and allowances to start (one sweep at a time among all processes).
    grant_sweep_ms: int = Field(10_000, ge=50)

    # Notifications (worker/notify/, docs/notifications.md): signed webhooks to the app, written
    # to an outbox by the transaction that causes them. None are written while no endpoint is
    # set. Endpoints: a JSON list [{"name", "url", "secret": "whsec_…", "events": [types or "*"]}],
    # or one endpoint named `app` from notify_url + notify_secret (+ notify_events, comma-separated).
    notify_endpoints: Annotated[list[Endpoint], NoDecode] = []
    _targets: tuple | None = PrivateAttr(None)  # (what notify_targets was made from, it)
    notify_url: str | None = None
    notify_secret: SecretStr | None = None
    notify_events: Annotated[list[str], NoDecode] = ["*"]
    # credits.low: balances crossing down through these (comma-separated: `20,10%`; a percentage
    # is of the user's current plan allowance), once per threshold per period (each grant starts one).
    notify_low_thresholds: Annotated[list[Threshold], NoDecode] = []
    notify_expiring_days: float = Field(3.0, gt=0)  # credits.expiring: this long before a grant expires
    notify_waiting_after_s: int = Field(3_600, ge=1)  # event.waiting: an event waiting this long
    # Delivery (`pedro-worker notify`): the wait before each retry, then `failed` (Svix's schedule).
    notify_retry_schedule_s: Annotated[list[float], NoDecode] = [5, 300, 1_800, 7_200, 18_000, 36_000, 36_000]
    notify_timeout_s: float = Field(15.0, gt=0)
    notify_concurrency: int = Field(16, ge=1)  # deliveries in flight per dispatcher
    notify_poll_ms: int = Field(500, ge=10)  # how often the dispatcher looks for due deliveries


    # Ops (`worker/ops/`): dashboard (/ops) and /metrics auth, stats, background reconcile.
    ops_token: SecretStr | None = None  # Bearer token, or typed into the dashboard's login form
    ops_basic_auth: SecretStr | None = None  # "user:password" for HTTP basic auth
    ops_allow_anonymous: bool = False  # no auth at all: `pedro-worker dev` on loopback only
    ops_metrics_public: bool = False  # /metrics without auth (a private scrape network)
    ops_refresh_s: int = 5
    ops_stats_flush_ms: int = 1_000
    ops_reconcile_interval_s: int = 300

    # HTTP ingress (`pedro-worker ingress`, docs/ingress.md).
    ingress_host: str = "127.0.0.1"
    ingress_port: int = 8080
    ingress_max_body_bytes: int = 4 * 1024 * 1024
    ingress_max_batch: int = 1_000
    ingress_redis_timeout_ms: int = 2_000
    # a busy ingress sends a group of requests' events to Redis at most every this often
    # (worker/ingress/grouping.py); an idle one sends at once
    ingress_group_linger_ms: float = Field(2.0, ge=0, le=100)
    ingress_pool_max_size: int = Field(8, ge=1)  # the credit API's connections (holds, balance)
    # Bearer tokens accepted by POST /v1/events: comma-separated in the environment.
    api_tokens: Annotated[list[SecretStr], NoDecode] = []
    asaas_webhook_token: SecretStr | None = Field(None, validation_alias=_env("ASAAS_WEBHOOK_TOKEN"))
    clerk_webhook_secret: SecretStr | None = Field(None, validation_alias=_env("CLERK_WEBHOOK_SECRET"))
    blob_read_write_token: SecretStr | None = Field(None, validation_alias=_env("BLOB_READ_WRITE_TOKEN"))
    blob_head_timeout_ms: int = 5_000
    blob_head_retries: int = 2

    @field_validator("database_url", "redis_url", mode="before")
    @classmethod
    def _empty_url_is_unset(cls, value: object) -> object:
        # `REDIS_URL=` in an env file or a compose file means "not set", not "a URL named ''".
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("api_tokens", "redis_sentinels", mode="before")
    @classmethod
    def _split_tokens(cls, value: object) -> object:
        if isinstance(value, str):
            return [token.strip() for token in value.split(",") if token.strip()]
        return value

    @field_validator("redis_sentinels")
    @classmethod
    def _check_sentinels(cls, value: list[str]) -> list[str]:
        # a typo in a sentinel's address fails at start, not at the first failover
        from .redis_client import parse_host_port

        for entry in value:
            parse_host_port(entry)
        return value

    @model_validator(mode="after")
    def _check_wait(self) -> Settings:
        """WAIT blocks the enqueue for up to its timeout: the ingress's socket must outlast it,
        or a slow replica would read as an unreachable Redis."""
        wait_ms, socket_ms = self.redis_wait_timeout_ms, self.ingress_redis_timeout_ms
        if self.redis_wait_replicas and wait_ms >= socket_ms:
            raise ValueError(f"PEDRO_REDIS_WAIT_TIMEOUT_MS ({wait_ms}) must be below "
                             f"PEDRO_INGRESS_REDIS_TIMEOUT_MS ({socket_ms})")  # fmt: skip
        if self.redis_sentinels and not self.redis_sentinel_master.strip():
            raise ValueError("PEDRO_REDIS_SENTINEL_MASTER is empty")
        return self

    @field_validator("notify_endpoints", mode="before")
    @classmethod
    def _parse_endpoints(cls, value: object) -> object:
        if isinstance(value, str):
            return json.loads(value) if value.strip() else []
        return value

    @field_validator("notify_events", mode="before")
    @classmethod
    def _split_events(cls, value: object) -> object:
        if isinstance(value, str):
            return [e.strip() for e in value.split(",") if e.strip()]
        return value

    @field_validator("notify_low_thresholds", mode="before")
    @classmethod
    def _parse_thresholds(cls, value: object) -> object:
        if isinstance(value, str):
            return [Threshold.parse(t) for t in value.split(",") if t.strip()]
        return [Threshold.parse(str(t)) if not isinstance(t, Threshold) else t for t in value]  # type: ignore[union-attr]

    @field_validator("notify_retry_schedule_s", mode="before")
    @classmethod
    def _parse_schedule(cls, value: object) -> object:
        if isinstance(value, str):
            return [float(t) for t in value.split(",") if t.strip()]
        return value

    @model_validator(mode="after")
    def _check_targets(self) -> Settings:
        """A notification endpoint set wrong fails at start, not at the first ledger write."""
        from .errors import ConfigError

        try:
            self.notify_targets
        except ConfigError as exc:
            raise ValueError(str(exc)) from None
        return self

    @property
    def notify_targets(self) -> list[Endpoint]:
        """Every endpoint notifications go to: notify_endpoints, and notify_url's `app`. Asked
        for by every ledger transaction: remembered for the settings it was made from."""
        if not self.notify_endpoints and not self.notify_url:
            return []
        key = (tuple(self.notify_endpoints), self.notify_url, self.notify_secret, tuple(self.notify_events))
        if self._targets is None or self._targets[0] != key:
            self._targets = (key, self._make_targets())
        return self._targets[1]

    def _make_targets(self) -> list[Endpoint]:
        targets = list(self.notify_endpoints)
        if self.notify_url:
            if self.notify_secret is None:
                from .errors import ConfigError

                raise ConfigError("PEDRO_NOTIFY_URL is set without PEDRO_NOTIFY_SECRET (whsec_…)")
            targets.append(Endpoint(name="app", url=self.notify_url, secret=self.notify_secret,
                                    events=tuple(self.notify_events)))  # fmt: skip
        names = [t.name for t in targets]
        if len(set(names)) < len(names):
            from .errors import ConfigError

            raise ConfigError(f"two notification endpoints share a name ({sorted(names)}); "
                              "PEDRO_NOTIFY_URL's is `app`")  # fmt: skip
        return targets

    def require_database_url(self) -> str:
        from .errors import ConfigError

        if self.database_url is None:
            raise ConfigError("DATABASE_URL is not set (or run `pedro-worker dev` for embedded servers)")
        return self.database_url.get_secret_value()

    def require_redis_url(self) -> str:
        """REDIS_URL, or "" when sentinels give the address without one (worker/redis_client.py)."""
        from .errors import ConfigError

        if self.redis_url is None and self.redis_sentinels:
            return ""
        if self.redis_url is None:
            raise ConfigError("REDIS_URL is not set (or run `pedro-worker dev` for embedded servers)")
        return self.redis_url.get_secret_value()


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
