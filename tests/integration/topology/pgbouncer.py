"""Fixtures: a real PgBouncer (Debian's package, transaction mode) in front of the session's
PostgreSQL, and the worker's settings through it with PEDRO_DATABASE_POOLER=transaction.

The launcher is bench/pgbouncer.py (the bench and the chaos run use it too). Its pool has two
server connections per database and user: fewer than the clients the tests run, so clients
really do take turns on server connections, as they do behind a pooler in production.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from pydantic import SecretStr

from bench.pgbouncer import PgBouncer
from tests.integration.conftest import WORKER_ROLE
from tests.integration.topology.servers import require_binary
from worker.settings import Settings

SERVER_CONNECTIONS = 2  # per (database, user): PgBouncer's default_pool_size here


@pytest.fixture(scope="session")
def pgbouncer(pg_url: str) -> Iterator[PgBouncer]:
    binary = require_binary("pgbouncer", "/usr/sbin/pgbouncer")
    with PgBouncer(pg_url, users=("postgres", WORKER_ROLE), pool_size=SERVER_CONNECTIONS, binary=binary) as bouncer:
        yield bouncer


@pytest.fixture
def pooled_url(pgbouncer: PgBouncer, database_url: str) -> str:
    """The test's database as the worker's role reaches it through PgBouncer."""
    return pgbouncer.url_for(database_url)


@pytest.fixture
def pooled_settings(settings: Settings, pooled_url: str, database_url: str) -> Settings:
    """The worker behind PgBouncer: DATABASE_URL through it in pooler mode, and the direct URL
    (Prisma's directUrl) for what needs a session."""
    return settings.model_copy(update={
        "database_url": SecretStr(pooled_url), "database_pooler": "transaction",
        "direct_database_url": SecretStr(database_url),
    })  # fmt: skip
