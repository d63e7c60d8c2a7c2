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

import json
import re
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import asyncpg

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


async def connect(dsn: str, *, worker_planning: bool = False) -> asyncpg.Connection:
    """One connection with the same codecs as the pool (CLI commands, migrations, tests);
    `worker_planning` plans like the pool does (WORKER_PLANNING)."""
    settings = {**_SERVER_SETTINGS, **WORKER_PLANNING} if worker_planning else _SERVER_SETTINGS
    conn = await asyncpg.connect(dsn, server_settings=settings)
    await _init_connection(conn)
    return conn


def _pool(settings: Settings, dsn: str | None, max_size: int, min_size: int, **more: str) -> asyncpg.Pool:
    set_slow_query_threshold(settings.slow_query_ms)
    return asyncpg.create_pool(
        dsn or settings.require_database_url(),
        min_size=min_size,
        max_size=max_size,
        init=_init_connection,
        reset=_end_any_transaction,
        server_settings={**_SERVER_SETTINGS, **WORKER_PLANNING, "statement_timeout": str(settings.statement_timeout_ms),
                         **more},
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

