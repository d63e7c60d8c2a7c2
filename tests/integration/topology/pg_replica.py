"""A PostgreSQL primary and its streaming replica, both from the embedded PostgreSQL 18 binaries
(worker/embedded.py), for the failover test: real processes on free ports, always stopped.

`synchronous=True` makes the replica the primary's synchronous standby
(`synchronous_standby_names` = its name, `synchronous_commit = on`): a commit returns only once
the standby has flushed its WAL, so a promoted standby has every commit a client was told of.
With `False` it streams asynchronously and may lag (docs/topologies.md: what that loses).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime

import asyncpg

from worker.embedded import EmbeddedPostgres

STANDBY = "replica1"


@dataclass
class ReplicatedPostgres:
    primary: EmbeddedPostgres
    standby: EmbeddedPostgres

    def url(self, user: str = "postgres", database: str = "postgres") -> str:
        """The multi-host URL a client fails over with: both servers, the read-write one chosen
        at every connect (asyncpg and libpq both read `target_session_attrs`)."""
        hosts = ",".join(f"127.0.0.1:{pg.port}" for pg in (self.primary, self.standby))
        return f"postgresql://{user}@{hosts}/{database}?target_session_attrs=read-write"

    async def wait_streaming(self, *, synchronous: bool, timeout_s: float = 30) -> None:
        """Until the primary reports the standby streaming, as a synchronous one if asked."""
        want = "sync" if synchronous else "async"
        conn = await asyncpg.connect(self.primary.url)
        try:
            deadline = time.monotonic() + timeout_s
            while True:
                row = await conn.fetchrow("SELECT state, sync_state FROM pg_stat_replication WHERE application_name = $1",
                                          STANDBY)  # fmt: skip
                if row is not None and (row["state"], row["sync_state"]) == ("streaming", want):
                    return
                if time.monotonic() > deadline:
                    raise TimeoutError(f"the standby is not streaming as {want}: {row}")
                await asyncio.sleep(0.05)
        finally:
            await conn.close()

    def fail_over(self, *, after_s: float) -> tuple[datetime, datetime]:
        """SIGKILL the primary (every process of it), then, `after_s` later (a failover manager
        noticing: Patroni's ttl), promote the standby. Returns when the primary was dead and when
        `pg_ctl promote` returned: the standby accepts writes from then on."""
        self.primary.kill()
        killed = datetime.now(UTC)
        time.sleep(after_s)
        self.standby.promote()
        return killed, datetime.now(UTC)

    def writable_since(self) -> datetime:
        """When the promoted standby began to accept writes: its log's last "ready to accept
        connections" (log_line_prefix `%m`: milliseconds, log_timezone UTC here)."""
        lines = (self.standby.pgdata / "server.log").read_text().splitlines()
        ready = [line for line in lines if "database system is ready to accept connections" in line][-1]
        day, clock, zone = ready.split(" ", 3)[:3]
        assert zone == "UTC", ready
        return datetime.fromisoformat(f"{day}T{clock}+00:00")


@contextmanager
def replicated_postgres(*, synchronous: bool = True) -> Iterator[ReplicatedPostgres]:
    """A primary with one streaming standby named STANDBY, both stopped and removed at exit."""
    # track_commit_timestamp: the test reads when each row committed (the outage it measures)
    settings = {"synchronous_commit": "on", "track_commit_timestamp": "on"}
    if synchronous:
        settings["synchronous_standby_names"] = f"'{STANDBY}'"
    with ExitStack() as stack:
        primary = stack.enter_context(EmbeddedPostgres(settings=settings))
        standby = stack.enter_context(EmbeddedPostgres.replica_of(primary, name=STANDBY))
        yield ReplicatedPostgres(primary, standby)
