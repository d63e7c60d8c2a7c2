"""One error root. Actors decide retry vs. dead letter by class, never by message text."""

from __future__ import annotations


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
