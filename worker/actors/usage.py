"""Queue `usage`: usage.recorded, usage.refunded, credits.adjusted."""

from __future__ import annotations

from typing import Any

import structlog
from dramatiq.middleware import CurrentMessage

from ..broker import current_broker, runtime
from ..errors import RetryLater, ValidationRejected
from ..ledger.apply import apply_usage_batch
from ..publisher import build_message


async def apply_usage_events(events: Any) -> None:
    """Apply a batch of usage-family events exactly once.

    Events that must wait (unknown user, refund before its usage) are retried with backoff:
    the whole message when nothing else in it could be applied, otherwise as a new message
    with just those events (sent before this one is acknowledged, so nothing is lost).
    """
    if not isinstance(events, list):
        raise ValidationRejected("message argument must be a list of events", reason="bad_message")
    message = CurrentMessage.get_current_message()
    message_id = message.message_id if message else None
    pool, settings = runtime()
    with structlog.contextvars.bound_contextvars(message_id=message_id):
        async with pool.acquire() as conn:
            result = await apply_usage_batch(conn, events, settings)
    waiting = result.retry_indexes
    if not waiting:
        return
    reasons = [result.outcomes[i].reason or "retry" for i in waiting]
    if len(waiting) == len(events):
        raise RetryLater(reasons)
    retry = build_message("usage", [events[i] for i in waiting])
    current_broker().enqueue(retry, delay=settings.min_backoff_ms)
