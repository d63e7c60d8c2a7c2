"""Queue `usage`: usage.recorded, usage.refunded, credits.adjusted."""

from __future__ import annotations

import logging
from typing import Any

import structlog
from dramatiq.middleware import CurrentMessage

from ..broker import Runtime, current_broker, runtime
from ..errors import ValidationRejected
from ..ledger.apply import BatchResult
from ..ledger.decide import REJECTED, RETRY, WAITING
from ..logs import get_logger
from ..ops.recorder import observe_batch
from ._each import send_waiting_back

log = get_logger("pedro.actors.usage")
_stdlib_log = logging.getLogger("pedro.actors.usage")


async def apply_usage_events(events: Any) -> None:
    """Apply a batch of usage-family events exactly once.

    Concurrent messages of this process share a transaction (ledger/coalesce.py). Under a
    worker, the actor only submits the events: the message is settled and acknowledged after
    that transaction committed, without a worker thread waiting for it (worker/settle.py).
    Events that must wait (unknown user, refund before its usage, …) are stored in
    worker.waiting by the transaction; events that met a held balance go back with backoff.
    """
    if not isinstance(events, list):
        raise ValidationRejected("message argument must be a list of events", reason="bad_message")
    message = CurrentMessage.get_current_message()
    coalescer, _ = runtime()
    future = coalescer.submit(events, message_id=message.message_id if message else None)
    if message is not None and Runtime.settler is not None:
        Runtime.settler.defer(message, future, lambda msg, result: settle_usage(msg, events, result))
        return
    settle_usage(message, events, await future)


def settle_usage(message: Any, events: list[Any], result: BatchResult) -> None:
    """After the commit: ops counters, a log line per event not applied, the waiting sent back."""
    with structlog.contextvars.bound_contextvars(message_id=message.message_id if message else None):
        observe_batch(current_broker(), "usage", result.outcomes, message)
        debug = _stdlib_log.isEnabledFor(logging.DEBUG)  # skip building lines nobody reads
        for outcome in result.outcomes:
            if outcome.status in (REJECTED, RETRY, WAITING):
                log.warning("event_" + outcome.status, event_id=outcome.event_id, reason=outcome.reason)
            elif debug:
                log.debug("event_" + outcome.status, event_id=outcome.event_id)
    _, settings = runtime()
    send_waiting_back("usage", events, result, settings)
