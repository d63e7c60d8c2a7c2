"""Apply a message's events one transaction each: validate -> claim -> effect -> commit.

The user, billing and storage families are low-volume and their effects touch several tables,
so every event gets its own transaction. Its idempotency key is claimed in `worker.event_log`
in that transaction, with its effects: a redelivered event finds its key taken and changes
nothing (or, with a different payload, is refused as `idempotency_conflict`). An event that
cannot apply *yet* raises `MustWait`, which rolls everything back, its claim included, and is
then stored in `worker.waiting` (worker/waiting.py) until what it waits for releases it. A row
another session holds for longer than `lock_wait_ms` (`row_busy`) is a passing condition: the
event comes back later with backoff (its outcome is `retry`: worker/actors/_each.py) instead of
keeping a worker thread waiting until statement_timeout.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg
from pydantic import BaseModel, TypeAdapter, ValidationError

from .. import waiting
from ..errors import MustWait
from ..events import INGRESS_REJECTION, describe_validation_error
from ..ledger.apply import BatchResult, safe_payload
from ..ledger.decide import APPLIED, DUPLICATE, REJECTED, RETRY, WAITING, Outcome
from ..logs import get_logger
from ..repo import ledger as ledger_repo
from ..repo.outcome_counts import count_outcomes
from ..settings import Settings

log = get_logger("pedro.domain")

ApplyOne = Callable[[asyncpg.Connection, Any, Settings], Awaitable[Outcome]]


@dataclass(frozen=True)
class Family:
    """How to validate, key and apply the events of one queue."""

    name: str
    adapter: TypeAdapter[Any]
    apply: ApplyOne
    claim_key: Callable[[Any], str] = lambda event: event.id
    # what an applied event releases at once (worker/waiting.py keys), e.g. 'user:<id>'
    releases: Callable[[Any], list[str]] = lambda event: []
    # notes (Outcome.reason of an applied event) that ops should hear about
    warnings: frozenset[str] = frozenset()


def _raw_field(raw: Any, name: str, limit: int) -> str | None:
    value = raw.get(name) if isinstance(raw, dict) else None
    return value[:limit] if isinstance(value, str) and value else None


async def reject(
    conn: asyncpg.Connection, event: BaseModel, event_id: str, reason: str, detail: str
) -> Outcome:
    """Store a refusal (in the caller's transaction) and return its outcome."""
    payload = safe_payload(event.model_dump(mode="json"))
    stored = await ledger_repo.insert_rejections(conn, [(event_id, event.type, reason, detail, payload)])  # type: ignore[attr-defined]
    # already stored: a redelivery of a refused event (ledger/apply.py, repeated_refusals_are_duplicates)
    return Outcome(event_id, REJECTED, reason) if stored else Outcome(event_id, DUPLICATE)


async def _store_ingress_rejection(conn: asyncpg.Connection, index: int, raw: dict) -> Outcome:
    """A payload the ingress answered but could not read (worker/events.py INGRESS_REJECTION):
    stored once per (key, reason); a redelivery of the same payload is a duplicate."""
    key, reason = _raw_field(raw, "id", 191), _raw_field(raw, "reason", 64) or "validation_error"
    rejection = (key, _raw_field(raw, "eventType", 64), reason, _raw_field(raw, "detail", 1000),
                 safe_payload(raw.get("payload")))  # fmt: skip
    stored = await ledger_repo.insert_rejections(conn, [rejection])
    return Outcome(key or f"#{index}", REJECTED if stored else DUPLICATE, reason)


async def _invalid(conn: asyncpg.Connection, index: int, raw: Any, exc: ValidationError) -> Outcome:
    event_id = _raw_field(raw, "id", 191)
    rejection = (event_id, _raw_field(raw, "type", 64), "validation_error",
                 describe_validation_error(exc), safe_payload(raw))  # fmt: skip
    stored = await ledger_repo.insert_rejections(conn, [rejection])
    return Outcome(event_id or f"#{index}", REJECTED if stored else DUPLICATE, "validation_error")


async def _apply_one(
    conn: asyncpg.Connection, index: int, raw: Any, family: Family, settings: Settings
) -> Outcome:
    """One event, in its own transaction; the outcome is counted in the transaction that decides
    it (worker.outcome_count: the exact totals)."""
    if isinstance(raw, dict) and raw.get("type") == INGRESS_REJECTION:
        async with conn.transaction():
            outcome = await _store_ingress_rejection(conn, index, raw)
            await count_outcomes(conn, family.name, [outcome])
        return outcome
    try:
        event = family.adapter.validate_python(raw)
    except ValidationError as exc:
        async with conn.transaction():
            outcome = await _invalid(conn, index, raw, exc)
            await count_outcomes(conn, family.name, [outcome])
        return outcome

    key = family.claim_key(event)
    payload_hash = event.payload_hash()
    try:
        async with conn.transaction():
            await ledger_repo.limit_lock_wait(conn, settings.lock_wait_ms)
            outcome = await _decide(conn, event, key, payload_hash, family, settings)
            await count_outcomes(conn, family.name, [outcome])
        return outcome
    except MustWait as exc:
        # Rolled back, claim included; the event waits in PostgreSQL, stored before the message
        # is acknowledged (a crash in between redelivers the message: it is found waiting again).
        outcome = Outcome(key, WAITING, exc.reason, exc.waits_for, exc.detail or None)
        async with conn.transaction():
            if await waiting.store(conn, family.name, [(raw, outcome, payload_hash)]):
                # another payload already waits under this id: refused, the first keeps waiting
                outcome = await reject(conn, event, key, "idempotency_conflict", waiting.CONFLICT_DETAIL)
            await count_outcomes(conn, family.name, [outcome])
        return outcome
    except asyncpg.LockNotAvailableError:  # a row it must change was held past lock_wait_ms
        return Outcome(key, RETRY, "row_busy")


async def _decide(
    conn: asyncpg.Connection, event: Any, key: str, payload_hash: str, family: Family, settings: Settings
) -> Outcome:
    """Claim the event's key and apply it; a key already claimed is a duplicate or a conflict."""
    claimed = await ledger_repo.claim_events(conn, [(key, event.type, payload_hash, event.clerkUserId, None)])
    if claimed:
        return await family.apply(conn, event, settings)
    recorded = await ledger_repo.find_event_hashes(conn, [key])
    if recorded.get(key) == payload_hash:
        return Outcome(key, DUPLICATE)
    return await reject(
        conn, event, key, "idempotency_conflict",
        "an event with this id and a different payload was already processed",
    )  # fmt: skip


async def apply_each(
    conn: asyncpg.Connection, raw_events: Sequence[Any], family: Family, settings: Settings
) -> BatchResult:
    """Apply every event of a message, each in its own transaction; one outcome per event."""
    outcomes = [
        await _apply_one(conn, i, raw, family, settings) for i, raw in enumerate(raw_events)
    ]
    warnings = 0
    for outcome in outcomes:
        if outcome.status in (REJECTED, RETRY, WAITING) or outcome.reason in family.warnings:
            warnings += outcome.status == APPLIED
            log.warning("event_" + outcome.status, event_id=outcome.event_id, reason=outcome.reason)
        else:
            log.info("event_" + outcome.status, event_id=outcome.event_id, note=outcome.reason)
    result = BatchResult(outcomes)
    log.info(
        "events_applied", family=family.name, events=len(outcomes), applied=result.count(APPLIED),
        duplicates=result.count(DUPLICATE), rejected=result.count(REJECTED),
        retry=result.count(RETRY), waiting=result.count(WAITING), warnings=warnings,
    )  # fmt: skip
    return result
