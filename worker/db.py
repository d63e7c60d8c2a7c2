"""PostgreSQL access: the pool, the named-query registry and the timed call helpers.

Named queries live in `sql/queries/*.sql` as blocks:

    -- insert_thing --
    -- What it does. $1 id text, $2 name text
    INSERT INTO ...

They are parsed once at import; repository modules call them by name through `fetch`,
`fetchrow`, `fetchval` and `execute`, which log any statement slower than `slow_query_ms` with
its name and duration, never its parameters.
"""

from __future__ import annotations

import functools
import json
import re
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import asyncpg

from .errors import ConfigError
from .logs import get_logger
from .settings import SQL_DIR, Settings

log = get_logger("pedro.db")

_HEADER = re.compile(r"^-- ([a-z][a-z0-9_]*) --\s*$", re.M)


def parse_queries(text: str, source: str = "<string>") -> dict[str, str]:
    parts = _HEADER.split(text)
    queries: dict[str, str] = {}
    for name, body in zip(parts[1::2], parts[2::2]):
        if name in queries:
            raise ValueError(f"query {name!r} defined twice in {source}")
        queries[name] = body.strip()
    return queries


def load_queries(directory: Path = SQL_DIR / "queries") -> dict[str, str]:
    queries: dict[str, str] = {}
    for path in sorted(directory.glob("*.sql")):
        for name, sql in parse_queries(path.read_text(), str(path)).items():
            if name in queries:
                raise ValueError(f"query {name!r} defined in two files ({path})")
            queries[name] = sql
    return queries


QUERIES: Mapping[str, str] = load_queries()

_slow_query_s = 0.5


def set_slow_query_threshold(ms: int) -> None:
    global _slow_query_s
    _slow_query_s = ms / 1000


class _Timed:
    __slots__ = ("name", "start")

    def __init__(self, name: str) -> None:
        self.name = name

    def __enter__(self) -> None:
        self.start = time.perf_counter()

    def __exit__(self, *exc: object) -> None:
        elapsed = time.perf_counter() - self.start
        if elapsed >= _slow_query_s:
            log.warning("slow_query", query=self.name, duration_ms=round(elapsed * 1000, 1))


async def fetch(conn: asyncpg.Connection, name: str, *args: Any) -> list[asyncpg.Record]:
    with _Timed(name):
        return await conn.fetch(QUERIES[name], *args)


async def fetchrow(conn: asyncpg.Connection, name: str, *args: Any) -> asyncpg.Record | None:
    with _Timed(name):
        return await conn.fetchrow(QUERIES[name], *args)


async def fetchval(conn: asyncpg.Connection, name: str, *args: Any) -> Any:
    with _Timed(name):
        return await conn.fetchval(QUERIES[name], *args)


async def execute(conn: asyncpg.Connection, name: str, *args: Any) -> str:
    with _Timed(name):
        return await conn.execute(QUERIES[name], *args)


# Prisma stores DateTime as UTC in TIMESTAMP(3): CURRENT_TIMESTAMP must be read in UTC too.
_SERVER_SETTINGS = {"application_name": "pedro-worker", "timezone": "UTC"}

# How the worker's own sessions (its pool) plan. Every statement an actor runs is a lookup or a
# write by key, usually over a small `unnest` array, so:
# * one generic plan per statement and connection. Otherwise PostgreSQL plans a custom plan on
#   every call, because for a one-element array a custom plan always looks cheaper than the
#   generic one: measured, 250-300 µs of planning per one-event transaction, more than its
#   statements cost to run.
# * no sequential scans. A plan is chosen with the table sizes of the moment, and a generic plan
#   is then kept: planned while a table was small (a new deployment), a scan would still be
#   used once it holds millions of rows. Through an index, a keyed statement costs the same at
#   any size. (CLI commands such as `reconcile`, which do read whole tables, use `connect`.)
WORKER_PLANNING = {"plan_cache_mode": "force_generic_plan", "enable_seqscan": "off"}


async def _init_connection(conn: asyncpg.Connection) -> None:
    for typename in ("json", "jsonb"):
        await conn.set_type_codec(
            typename, encoder=json.dumps, decoder=json.loads, schema="pg_catalog"
        )


