"""Small text helpers shared by the ops commands and pages."""

from __future__ import annotations

from datetime import UTC, datetime


def format_age(seconds: float) -> str:
    """`42s`, `3m07s`, `5h02m`, `2d04h`."""
    seconds = max(int(seconds), 0)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    if seconds < 86400:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 86400}d{seconds % 86400 // 3600:02d}h"


def cell(value: object, width: int) -> str:
    """One table cell: control characters shown as '·', long text cut with '…'."""
    text = "-" if value is None else "".join(c if c.isprintable() else "·" for c in str(value))
    return text if len(text) <= width else text[: width - 1] + "…"


def utc_time(iso: str) -> str:
    """An ISO time as `2026-11-25 15:00:00.000Z`, the way the tables of these commands show it."""
    return datetime.fromisoformat(iso).astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + "Z"
