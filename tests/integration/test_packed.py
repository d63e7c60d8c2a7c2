"""Array parameters packed as delimited text come back from PostgreSQL exactly as they were."""

from __future__ import annotations

import asyncpg
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from worker.repo import packed

UNPACK = "SELECT (string_to_array($3, $1, $2))[2:] AS texts, (string_to_array($4, $1, $2))[2:]::int[] AS ints"
# what a PostgreSQL text can hold: anything but NUL (and lone surrogates, which UTF-8 cannot carry)
pg_text = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=8)
awkward = st.sampled_from(["", packed.SEPARATOR, packed.NULL, "a\x1fb"])
texts = st.lists(st.none() | pg_text | awkward, max_size=20)
ints = st.lists(st.integers(-(2**31), 2**31 - 1), max_size=20)


async def unpack(conn: asyncpg.Connection, text_column: list, int_column: list) -> tuple[list, list]:
    row = await conn.fetchrow(UNPACK, *packed.arguments([text_column, int_column]))
    return list(row["texts"]), list(row["ints"])


async def test_ordinary_columns_use_the_ascii_separators(conn: asyncpg.Connection):
    column = ["evt-1", None, "", "ünïcödé", '{"a":1}']
    separator, null, *_ = packed.arguments([column, [1, -2]])
    assert (separator, null) == (packed.SEPARATOR, packed.NULL)
    assert await unpack(conn, column, [1, -2]) == (column, [1, -2])


@pytest.mark.parametrize("column", [[], [""], [None], ["", ""], [None, ""]])
async def test_empty_strings_nulls_and_empty_columns_stay_apart(conn: asyncpg.Connection, column: list):
    assert await unpack(conn, column, []) == (column, [])


async def test_values_holding_the_separators_get_other_ones(conn: asyncpg.Connection):
    column = [packed.SEPARATOR, packed.NULL, f"x{packed.SEPARATOR}y", None]
    separator, null, _ = packed.arguments([column])
    assert {separator, null}.isdisjoint({packed.SEPARATOR, packed.NULL})
    assert await unpack(conn, column, [7]) == (column, [7])


@hypothesis_settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(text_column=texts, int_column=ints)
async def test_any_column_comes_back_unchanged(conn: asyncpg.Connection, text_column: list, int_column: list):
    assert await unpack(conn, text_column, int_column) == (text_column, int_column)
