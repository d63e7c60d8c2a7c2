"""sql/app_schema.sql creates exactly what Prisma creates from the app's schema."""

from __future__ import annotations

import asyncpg

from tests.prisma_rules import Catalog, expected_catalog
from worker import db
from worker.migrate import migrate


async def read_catalog(conn: asyncpg.Connection) -> Catalog:
    cat = Catalog()
    for r in await conn.fetch(
        "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = 'public' AND c.relkind = 'r'"
    ):
        cat.tables.add(r["relname"])
    for r in await conn.fetch(
        """SELECT c.relname, a.attname, format_type(a.atttypid, a.atttypmod) AS type, a.attnotnull,
                  pg_get_expr(d.adbin, d.adrelid) AS dflt
           FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
           JOIN pg_namespace n ON n.oid = c.relnamespace
           LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
           WHERE n.nspname = 'public' AND c.relkind = 'r' AND a.attnum > 0 AND NOT a.attisdropped"""
    ):
        cat.columns[(r["relname"], r["attname"])] = (r["type"], r["attnotnull"], r["dflt"])
    for r in await conn.fetch(
        """SELECT ic.relname AS index, tc.relname AS tbl, i.indisunique, i.indisprimary, am.amname,
                  ARRAY(SELECT a.attname FROM unnest(i.indkey) WITH ORDINALITY k(attnum, n)
                        JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
                        ORDER BY k.n) AS cols,
                  i.indpred IS NULL AS no_predicate
           FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid
           JOIN pg_class tc ON tc.oid = i.indrelid JOIN pg_am am ON am.oid = ic.relam
           JOIN pg_namespace n ON n.oid = tc.relnamespace WHERE n.nspname = 'public'"""
    ):
        assert r["no_predicate"], f"{r['index']} is a partial index"
        cat.indexes[r["index"]] = (r["tbl"], r["indisunique"], r["indisprimary"], r["amname"], tuple(r["cols"]))
    for r in await conn.fetch(
        """SELECT con.conname, tc.relname AS tbl, con.contype::text AS contype,
                  ARRAY(SELECT a.attname FROM unnest(con.conkey) k JOIN pg_attribute a
                        ON a.attrelid = con.conrelid AND a.attnum = k) AS cols,
                  rc.relname AS ref_tbl,
                  ARRAY(SELECT a.attname FROM unnest(con.confkey) k JOIN pg_attribute a
                        ON a.attrelid = con.confrelid AND a.attnum = k) AS ref_cols,
                  con.confupdtype::text AS confupdtype, con.confdeltype::text AS confdeltype
           FROM pg_constraint con JOIN pg_class tc ON tc.oid = con.conrelid
           JOIN pg_namespace n ON n.oid = tc.relnamespace
           LEFT JOIN pg_class rc ON rc.oid = con.confrelid
           WHERE n.nspname = 'public' AND con.contype <> 'n'"""
    ):
        fk = r["contype"] == "f"
        cat.constraints[r["conname"]] = (
            r["tbl"], r["contype"], tuple(r["cols"]),
            r["ref_tbl"] if fk else None, tuple(r["ref_cols"]) if fk else None,
            r["confupdtype"] if fk else None, r["confdeltype"] if fk else None,
        )  # fmt: skip
    for r in await conn.fetch(
        """SELECT t.typname, array_agg(e.enumlabel ORDER BY e.enumsortorder) AS labels
           FROM pg_enum e JOIN pg_type t ON t.oid = e.enumtypid
           JOIN pg_namespace n ON n.oid = t.typnamespace WHERE n.nspname = 'public' GROUP BY 1"""
    ):
        cat.enums[r["typname"]] = list(r["labels"])
    return cat


def _diff(kind: str, want: dict, have: dict) -> list[str]:
    lines = []
    for key in sorted(set(want) | set(have), key=str):
        if want.get(key) != have.get(key):
            lines.append(f"{kind} {key}: expected {want.get(key)!r}, found {have.get(key)!r}")
    return lines


async def test_app_schema_matches_what_prisma_creates(empty_database_url: str) -> None:
    conn = await db.connect(empty_database_url)
    try:
        report = await migrate(conn, with_app_schema=True)
        assert report.app_schema_created
        actual = await read_catalog(conn)
    finally:
        await conn.close()
    expected = expected_catalog()

    differences = (
        _diff("table", {t: True for t in expected.tables}, {t: True for t in actual.tables})
        + _diff("column", expected.columns, actual.columns)
        + _diff("index", expected.indexes, actual.indexes)
        + _diff("constraint", expected.constraints, actual.constraints)
        + _diff("enum", expected.enums, actual.enums)
    )
    assert not differences, "\n".join(differences)


def test_expected_catalog_follows_prisma_rules() -> None:
    """Spot checks of the rule derivation itself, so a parser bug cannot hide a schema bug."""
    cat = expected_catalog()
    assert len(cat.tables) == 8
    assert cat.columns[("User", "id")] == ("text", True, None)  # cuid(): no database default
    assert cat.columns[("User", "updatedAt")] == ("timestamp(3) without time zone", True, None)
    assert cat.columns[("User", "createdAt")][2] == "CURRENT_TIMESTAMP"
    assert cat.columns[("Feature", "tags")] == ("text[]", False, None)
    assert cat.columns[("CreditBalance", "creditsRemaining")] == ("integer", True, "100")
    assert cat.columns[("AdminSettings", "id")] == ("text", True, "'singleton'::text")
    assert cat.columns[("Plan", "ctaType")] == ("text", False, "'checkout'::text")
    assert cat.columns[("UsageHistory", "operationType")] == ('"OperationType"', True, None)
    assert cat.indexes["User_clerkId_key"] == ("User", True, False, "btree", ("clerkId",))
    assert cat.indexes["User_clerkId_idx"] == ("User", False, False, "btree", ("clerkId",))
    assert cat.constraints["SubscriptionEvent_userId_fkey"][5:] == ("c", "n")  # SET NULL
    assert cat.constraints["UsageHistory_creditBalanceId_fkey"][5:] == ("c", "r")  # RESTRICT
    assert cat.enums["OperationType"] == ["AI_TEXT_CHAT", "AI_IMAGE_GENERATION"]
