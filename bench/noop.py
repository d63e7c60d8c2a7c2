"""(e) The reference for the queue's own cost: an async actor that does nothing.

It is registered on the product's broker (same middleware, including the database pool) and on
the product's `usage` queue, so a worker running `bench.noop_app` differs from the real one only
in what the actor does. Messages carry one event each, like the single-event path (d).
"""

from __future__ import annotations

from typing import Any

import dramatiq
from dramatiq import Message

NOOP_ACTOR = "bench_noop"
NOOP_QUEUE = "usage"


async def bench_noop(events: Any) -> None:
    return None


def register_noop(broker: dramatiq.Broker) -> None:
    dramatiq.actor(bench_noop, broker=broker, queue_name=NOOP_QUEUE, actor_name=NOOP_ACTOR)


def noop_message(event: dict[str, Any]) -> Message:
    import time

    return Message(queue_name=NOOP_QUEUE, actor_name=NOOP_ACTOR, args=([event],), kwargs={},
                   options={"published_at_ms": int(time.time() * 1000)})  # fmt: skip
