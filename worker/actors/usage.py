"""Queue `usage`: usage.recorded, usage.refunded, credits.adjusted."""

from __future__ import annotations

from typing import Any

import structlog
from dramatiq.middleware import CurrentMessage

from ..broker import current_broker, runtime
from ..errors import RetryLater, ValidationRejected
from ..ledger.decide import REJECTED, RETRY
from ..logs import get_logger
from ..ops.recorder import observe_batch
from ..publisher import build_message

log = get_logger("pedro.actors.usage")


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
    coalescer, settings = runtime()
    with structlog.contextvars.bound_contextvars(message_id=message_id):
        result = await coalescer.apply(events, message_id=message_id)
        observe_batch(current_broker(), "usage", result.outcomes, message)
        for outcome in result.outcomes:
            if outcome.status in (REJECTED, RETRY):
                log.warning("event_" + outcome.status, event_id=outcome.event_id, reason=outcome.reason)
            else:
                log.debug("event_" + outcome.status, event_id=outcome.event_id)
    waiting = result.retry_indexes
    if not waiting:
        return
    reasons = [result.outcomes[i].reason or "retry" for i in waiting]
    if len(waiting) == len(events):
        raise RetryLater(reasons)
    retry = build_message("usage", [events[i] for i in waiting])
    current_broker().enqueue(retry, delay=settings.min_backoff_ms)
