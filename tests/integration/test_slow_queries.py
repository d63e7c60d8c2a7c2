"""Slow statements are logged with their query name and duration, never their parameters."""

from __future__ import annotations

import json
import os
import subprocess
import sys

# Runs in its own process so the logs are the real JSON lines, configured as in production. The
# named query is added for this test only.
SCRIPT = """
import asyncio
from worker import db
from worker.logs import configure_logging
from worker.settings import Settings

settings = Settings(log_format="json")
configure_logging(settings)
db.QUERIES["sleep_for_test"] = "SELECT pg_sleep($1), $2::text"

async def main():
    pool = await db.create_pool(settings)
    async with pool.acquire() as conn:
        await db.fetchval(conn, "sleep_for_test", 0.6, "param-sl0w-secret ana.maria@example.com")
        await db.fetchval(conn, "sleep_for_test", 0.0, "param-fast-secret")
    await pool.close()

asyncio.run(main())
"""


def run_script(database_url: str, **env: str) -> list[dict]:
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "DATABASE_URL": database_url, **env},
    )
    assert result.returncode == 0, result.stderr
    assert "secret" not in result.stderr and "example.com" not in result.stderr
    return [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]


def test_a_statement_over_the_threshold_is_logged_by_name(database_url):
    lines = [line for line in run_script(database_url) if line["event"] == "slow_query"]
    assert len(lines) == 1  # the 0.6 s one; the fast one stays under the default 500 ms
    [slow] = lines
    assert slow["query"] == "sleep_for_test" and slow["level"] == "warning"
    assert isinstance(slow["duration_ms"], float) and slow["duration_ms"] >= 500
    assert set(slow) <= {"event", "query", "duration_ms", "level", "logger", "timestamp"}


def test_the_threshold_is_a_setting(database_url):
    lines = [
        line
        for line in run_script(database_url, PEDRO_SLOW_QUERY_MS="0")
        if line["event"] == "slow_query"
    ]
    assert [line["query"] for line in lines] == ["sleep_for_test", "sleep_for_test"]
