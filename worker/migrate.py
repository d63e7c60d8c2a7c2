"""Forward-only migrations for worker-owned objects, and the app schema for empty dev databases.

`sql/migrations/NNNN_name.sql` files are applied in order, each in its own transaction, and
recorded in `worker.schema_migrations` with the sha256 of the file. A second run applies
nothing; an applied file whose content changed is an error (write a new migration instead).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from . import db
from .errors import MigrationError
from .settings import SQL_DIR

APP_TABLES = (
    "User", "Feature", "CreditBalance", "UsageHistory",
    "AdminSettings", "Plan", "StorageObject", "SubscriptionEvent",
)  # fmt: skip


@dataclass(frozen=True)
class Migration:
    version: str
    path: Path

    @property
    def sql(self) -> str:
        return self.path.read_text()

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.path.read_bytes()).hexdigest()


def discover(directory: Path = SQL_DIR / "migrations") -> list[Migration]:
    return [Migration(p.stem, p) for p in sorted(directory.glob("*.sql"))]


@dataclass
class MigrateReport:
    app_schema_created: bool
    applied: list[str]
    already: list[str]


async def apply_app_schema(conn: asyncpg.Connection) -> bool:
    """Create the app's tables if none exist. Returns whether it created them.

    Refuses a database that has only some of the app's tables: that is not an empty dev database.
    """
    present = {r["relname"] for r in await db.fetch(conn, "app_tables_present", list(APP_TABLES))}
    if len(present) == len(APP_TABLES):
        return False
    if present:
        missing = ", ".join(f'"{t}"' for t in APP_TABLES if t not in present)
        raise MigrationError(f"the database has some of the app's tables but not {missing}")
    async with conn.transaction():
        await conn.execute((SQL_DIR / "app_schema.sql").read_text())
    return True


async def migrate(
    conn: asyncpg.Connection,
    *,
    with_app_schema: bool = False,
    migrations: list[Migration] | None = None,
) -> MigrateReport:
    created = await apply_app_schema(conn) if with_app_schema else False
    migrations = discover() if migrations is None else migrations
    applied: list[str] = []
    already: list[str] = []
    async with conn.transaction():
        await db.execute(conn, "lock_migrations")
        await db.execute(conn, "create_migrations_table")
        recorded = {r["version"]: r["checksum"] for r in await db.fetch(conn, "list_applied_migrations")}
        for m in migrations:
            if m.version in recorded:
                if recorded[m.version] != m.checksum:
                    raise MigrationError(
                        f"migration {m.path.name} was changed after it was applied "
                        f"(recorded sha256 {recorded[m.version][:12]}…, file {m.checksum[:12]}…); "
                        "migrations are forward-only: restore the file and add a new one"
                    )
                already.append(m.version)
                continue
            async with conn.transaction():
                await conn.execute(m.sql)
                await db.execute(conn, "record_migration", m.version, m.checksum)
            applied.append(m.version)
    return MigrateReport(created, applied, already)
