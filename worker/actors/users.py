"""Queue `users`: user.created, user.updated, user.deleted (worker/domain/users.py)."""

from __future__ import annotations

from typing import Any

from ..domain.users import USERS
from ._each import run_family


async def apply_user_events(events: Any) -> None:
    """Apply Clerk user events exactly once; any arrival order ends in the same state."""
    await run_family("users", events, USERS)
