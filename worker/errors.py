"""One error root. Actors decide retry vs. dead letter by class, never by message text."""

from __future__ import annotations

import asyncpg


class WorkerError(Exception):
    """Root of every error pedro-worker raises on purpose."""

    reason = "worker_error"

    def __init__(self, detail: str = "", *, reason: str | None = None) -> None:
        super().__init__(detail or self.reason)
        self.detail = detail
        if reason is not None:
            self.reason = reason


class ConfigError(WorkerError):
    reason = "config_error"


class SchemaMismatch(WorkerError):
    """The database does not have the app schema the worker relies on."""

    reason = "schema_mismatch"

    def __init__(self, differences: list[str]) -> None:
        self.differences = differences
        super().__init__("; ".join(differences))


class MigrationError(WorkerError):
    reason = "migration_error"


# --- message outcomes -------------------------------------------------------------------------


class Rejected(WorkerError):
    """Bad input: never retried. The message is dead-lettered with this reason."""

    reason = "rejected"


class ValidationRejected(Rejected):
    reason = "validation_error"


class TransientError(WorkerError):
    """Might succeed later (unknown user still in flight, refund before its usage, DB blip)."""

    reason = "transient"


class RetryLater(TransientError):
    """Some events of a message wait for something that has not happened yet."""

    def __init__(self, reasons: list[str]) -> None:
        self.reasons = sorted(set(reasons))
        super().__init__(", ".join(self.reasons), reason=self.reasons[0] if self.reasons else None)


class MustWait(WorkerError):
    """The event cannot apply *yet*: it waits durably in `worker.waiting` (never in an
    expiring Redis key) until what it waits for happens, then it is released to its queue.

    `waits_for` names what releases it: 'user:<clerk user id>', 'usage:<usage event id>',
    'operation_type:<label>', 'cost:<label>', 'blob:<object id>', 'plan:<ref>',
    'subscription:<id>', 'customer:<id>', 'payment:<id>' (worker/waiting.py)."""

    reason = "waiting"

    def __init__(self, reason: str, waits_for: str, detail: str = "") -> None:
        super().__init__(detail or reason, reason=reason)
        self.waits_for = waits_for


# --- outages -----------------------------------------------------------------------------------

# PostgreSQL unreachable, restarting or failing over: "try again later", never "this message is
# wrong". A message that meets one is retried with backoff on the outage budget
# (`PEDRO_INFRA_MAX_RETRIES`, worker/broker.py); a background loop logs a warning and tries again
# at its next turn. What a primary's crash and a standby's promotion produce, in order (measured,
# tests/integration/topology/test_pg_failover.py, docs/topologies.md):
DATABASE_OUTAGES: tuple[type[BaseException], ...] = (
    # the statement in flight when the server died (ConnectionDoesNotExistError), refused
    # connections (ConnectionFailureError 08006 …)
    asyncpg.PostgresConnectionError,
    # the next use of a pooled connection whose server died: "connection is closed"
    asyncpg.InterfaceError,
    # connecting while no host is up: ConnectionRefusedError, a reset, an unreachable host, or
    # a connect timeout (TimeoutError is an OSError)
    OSError,
    TimeoutError,
    # 57P01 (pg_ctl stop -m fast, pg_terminate_backend, "unexpected postmaster exit"), 57P02
    # (another backend crashed: the server restarts), 57P03 (starting up, shutting down, in
    # recovery), 53300 (too many connections)
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    asyncpg.CannotConnectNowError,
    asyncpg.TooManyConnectionsError,
    # every host of a multi-host DATABASE_URL answered, none read-write (target_session_attrs):
    # the standbys are up and none is promoted yet, or the old primary came back as a standby
    asyncpg.TargetServerAttributeNotMatched,
    # 25006: a write reached a standby (a URL without target_session_attrs=read-write) or a
    # database set read-only for maintenance: waiting for a primary, not a bad event
    asyncpg.ReadOnlySQLTransactionError,
)
