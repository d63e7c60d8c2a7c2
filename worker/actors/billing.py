"""Queue `billing`: billing.event (worker/domain/billing.py)."""

from __future__ import annotations

from typing import Any

from ..domain.billing import BILLING
from ._each import run_family


async def record_billing_events(events: Any) -> None:
    """Record provider billing events exactly once; grant and reverse payment credits once."""
    await run_family("billing", events, BILLING)
