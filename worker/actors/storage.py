"""Queue `storage`: storage.object_created, storage.object_deleted (worker/domain/storage.py)."""

from __future__ import annotations

from typing import Any

from ..domain.storage import STORAGE
from ._each import run_family


async def apply_storage_events(events: Any) -> None:
    """Insert and soft-delete "StorageObject" rows exactly once, in any arrival order."""
    await run_family("storage", events, STORAGE)
