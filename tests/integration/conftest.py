"""Real servers for integration tests.

One PostgreSQL and one Redis per test session: the servers named by DATABASE_URL / REDIS_URL
when set, otherwise embedded ones from the pip-installed binaries. A template database with the
full schema (the app's tables + worker migrations) is built once; every test gets its own
database copied from it (`CREATE DATABASE … TEMPLATE`) and its own Redis namespace.

The worker (`settings`, `database_url`, CLI subprocesses) connects as the least-privilege role
from `sql/roles/least_privilege.sql`; the test's own `conn` is the owner, for setup and checks.
"""

from __future__ import annotations

import itertools
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest
import redis
from pydantic import SecretStr

from tests.integration.prisma_client import prisma_reader  # noqa: F401  (fixture)
from worker import db
from worker.broker import build_broker
from worker.embedded import EmbeddedPostgres, EmbeddedRedis
from worker.migrate import migrate
from worker.runner import InProcessWorker
from worker.settings import SQL_DIR, Settings

pytestmark = pytest.mark.integration

_counter = itertools.count()


def with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    if os.environ.get("DATABASE_URL"):
        yield os.environ["DATABASE_URL"]
        return
    with EmbeddedPostgres(settings={"fsync": "off", "synchronous_commit": "off"}) as pg:
        yield pg.url


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    if os.environ.get("REDIS_URL"):
        yield os.environ["REDIS_URL"]
        return
    with EmbeddedRedis() as server:
        yield server.url


WORKER_ROLE = "pedro_worker"


def as_role(url: str, role: str) -> str:
    parts = urlsplit(url)
    host = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit(parts._replace(netloc=f"{role}@{host}"))


@pytest.fixture(scope="session")
async def template_db(pg_url: str) -> AsyncIterator[str]:
    """The full schema, plus the least-privilege role's grants (copied into every test DB)."""
    name = f"pedro_tpl_{os.getpid()}"
    admin = await asyncpg.connect(pg_url)
    await admin.execute(f'DROP DATABASE IF EXISTS "{name}"')
    await admin.execute(f'CREATE DATABASE "{name}"')
    conn = await db.connect(with_database(pg_url, name))
    try:
        await migrate(conn, with_app_schema=True)
        await conn.execute((SQL_DIR / "roles" / "least_privilege.sql").read_text())
        await conn.execute(f'GRANT CONNECT ON DATABASE "{name}" TO {WORKER_ROLE}')
    finally:
        await conn.close()
    yield name
    await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    await admin.close()


async def _create_database(pg_url: str, template: str | None) -> str:
    name = f"pedro_t{os.getpid()}_{next(_counter)}"
    admin = await asyncpg.connect(pg_url)
    try:
        suffix = f' TEMPLATE "{template}"' if template else ""
        await admin.execute(f'CREATE DATABASE "{name}"{suffix}')
    finally:
        await admin.close()
    return name


async def _drop_database(pg_url: str, name: str) -> None:
    admin = await asyncpg.connect(pg_url)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture
async def admin_database_url(pg_url: str, template_db: str) -> AsyncIterator[str]:
    """A fresh database with the full schema, for this test only, as its owner."""
    name = await _create_database(pg_url, template_db)
    yield with_database(pg_url, name)
    await _drop_database(pg_url, name)


@pytest.fixture
def database_url(admin_database_url: str) -> str:
    """The same database as the worker sees it: the least-privilege role (sql/roles/)."""
    return as_role(admin_database_url, WORKER_ROLE)


@pytest.fixture
async def empty_database_url(pg_url: str) -> AsyncIterator[str]:
    """A fresh, empty database (no app schema, no migrations)."""
    name = await _create_database(pg_url, None)
    yield with_database(pg_url, name)
    await _drop_database(pg_url, name)


@pytest.fixture
async def conn(admin_database_url: str) -> AsyncIterator[asyncpg.Connection]:
    """The test's own connection (owner): sets up state and inspects what the worker did."""
    connection = await db.connect(admin_database_url)
    yield connection
    await connection.close()


@pytest.fixture
def settings(database_url: str, redis_url: str) -> Settings:
    return Settings(
        database_url=SecretStr(database_url),
        redis_url=SecretStr(redis_url),
        redis_namespace=f"pedro-test-{uuid.uuid4().hex[:8]}",
        min_backoff_ms=50,
        max_backoff_ms=200,
        max_retries=2,
        pool_max_size=8,
        waiting_sweep_ms=200,
        grant_sweep_ms=500,
        log_format="console",
    )


@pytest.fixture
def broker(settings: Settings) -> Iterator:
    the_broker = build_broker(settings)
    yield the_broker
    client = redis.Redis.from_url(settings.require_redis_url())
    keys = list(client.scan_iter(f"{settings.redis_namespace}*"))
    if keys:
        client.delete(*keys)
    the_broker.close()


@pytest.fixture
def worker(broker) -> Iterator[InProcessWorker]:
    """A real dramatiq worker (threads in this process) consuming the test's namespace."""
    with InProcessWorker(broker, threads=4) as running:
        yield running
