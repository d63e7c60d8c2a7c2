"""Ids and timestamps the way Prisma's client makes them.

Prisma's `@default(cuid())` is a client-side cuid (v1): 25 characters starting with `c`.
`@updatedAt` is also client-side: the worker sets it on every insert and update (in SQL, from
`now()` at millisecond precision, the same value Prisma would write).
"""

from __future__ import annotations

from datetime import UTC, datetime

import cuid as _cuid

_generator = _cuid.CuidGenerator()


def new_id() -> str:
    """A Prisma-compatible cuid for a row the worker creates."""
    return _generator.cuid()


def prisma_timestamp(value: datetime | None) -> datetime | None:
    """An aware datetime as Prisma stores DateTime: naive UTC for a TIMESTAMP(3) column."""
    return value.astimezone(UTC).replace(tzinfo=None) if value is not None else None
