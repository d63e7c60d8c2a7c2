"""The worker's clock: what "now" is for waiting, sweeps and expiry.

One function, so that a test can move time forward (`advance`) and show that nothing the
worker keeps depends on how long it waited: a waiting event is released by what it waits for,
never by its age.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

_offset = timedelta()


def now() -> datetime:
    """The current time, UTC, aware."""
    return datetime.now(UTC) + _offset


def advance(delta: timedelta) -> None:
    """Move this process's clock forward (tests)."""
    global _offset
    _offset += delta


def reset() -> None:
    global _offset
    _offset = timedelta()
