"""What the user, billing and storage actors share: run a family's events, retry the waiting."""

from __future__ import annotations

from typing import Any

import structlog
from dramatiq.middleware import CurrentMessage

from ..broker import Runtime, current_broker
from ..domain.each import Family, apply_each
from ..errors import RetryLater, ValidationRejected
from ..ledger.apply import BatchResult
from ..ops.recorder import observe_batch
from ..publisher import build_message
from ..settings import Settings


async def run_family(queue: str, events: Any, family: Family) -> None:
    """Apply a message's events; those that must wait come back with backoff: the whole message
    when none could be applied, else a new message with just them (sent before this one is
    acknowledged, so nothing is lost)."""
    if not isinstance(events, list):
        raise ValidationRejected("message argument must be a list of events", reason="bad_message")
    if Runtime.pool is None or Runtime.settings is None:
        raise RuntimeError("no database pool: is the DatabasePool middleware installed?")
    message = CurrentMessage.get_current_message()
    settings = Runtime.settings
    with structlog.contextvars.bound_contextvars(
        message_id=message.message_id if message else None
    ):
        async with Runtime.pool.acquire() as conn:
            result = await apply_each(conn, events, family, settings)
        observe_batch(current_broker(), queue, result.outcomes, message)  # ops counters (worker/ops)
    send_waiting_back(queue, events, result, settings)


def send_waiting_back(queue: str, events: list[Any], result: BatchResult, settings: Settings) -> None:
    """Events that must wait are retried with backoff: the whole message when none could be
    applied (RetryLater), else a new delayed message with just them, sent before this one is
    acknowledged, so a crash in between redelivers this one instead of losing them."""
    waiting = result.retry_indexes
    if not waiting:
        return
    reasons = [result.outcomes[i].reason or "retry" for i in waiting]
    if len(waiting) == len(events):
        raise RetryLater(reasons)
    current_broker().enqueue(
        build_message(queue, [events[i] for i in waiting]), delay=settings.min_backoff_ms
    )
