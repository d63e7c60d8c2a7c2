"""Startup compatibility check: is the app schema the worker writes into still what it expects?

The worker refuses to consume anything until every table, column, type, nullability, unique key
and enum label it relies on is there, and names exactly what differs. Extra columns, tables and
enum labels are fine: the app may grow; the worker must not guess.
"""

from __future__ import annotations

import asyncpg

from . import db
from .errors import SchemaMismatch
from .migrate import discover

# table -> column -> (format_type, NOT NULL). Only what the worker reads or writes.
REQUIRED_COLUMNS: dict[str, dict[str, tuple[str, bool]]] = {
    "User": {
        "id": ("text", True), "clerkId": ("text", True), "email": ("text", False),
        "name": ("text", False), "isActive": ("boolean", True),
        "createdAt": ("timestamp(3) without time zone", True),
        "updatedAt": ("timestamp(3) without time zone", True),
    },
    "CreditBalance": {
        "id": ("text", True), "userId": ("text", True), "clerkUserId": ("text", True),
        "creditsRemaining": ("integer", True),
        "lastSyncedAt": ("timestamp(3) without time zone", True),
        "createdAt": ("timestamp(3) without time zone", True),
        "updatedAt": ("timestamp(3) without time zone", True),
    },
    "UsageHistory": {
        "id": ("text", True), "userId": ("text", True), "creditBalanceId": ("text", True),
        "operationType": ('"OperationType"', True), "creditsUsed": ("integer", True),
        "details": ("jsonb", False), "timestamp": ("timestamp(3) without time zone", True),
    },
    "AdminSettings": {"id": ("text", True), "featureCosts": ("jsonb", False)},
    "Plan": {
        "id": ("text", True), "asaasId": ("text", False), "name": ("text", True),
        "credits": ("integer", True), "active": ("boolean", True),
    },
    "StorageObject": {
        "id": ("text", True), "userId": ("text", True), "clerkUserId": ("text", True),
        "provider": ("text", True), "url": ("text", True), "pathname": ("text", True),
        "name": ("text", True), "contentType": ("text", False), "size": ("integer", True),
        "deletedAt": ("timestamp(3) without time zone", False),
        "createdAt": ("timestamp(3) without time zone", True),
        "updatedAt": ("timestamp(3) without time zone", True),
    },
    "SubscriptionEvent": {
        "id": ("text", True), "userId": ("text", False), "clerkUserId": ("text", True),
        "planKey": ("text", False), "status": ("text", True), "eventType": ("text", True),
        "occurredAt": ("timestamp(3) without time zone", True), "metadata": ("jsonb", False),
        "createdAt": ("timestamp(3) without time zone", True),
    },
}  # fmt: skip

REQUIRED_ENUMS: dict[str, tuple[str, ...]] = {
    "OperationType": ("AI_TEXT_CHAT", "AI_IMAGE_GENERATION"),
}

# Unique keys the worker's SQL depends on (lookups by clerk id, one balance per user).
REQUIRED_UNIQUE: tuple[tuple[str, str], ...] = (
    ("User", "clerkId"),
    ("CreditBalance", "userId"),
    ("CreditBalance", "clerkUserId"),
    ("Plan", "asaasId"),
)

_SQL_TYPE_NAMES = {"timestamp(3) without time zone": "timestamp(3)"}


def _nice(type_name: str) -> str:
    return _SQL_TYPE_NAMES.get(type_name, type_name)


async def schema_differences(conn: asyncpg.Connection) -> list[str]:
    """Every difference between the database and what the worker relies on, as readable lines."""
    differences: list[str] = []
    rows = await db.fetch(conn, "list_columns", list(REQUIRED_COLUMNS))
    actual: dict[str, dict[str, tuple[str, bool]]] = {}
    for r in rows:
        actual.setdefault(r["table_name"], {})[r["column_name"]] = (r["data_type"], r["not_null"])

    for table, columns in REQUIRED_COLUMNS.items():
        if table not in actual:
            differences.append(f'table "{table}" is missing')
            continue
        for column, (want_type, want_not_null) in columns.items():
            where = f'"{table}"."{column}"'
            if column not in actual[table]:
                differences.append(f"{where} is missing")
                continue
            have_type, have_not_null = actual[table][column]
            if have_type != want_type:
                differences.append(f"{where} is {_nice(have_type)}, expected {_nice(want_type)}")
            if have_not_null != want_not_null:
                have = "NOT NULL" if have_not_null else "nullable"
                want = "NOT NULL" if want_not_null else "nullable"
                differences.append(f"{where} is {have}, expected {want}")

    for enum, labels in REQUIRED_ENUMS.items():
        have_labels = [r["enumlabel"] for r in await db.fetch(conn, "list_enum_labels", enum)]
        if not have_labels:
            differences.append(f'enum "{enum}" is missing')
            continue
        for label in labels:
            if label not in have_labels:
                differences.append(f'enum "{enum}" has no label {label!r}')

    unique_rows = await db.fetch(conn, "list_unique_columns", [t for t, _ in REQUIRED_UNIQUE])
    have_unique = {(r["table_name"], r["column_name"]) for r in unique_rows}
    for table, column in REQUIRED_UNIQUE:
        if (table, column) not in have_unique and table in actual:
            differences.append(f'"{table}"."{column}" has no unique index')

    differences.extend(await _pending_migrations(conn))
    return differences


async def _pending_migrations(conn: asyncpg.Connection) -> list[str]:
    exists = await db.fetchval(conn, "migrations_table_exists")
    applied = (
        {r["version"] for r in await db.fetch(conn, "list_applied_migrations")} if exists else set()
    )
    pending = [m.version for m in discover() if m.version not in applied]
    if pending:
        return [f"worker migrations not applied: {', '.join(pending)} (run `pedro-worker migrate`)"]
    return []


async def check_schema(conn: asyncpg.Connection) -> None:
    """Raise SchemaMismatch naming every difference; return quietly when compatible."""
    differences = await schema_differences(conn)
    if differences:
        raise SchemaMismatch(differences)
