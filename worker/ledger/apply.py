"""Apply a batch of usage-family events in one transaction, with an outcome per event.

    parse -> lock balances (sorted) -> find refund targets -> claim idempotency keys
          -> decide (pure) -> write ledger + rejections -> commit

Nothing is claimed before its effects are decided, and the claim commits with them: a crash
at any point rolls back everything, and the redelivered message starts over. Events that must
wait (unknown user, refund before its usage) are not claimed and come back as `retry`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg
from pydantic import TypeAdapter, ValidationError

from ..events import EventId, UsageRecorded, UsageRefunded, describe_validation_error, usage_event_adapter
from ..logs import get_logger
from ..repo import ledger as repo
from ..settings import Settings
from .decide import APPLIED, DUPLICATE, REJECTED, RETRY, LedgerEvent, Outcome, decide

log = get_logger("pedro.ledger")

_MAX_STORED_PAYLOAD = 64 * 1024


@dataclass
class BatchResult:
    outcomes: list[Outcome]  # one per input event, in input order

    def count(self, status: str) -> int:
        return sum(1 for o in self.outcomes if o.status == status)

    @property
    def retry_indexes(self) -> list[int]:
        return [i for i, o in enumerate(self.outcomes) if o.status == RETRY]


def safe_payload(raw: Any) -> str:
    """The raw event as JSON for the rejection table, bounded and always valid JSON."""
    try:
        text = json.dumps(raw, separators=(",", ":"), allow_nan=False, default=str)
    except (TypeError, ValueError, RecursionError):
        text = json.dumps({"unserializable": repr(raw)[:1000]})
    if len(text) > _MAX_STORED_PAYLOAD:
        text = json.dumps({"truncated": True, "preview": text[:1000]})
    return text.replace("\\u0000", "\\ufffd")  # jsonb cannot store NUL


_event_id_adapter: TypeAdapter[str] = TypeAdapter(EventId)


def _claimed_id(raw: Any) -> str | None:
    """The raw event's id if it is a valid idempotency key (so a rejection can be found by it)."""
    value = raw.get("id") if isinstance(raw, dict) else None
    try:
        return _event_id_adapter.validate_python(value)
    except ValidationError:
        return None


def _raw_type(raw: Any) -> str | None:
    value = raw.get("type") if isinstance(raw, dict) else None
    return value[:64] if isinstance(value, str) else None


async def apply_usage_batch(
    conn: asyncpg.Connection, raw_events: Sequence[Any], settings: Settings
) -> BatchResult:
    outcomes: list[Outcome | None] = [None] * len(raw_events)
    rejections: list[tuple] = []
    events: dict[int, LedgerEvent] = {}
    first_index: dict[str, int] = {}
    hashes: dict[int, str] = {}

    for i, raw in enumerate(raw_events):
        try:
            event = usage_event_adapter.validate_python(raw)
        except ValidationError as exc:
            event_id = _claimed_id(raw)
            detail = describe_validation_error(exc)
            rejections.append((event_id, _raw_type(raw), "validation_error", detail, safe_payload(raw)))
            outcomes[i] = Outcome(event_id or f"#{i}", REJECTED, "validation_error")
            continue
        hashes[i] = event.payload_hash()
        if event.id in first_index:  # the same key twice in one message
            same = hashes[first_index[event.id]] == hashes[i]
            if not same:
                rejections.append((event.id, event.type, "idempotency_conflict",
                                   "same id, different payload (in one message)",
                                   safe_payload(raw)))  # fmt: skip
            outcomes[i] = Outcome(event.id, DUPLICATE if same else REJECTED, None if same else "idempotency_conflict")
            continue
        first_index[event.id] = i
        events[i] = event

    async with conn.transaction():
        accounts = await repo.lock_accounts(conn, {e.clerkUserId for e in events.values()})
        for i, event in list(events.items()):
            if event.clerkUserId not in accounts:
                outcomes[i] = Outcome(event.id, RETRY, "unknown_user")
                del events[i]

        refund_ids = {e.refundOf for e in events.values() if isinstance(e, UsageRefunded)}
        targets = await repo.find_refund_targets(conn, sorted(refund_ids)) if refund_ids else {}
        batch_usages = {e.id for e in events.values() if isinstance(e, UsageRecorded)}
        for i, event in list(events.items()):
            if isinstance(event, UsageRefunded) and event.refundOf not in batch_usages:
                target = targets[event.refundOf]
                if target.credits_used is None and not target.decided:
                    outcomes[i] = Outcome(event.id, RETRY, "refund_before_usage")
                    del events[i]

        claimed = await repo.claim_events(
            conn, [(e.id, e.type, hashes[i], e.clerkUserId) for i, e in events.items()]
        )
        seen_before = [i for i, e in events.items() if e.id not in claimed]
        if seen_before:
            recorded = await repo.find_event_hashes(conn, [events[i].id for i in seen_before])
            for i in seen_before:
                event = events.pop(i)
                if recorded.get(event.id) == hashes[i]:
                    outcomes[i] = Outcome(event.id, DUPLICATE)
                else:
                    rejections.append((event.id, event.type, "idempotency_conflict",
                                       "an event with this id and a different payload was already processed",
                                       safe_payload(event.model_dump(mode="json"))))  # fmt: skip
                    outcomes[i] = Outcome(event.id, REJECTED, "idempotency_conflict")

        needs_costs = any(isinstance(e, UsageRecorded) and e.credits is None for e in events.values())
        plan = decide(
            list(events.values()),
            accounts=accounts,
            targets=targets,
            feature_costs=await repo.get_feature_costs(conn) if needs_costs else {},
            default_costs=settings.default_feature_costs,
            policy=settings.overdraft_policy,
        )
        await repo.write_ledger(conn, plan)
        await repo.insert_rejections(conn, rejections + plan.rejections)

    for i, event in events.items():
        outcomes[i] = plan.outcomes[event.id]
    result = BatchResult([o for o in outcomes if o is not None])
    assert len(result.outcomes) == len(raw_events)
    log.info(
        "batch_applied", events=len(raw_events), applied=result.count(APPLIED),
        duplicates=result.count(DUPLICATE), rejected=result.count(REJECTED), retry=result.count(RETRY),
    )  # fmt: skip
    return result