async def _end_any_transaction(conn: asyncpg.Connection) -> None:
    """How the pool resets a connection that comes back: asyncpg has already rolled back any
    open transaction (it always does, before this hook). Its default reset query (`RESET ALL`,
    `UNLISTEN *`, `CLOSE ALL`, advisory unlock) is skipped: it is a round trip on every release,
    i.e. on every message, and the worker leaves no session state behind to reset — its settings
    come with the connection, advisory locks are `pg_advisory_xact_lock`, no LISTEN, no cursors
    (tests/unit/test_foundation.py checks the named queries for session state)."""


# --- behind a transaction-mode pooler (PEDRO_DATABASE_POOLER=transaction) ------------------------
#
# PgBouncer (transaction mode), Supavisor and the like hand a client a server connection for one
# transaction at a time, so nothing may outlive a transaction:
# * no named prepared statements (asyncpg's statement cache names them): another client's server
#   connection would not have them, or would have another statement under the same name.
#   `statement_cache_size=0` makes asyncpg use the unnamed statement; its parse and its bind are
#   one exchange (parse, describe, Flush; then bind, execute, Sync): PgBouncer keeps the server
#   connection until the Sync's ReadyForQuery, so a statement outside a transaction is safe too
#   (tests/integration/topology/test_pgbouncer.py runs many clients through 2 server connections).
#   The price: two round trips per statement instead of one, and a plan per execution.
# * no settings sent at connect but those the pooler tracks per client (application_name,
#   TimeZone): PgBouncer refuses any other startup parameter. The worker's (statement_timeout,
#   enable_seqscan; the ingress's lock_timeout, which makes a held balance a 503 balance_busy) are
#   set with SET LOCAL by every transaction instead, in the same simple query as its BEGIN: no
#   extra round trip, and they hold for that transaction only, whichever server connection runs
#   it. A statement outside a transaction runs with the role's settings: give the role its
#   statement_timeout (`ALTER ROLE … SET statement_timeout = '30s'`, docs/topologies.md).
#   plan_cache_mode is left out: it chooses among the plans of a statement prepared once and run
#   many times, and an unnamed statement is planned for its one execution.
# * no LISTEN and no session advisory lock: the notification dispatcher LISTENs on
#   PEDRO_DIRECT_DATABASE_URL (or polls), migrations run there too (`direct_connection`).


def behind_pooler(settings: Settings | None = None) -> bool:
    """Whether DATABASE_URL goes through a transaction-mode pooler (`settings`, or the
    environment's: CLI commands call `connect` with a URL only)."""
    if settings is None:
        from .settings import get_settings

        settings = get_settings()
    return settings.database_pooler == "transaction"


class PoolerConnection(asyncpg.Connection):
    """A connection through a transaction-mode pooler: every transaction begins with the
    session's settings as SET LOCAL (`begin_settings`, set per pool by `_pooler_class`).

    asyncpg's Transaction starts with `execute("BEGIN…;")` (no arguments: the simple query
    protocol, which takes several statements): the SET LOCALs ride along in that one message.
    SAVEPOINTs (nested transactions) are left alone: the settings hold until the top one ends.
    """

    begin_settings = ""

    async def execute(self, query: str, *args: Any, timeout: float | None = None) -> str:
        if not args and self.begin_settings and query.startswith("BEGIN") and query.endswith(";"):
            query += self.begin_settings
        return await super().execute(query, *args, timeout=timeout)


@functools.cache
def _pooler_class(begin_settings: str) -> type[PoolerConnection]:
    return type("PoolerConnection", (PoolerConnection,), {"begin_settings": begin_settings})


def _set_local(values: Mapping[str, str]) -> str:
    for name, value in values.items():  # names and values are the worker's own, never input
        if not re.fullmatch(r"[a-z_]+", name) or not re.fullmatch(r"[A-Za-z0-9_.]+", value):
            raise ValueError(f"unexpected setting {name}={value!r}")
    return "".join(f" SET LOCAL {name} = '{value}';" for name, value in values.items())


def _connect_options(session: Mapping[str, str], pooler: bool) -> dict[str, Any]:
    """asyncpg.connect / create_pool options for these session settings: sent at connect, or,
    behind a pooler, only what it tracks per client, the rest SET LOCAL by every transaction."""
    if not pooler:
        return {"server_settings": dict(session)}
    at_connect = {k: v for k, v in session.items() if k in _SERVER_SETTINGS}
    per_transaction = {k: v for k, v in session.items() if k not in _SERVER_SETTINGS and k != "plan_cache_mode"}
    return {"server_settings": at_connect, "statement_cache_size": 0,
            "connection_class": _pooler_class(_set_local(per_transaction))}  # fmt: skip


