"""The labels of the app's "OperationType" enum, as the database has them now.

The app adds labels with Prisma migrations (`ALTER TYPE "OperationType" ADD VALUE …`) while the
worker runs. A worker process reads them when its first usage needs them, again every
`refresh_s`, and again at once (at most once a second) when a usage names a label it does not
know: so a new label is seen without a restart, and a label the database lacks costs one cheap
catalog query per second at most, not one per event. A usage whose label the database still
lacks waits (`unknown_operation_type`) and the waiting sweep releases it once the label exists.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

import asyncpg

from ..repo.waiting import operation_type_labels


class OperationTypes:
    def __init__(self, refresh_s: float = 30.0, unknown_refresh_s: float = 1.0) -> None:
        self.refresh_s = refresh_s
        self.unknown_refresh_s = unknown_refresh_s
        self.labels: frozenset[str] = frozenset()
        self._read_at = float("-inf")

    async def current(self, conn: asyncpg.Connection, needed: Iterable[str]) -> frozenset[str]:
        """The labels, read again if they are old or lack one of `needed` (rate-limited)."""
        age = time.monotonic() - self._read_at
        if age >= self.refresh_s or (age >= self.unknown_refresh_s and not self.labels.issuperset(needed)):
            self.labels = frozenset(await operation_type_labels(conn))
            self._read_at = time.monotonic()
        return self.labels
