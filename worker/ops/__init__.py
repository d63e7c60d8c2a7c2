"""Operations: what ops see and do without a shell on the Redis box.

- `recorder.py`   worker-side middleware: message and ledger counters, added to Redis every second
- `keys.py`       the Redis key layout (dramatiq's and ours), histogram buckets
- `stats.py`      reads queue depths, worker heartbeats, rates and totals back
- `dlq.py`        dead letters: list, show, requeue, purge (atomic Lua moves)
- `metrics.py`    Prometheus text for `/metrics`, computed from Redis at scrape time
- `reconcile.py`  paged reconcile with progress; the web process's background run
- `replay.py`     re-publish an export, skipping what the ledger already decided
- `web.py`        the dashboard and `/metrics` as Starlette routes (`auth.py`, `pages.py`, `static/`)
- `commands.py`   `pedro-worker dlq | stats | replay` (`progress.py`: their progress bars)
- `waiting.py`    events waiting in PostgreSQL: by reason and age (stats, /metrics, dashboard),
                  release and drop; `waiting_cli.py`: `pedro-worker waiting list|show|release|drop`
"""
