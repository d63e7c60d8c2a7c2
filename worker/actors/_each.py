"""What the user, billing and storage actors share: run a family's events, release what they
satisfy, retry what met a held row."""

from __future__ import annotations

from typing import Any

import structlog
from dramatiq.middleware import CurrentMessage

from ..broker import Runtime, current_broker
from ..domain.each import Family, apply_each
from ..errors import RetryLater, ValidationRejected
from ..ledger.apply import BatchResult
from ..ledger.decide import APPLIED
from ..logs import get_logger
from ..ops.recorder import observe_batch
from ..publisher import build_message
from ..settings import Settings

log = get_logger("pedro.actors")


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
        await release_what_applied(events, result, family)
    send_waiting_back(queue, events, result, settings)


async def release_what_applied(events: list[Any], result: BatchResult, family: Family) -> None:
    """What the applied events release (a user's waiting events, once it exists) goes back to
    its queues now, not at the next sweep. A failure here only leaves it to the sweep."""
    keys = sorted({key for raw, outcome in zip(events, result.outcomes, strict=True)
                   if outcome.status == APPLIED for key in family.releases(raw)})  # fmt: skip
    if keys and Runtime.releaser is not None:
        try:
            await Runtime.releaser.release(keys=keys)
        except Exception as exc:  # noqa: BLE001 - the sweep releases them later
            log.warning("waiting_release_failed", error=type(exc).__name__, detail=str(exc)[:200])


def send_waiting_back(queue: str, events: list[Any], result: BatchResult, settings: Settings) -> None:
    """Events that met a passing condition (a row held past lock_wait_ms) are retried with
    backoff: the whole message when none could be applied (RetryLater), else a new delayed
    message with just them, sent before this one is acknowledged, so a crash in between
    redelivers this one instead of losing them. (Events that wait for something to happen are
    in worker.waiting already: they are not retried.)"""
    waiting = result.retry_indexes
    if not waiting:
        return
    reasons = [result.outcomes[i].reason or "retry" for i in waiting]
    if len(waiting) == len(events):
        raise RetryLater(reasons)
    current_broker().enqueue(
        build_message(queue, [events[i] for i in waiting]), delay=settings.min_backoff_ms
    )
