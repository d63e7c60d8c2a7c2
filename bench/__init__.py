"""`pedro-worker bench`: throughput, latency and memory of every event path, exactly-once checked.

The naive baseline (`baseline.py`) and the no-op actor (`noop.py`) are references written for the
bench; everything product-side (apply, publish, queries, worker processes) is the project's own
code, measured as it is when the bench runs. `docs/performance.md` explains the figures.
"""
