"""Small text helpers shared by the ops commands and pages."""

from __future__ import annotations


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
