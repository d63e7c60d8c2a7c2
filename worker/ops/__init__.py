"""Operations: what ops see and do without a shell on the Redis box.

- `recorder.py`  the worker-side middleware that counts messages and ledger outcomes into Redis
- `stats.py`     reads queue depths, worker heartbeats, rates and totals back (dashboard, CLI)
- `dlq.py`       dead letters: list, show, requeue, purge (atomic Lua moves)
- `metrics.py`   Prometheus text for `/metrics`, computed from Redis at scrape time
- `web.py`       the dashboard (Starlette routes, mounted by the ingress under `/ops`)
- `commands.py`  the `pedro-worker dlq|stats|replay|reconcile` commands
"""
