"""Run a dramatiq worker inside this process (dev mode, tests, bench).

Production runs `pedro-worker worker`, which is dramatiq's own multi-process CLI.
"""

from __future__ import annotations

import dramatiq
from dramatiq.brokers.redis import RedisBroker

from .broker import QUEUES


class InProcessWorker:
    def __init__(self, broker: RedisBroker, *, threads: int = 4, queues: tuple[str, ...] = QUEUES):
        self.broker = broker
        self.queues = queues
        self.worker = dramatiq.Worker(broker, queues=set(queues), worker_threads=threads, worker_timeout=100)

    def start(self) -> InProcessWorker:
        self.worker.start()
        return self

    def drain(self, timeout_ms: int = 60_000) -> None:
        """Wait until every queue (including delayed retries and in-flight messages) is empty."""
        for queue in self.queues:
            self.broker.join(queue, timeout=timeout_ms)
        self.worker.join()

    def stop(self) -> None:
        self.worker.stop()

    def __enter__(self) -> InProcessWorker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
