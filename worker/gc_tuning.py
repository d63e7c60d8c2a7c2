"""Garbage collection tuned for a worker process that allocates in batches.

A 1,000-event batch keeps tens of thousands of young container objects alive at once (decoded
events, validated models, rows, outcomes) and frees them together, by reference counting, when
it is done. CPython's default thresholds (700, 10, 10) run the cyclic collector in the middle of
every batch: each young collection traverses what the batch holds, promotes it, and the full
collections then traverse every module, schema and class the process imported. Measured during
path (c) of `pedro-worker bench`: 0.65-0.8 s of each worker process's ~3 s of CPU was garbage
collection (1,100 collections, 8 of them full at ~50 ms each), about 6 µs per event.

So once the worker has booted, everything alive is moved to the permanent generation
(`gc.freeze()`: boot-time objects are never collected anyway), and a young collection waits for
50,000 net allocations instead of 700. The collector still runs when reference cycles pile up
(asyncio and exceptions make some); the ledger's own objects make none (a test holds that: a
batch's plan used to be a cycle, change 23). In the same run after both changes: one collection
per worker process, 0.02 s; workers 24 µs per event instead of 28. Peak RSS per worker process:
70-73 MB, as before. Numbers in docs/performance.md (change 20).

The ingress calls `tune()` too, once its lifespan has started (worker/ingress/app.py): a request
allocates a few hundred objects, so CPython's defaults collected every few requests. Measured in
(h): ingress CPU per POST 293-341 -> 218-241 µs, GET /healthz 4,935-5,961 -> 5,933-6,581/s.
"""

from __future__ import annotations

import gc

import dramatiq
from dramatiq.middleware import Middleware

THRESHOLDS = (50_000, 20, 20)  # young, middle, old (CPython's defaults: 700, 10, 10)


def tune() -> None:
    """Freeze what is alive now and collect less often from here on (once per process: a test
    process that boots many workers freezes only at the first)."""
    if gc.get_threshold() == THRESHOLDS:
        return
    gc.collect()
    gc.freeze()
    gc.set_threshold(*THRESHOLDS)


class GarbageCollection(Middleware):
    """`tune()` in every worker process, once it has booted (its imports, pool and threads)."""

    def after_worker_boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        tune()
