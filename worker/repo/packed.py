"""Array parameters sent as delimited text, for the queries that take thousands of values.

asyncpg encodes a `text[]` or `int[]` parameter element by element, and first checks every
element against three `collections.abc` classes (is it itself an array?). For `write_ledger`'s
columns that was ~40 `isinstance` calls and ~2 µs of worker CPU per usage event, a tenth of what
the worker spends applying it. A column packed here costs one `str.join`; PostgreSQL splits it
back, as cheaply as it decodes an array:

    (string_to_array($n, $separator, $null))[2:]            -- text[]
    (string_to_array($n, $separator, $null))[2:]::int[]     -- int[]

Every packed column but an empty one starts with the separator, so that `[]` and `['']` stay
different (`''` and the separator); `[2:]` drops the empty field before it. The separator and
the NULL marker are single characters that occur in no value of the call: the ASCII unit and
record separators, unless a value contains one of them (no event field can; a database id
could), in which case two characters the values do not use are picked instead. Either way
the result is exact.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence

SEPARATOR, NULL = "\x1f", "\x1e"  # ASCII unit separator, record separator

Value = str | int | None


def _join(column: Sequence[Value], separator: str, null: str) -> str:
    if not column:
        return ""  # string_to_array('') is an empty array
    try:
        return separator + separator.join(column)  # type: ignore[arg-type]  # all str: the fast path
    except TypeError:
        return separator + separator.join([null if v is None else str(v) for v in column])


def _marker_pairs(columns: Sequence[Sequence[Value]]) -> Iterator[tuple[str, str]]:
    yield SEPARATOR, NULL
    used = {char for column in columns for value in column if isinstance(value, str) for char in value}
    codes = itertools.chain(range(1, 0xD800), range(0xE000, 0x110000))  # PostgreSQL text holds no NUL
    free = (chr(code) for code in codes if chr(code) not in used)
    yield next(free), next(free)


def arguments(columns: Sequence[Sequence[Value]]) -> list[str]:
    """A query's arguments for these columns: the separator, the NULL marker, then one text per
    column (`$1`, `$2`, `$3`…). Values: str, int or None."""
    columns = [column if isinstance(column, list) else list(column) for column in columns]
    values = sum(len(column) for column in columns)
    nulls = sum(column.count(None) for column in columns)
    for separator, null in _marker_pairs(columns):
        texts = [_join(column, separator, null) for column in columns]
        # Each text holds exactly one separator per value and one marker per None, unless a value
        # holds one: so the whole call is intact iff the totals match (one count over all the
        # texts, not two per column: a one-row statement has ~30 mostly empty columns).
        whole = "".join(texts)
        if whole.count(separator) == values and whole.count(null) == nulls:
            return [separator, null, *texts]
    raise AssertionError("two characters absent from the values were picked")