def _refused_setting(exc: BaseException) -> str | None:
    """The startup parameter a pooler refused (PgBouncer: `unsupported startup parameter: X`)."""
    if isinstance(exc, asyncpg.ProtocolViolationError) and "unsupported startup parameter" in str(exc):
        return str(exc).rsplit(":", 1)[-1].strip()
    return None


def _pooler_hint(exc: BaseException) -> ConfigError:
    return ConfigError(
        f"DATABASE_URL reaches a pooler that refuses the worker's session settings (unsupported startup "
        f"parameter: {_refused_setting(exc)}): behind a transaction-mode pooler (PgBouncer, Supavisor) set "
        "PEDRO_DATABASE_POOLER=transaction, or give the worker a direct URL (docs/topologies.md)",
        reason="pooler_not_configured",
    )


async def _connect(*args: Any, **kwargs: Any) -> asyncpg.Connection:
    """asyncpg.connect, with a pooler's refusal of a startup parameter made a ConfigError that
    says what to set (the pool's connections are made here too)."""
    try:
        return await asyncpg.connect(*args, **kwargs)
    except asyncpg.ProtocolViolationError as exc:
        if _refused_setting(exc) is None:
            raise
        raise _pooler_hint(exc) from None


async def connect(dsn: str, *, worker_planning: bool = False, pooler: bool | None = None) -> asyncpg.Connection:
    """One connection with the same codecs as the pool (CLI commands, migrations, tests);
    `worker_planning` plans like the pool does (WORKER_PLANNING). `pooler`: whether `dsn` goes
    through a transaction-mode pooler (default: PEDRO_DATABASE_POOLER of the environment)."""
    settings = {**_SERVER_SETTINGS, **WORKER_PLANNING} if worker_planning else _SERVER_SETTINGS
    conn = await _connect(dsn, **_connect_options(settings, behind_pooler() if pooler is None else pooler))
    await _init_connection(conn)
    return conn


async def direct_connection(settings: Settings) -> asyncpg.Connection:
    """A connection for what needs a session of its own (migrations; LISTEN asks for
    `listen_url`): to PEDRO_DIRECT_DATABASE_URL when set, else to DATABASE_URL."""
    direct = direct_url(settings)
    if direct is not None:
        return await connect(direct, pooler=False)
    return await connect(settings.require_database_url(), pooler=behind_pooler(settings))


def direct_url(settings: Settings) -> str | None:
    """PEDRO_DIRECT_DATABASE_URL, or None when it is unset (or empty)."""
    url = settings.direct_database_url.get_secret_value().strip() if settings.direct_database_url else ""
    return url or None


def listen_url(settings: Settings) -> str | None:
    """Where the notification dispatcher may LISTEN: the direct URL, or DATABASE_URL unless it
    goes through a transaction-mode pooler (a LISTEN there would hear nothing: its server
    connection goes back to the pooler at once). None: poll."""
    return direct_url(settings) or (None if behind_pooler(settings) else settings.require_database_url())


def _pool(settings: Settings, dsn: str | None, max_size: int, min_size: int, **more: str) -> asyncpg.Pool:
    set_slow_query_threshold(settings.slow_query_ms)
    session = {**_SERVER_SETTINGS, **WORKER_PLANNING, "statement_timeout": str(settings.statement_timeout_ms), **more}
    return asyncpg.create_pool(
        dsn or settings.require_database_url(),
        min_size=min_size,
        max_size=max_size,
        init=_init_connection,
        reset=_end_any_transaction,
        connect=_connect,
        **_connect_options(session, behind_pooler(settings)),
    )


async def create_pool(settings: Settings, dsn: str | None = None) -> asyncpg.Pool:
    pool = await _pool(settings, dsn, settings.pool_max_size, settings.pool_min_size)
    assert pool is not None
    return pool


async def request_pool(settings: Settings, *, max_size: int) -> asyncpg.Pool:
    """The ingress's pool, for requests answered from PostgreSQL (the credit API): it opens no
    connection before its first `acquire` (min_size 0: an ingress whose database is down still
    starts and enqueues), and a lock wait longer than `lock_wait_ms` fails (LockNotAvailableError:
    a 503 to retry, not a request hung behind a balance held elsewhere)."""
    pool = await _pool(settings, None, max_size, 0, lock_timeout=str(settings.lock_wait_ms))
    assert pool is not None
    return pool

