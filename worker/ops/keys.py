"""Redis key layout: dramatiq's (read and, for dead letters, rewritten) and pedro's own.

dramatiq's RedisBroker, for a namespace `ns` and a queue `q`:

    ns:q                 list of ready message ids
    ns:q.msgs            hash id -> message JSON (ready and in progress)
    ns:q.DQ / .DQ.msgs   the same for delayed messages (retries with backoff)
    ns:q.XQ / .XQ.msgs   dead letters: sorted set id by time dead-lettered, and their bodies
    ns:__heartbeats__    sorted set: broker id -> last heartbeat (ms)
    ns:__acks__.<broker id>.<q>   ids a worker fetched and has not acknowledged yet

pedro's wake-up lists (worker/wakeup.py: publishers push, idle consumers block on them):

    ns:q.wake            list of at most 64 tokens

pedro's ops stats (written by `recorder.OpsStats`, read by `stats` and `metrics`):

    ns:__pedro__:totals          hash counter field -> integer, never reset
    ns:__pedro__:rate:<t>        hash counter field -> integer for the bucket starting at t (s)
    ns:__pedro__:workers         hash broker id -> JSON about a worker process
    ns:__pedro__:reconcile       JSON of the last reconcile (checked, drift, when, where)
"""

from __future__ import annotations

RATE_BUCKET_S = 10  # one point per 10 seconds
RATE_WINDOW_BUCKETS = 90  # 15 minutes on the dashboard's charts
RATE_TTL_S = 3600

# Histogram buckets (upper bounds, inclusive) shared by the recorder and /metrics.
DURATION_BUCKETS_MS = (5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000)
LATENCY_BUCKETS_MS = (
    10,
    25,
    50,
    100,
    250,
    500,
    1000,
    2500,
    5000,
    10000,
    30000,
    60000,
    300000,
    3600000,
)
BATCH_SIZE_BUCKETS = (1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500)


def canonical_queue(name: str) -> str:
    """`usage.DQ` -> `usage`: dead letters and stats are per queue, delayed or not."""
    return name[:-3] if name.endswith(".DQ") else name


class Keys:
    def __init__(self, namespace: str) -> None:
        self.ns = namespace

    def ready(self, queue: str) -> str:
        return f"{self.ns}:{queue}"

    def messages(self, queue: str) -> str:
        return f"{self.ns}:{queue}.msgs"

    def delayed_messages(self, queue: str) -> str:
        return f"{self.ns}:{queue}.DQ.msgs"

    def dead(self, queue: str) -> str:
        return f"{self.ns}:{queue}.XQ"

    def dead_messages(self, queue: str) -> str:
        return f"{self.ns}:{queue}.XQ.msgs"

    def wake(self, queue: str) -> str:
        return f"{self.ns}:{queue}.wake"

    @property
    def heartbeats(self) -> str:
        return f"{self.ns}:__heartbeats__"

    def acks(self, broker_id: str, queue: str) -> str:
        return f"{self.ns}:__acks__.{broker_id}.{queue}"

    @property
    def totals(self) -> str:
        return f"{self.ns}:__pedro__:totals"

    def rate(self, bucket_start_s: int) -> str:
        return f"{self.ns}:__pedro__:rate:{bucket_start_s}"

    @property
    def workers(self) -> str:
        return f"{self.ns}:__pedro__:workers"

    @property
    def reconcile(self) -> str:
        return f"{self.ns}:__pedro__:reconcile"

    @property
    def reconcile_lock(self) -> str:
        return f"{self.ns}:__pedro__:reconcile.lock"


def bucket_of(now_s: float) -> int:
    return int(now_s) // RATE_BUCKET_S * RATE_BUCKET_S
