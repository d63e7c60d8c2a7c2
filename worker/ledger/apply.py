"""Apply a batch of usage-family events, with an outcome per event.

    look up decided ids -> settle replays (raw hash) -> parse the rest -> settle conflicts ->
    [transaction: lock balances (sorted) -> find refund targets -> decide (pure) ->
     write idempotency keys + ledger (one statement) -> rejections]

A replayed event whose raw JSON hashes to what was recorded when it was first decided is a
duplicate at once: replays cost a hash and an index lookup per event, no validation, no lock.

The first transaction takes only balances nobody else holds (SKIP LOCKED); the events of users
another batch is busy with follow in a second transaction that waits for those locks, for at
most `lock_wait_ms`: a balance held longer (by the app, by a forgotten psql session)
sends its users' events back as `retry` (`balance_busy`) rather than stall the process. Either
way a user's events are decided together, in one transaction.

An event's idempotency key is written in the same statement as its effects, and commits with
them: a crash at any point rolls back everything, and the redelivered message starts over. A
twin decided between the lookup and that statement makes it fail on the key: the transaction
rolls back and runs again without that event (`_apply_events`). Events that cannot apply yet
(unknown user, refund before its usage, unknown operation type, no cost) are not decided: they
are stored in `worker.waiting` by the same transaction (worker/waiting.py) and come back as
`waiting`; events of a balance held elsewhere come back as `retry`.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg
from pydantic import TypeAdapter, ValidationError

from .. import clock, codec
from ..events import (
    EVENT_ID_CHARS,
    EVENT_ID_MAX,
    EventId,
    UsageRecorded,
    UsageRefunded,
    describe_validation_error,
    usage_event_adapter,
)
from ..logs import get_logger
from .. import waiting
from ..notify import outbox
from ..repo import holds as holds_repo
from ..repo import ledger as repo
from ..repo.outcome_counts import count_outcomes
from ..settings import Settings
from .decide import APPLIED, DUPLICATE, REJECTED, RETRY, WAITING, LedgerEvent, Outcome, decide
from .operation_types import OperationTypes

log = get_logger("pedro.ledger")

_MAX_STORED_PAYLOAD = 64 * 1024
_SURROGATE = re.compile("[\ud800-\udfff]")
_RACE_ATTEMPTS = 3  # transactions per pass when twins keep being decided meanwhile


@dataclass
class BatchResult:
    outcomes: list[Outcome]  # one per input event, in input order

    def count(self, status: str) -> int:
        return sum(1 for o in self.outcomes if o.status == status)

    @property
    def retry_indexes(self) -> list[int]:
        return [i for i, o in enumerate(self.outcomes) if o.status == RETRY]


class OpenedUsers:
    """Users whose opening balance (`worker.balance_opening`) this process saw committed.

    A user's first movement records the balance it started from; every later batch over that
    user offered the row again and PostgreSQL refused it (ON CONFLICT DO NOTHING), an index probe
    per user: ~2.5 µs of PostgreSQL CPU per event, about 8 % (docs/performance.md). Nothing
    deletes an opening, so a user whose opening was in a committed batch is skipped from then
    on. One set per database (the coalescer's, in a worker process); emptied when it reaches
    `limit` users, which only means those openings are offered once more.
    """

    def __init__(self, limit: int = 200_000) -> None:
        self.limit = limit
        self._users: set[str] = set()

    def drop_known(self, openings: dict[str, int]) -> None:
        """Remove the users already known to be opened from a plan's openings."""
        for user_id in openings.keys() & self._users:
            del openings[user_id]

    def committed(self, openings: dict[str, int]) -> None:
        """A transaction that wrote (or found) these openings committed."""
        if len(self._users) + len(openings) > self.limit:
            self._users.clear()
        self._users.update(openings)


def safe_payload(raw: Any) -> str:
    """The raw event as JSON for the rejection table, bounded and always valid JSON."""
    try:
        text = json.dumps(raw, separators=(",", ":"), allow_nan=False, default=str,
                          ensure_ascii=False)  # fmt: skip
    except (TypeError, ValueError, RecursionError):
        text = json.dumps({"unserializable": repr(raw)[:1000]})
    if len(text) > _MAX_STORED_PAYLOAD:
        text = json.dumps({"truncated": True, "preview": text[:1000]}, ensure_ascii=False)
    # jsonb can store neither NUL nor a lone surrogate (which json.loads gives for a "\\ud800"
    # with no pair; a pair is one character once unescaped, so every surrogate here is lone)
    return _SURROGATE.sub("\ufffd", text).replace("\\u0000", "\\ufffd")


_event_id_adapter: TypeAdapter[str] = TypeAdapter(EventId)


def _claimed_id(raw: Any) -> str | None:
    """The raw event's id if it is a valid idempotency key (so a rejection can be found by it)."""
    value = raw.get("id") if isinstance(raw, dict) else None
    try:
        return _event_id_adapter.validate_python(value)
    except ValidationError:
        return None


def _raw_id(raw: Any) -> str | None:
    value = raw.get("id") if isinstance(raw, dict) else None
    return value if isinstance(value, str) else None


def _raw_type(raw: Any) -> str | None:
    value = raw.get("type") if isinstance(raw, dict) else None
    return value[:64] if isinstance(value, str) else None


_LOOKUP_ID = re.compile(rf"[{EVENT_ID_CHARS}]{{1,{EVENT_ID_MAX}}}").fullmatch  # EventId's rule, cheaply


class _Batch:
    """One message's (or one coalesced group's) events while they are being applied."""

    def __init__(self, raw_events: Sequence[Any]) -> None:
        self.raw_events = raw_events
        self.outcomes: list[Outcome | None] = [None] * len(raw_events)
        self.events: dict[int, LedgerEvent] = {}  # index -> valid, not yet decided
        self.hashes: dict[int, str] = {}  # index -> payload hash of the validated event
        self.raw_hashes: list[str | None] = [codec.raw_hash(raw) for raw in raw_events]
        self.rejections: list[tuple] = []  # written by the next transaction
        self.counted: set[int] = set()  # indexes whose outcome a committed transaction counted

    def uncounted(self) -> dict[int, Outcome]:
        """Outcomes settled before the transaction (replays, conflicts, invalid events) that no
        committed transaction has counted yet: the next one counts them (worker.outcome_count)."""
        return {i: o for i, o in enumerate(self.outcomes) if o is not None and i not in self.counted}

    def lookup_ids(self) -> list[str]:
        """The raw events' ids that could have been decided before (valid idempotency keys)."""
        ids = {_raw_id(raw) for raw in self.raw_events}
        return [i for i in ids if i is not None and _LOOKUP_ID(i)]

    def settle_replayed(self, recorded: dict[str, tuple[str, str | None]]) -> list[int]:
        """Events that arrive exactly as they were when first decided are duplicates; returns
        the indexes of the others (new events, or a decided id with other raw JSON)."""
        rest = []
        for i, raw in enumerate(self.raw_events):
            key = _raw_id(raw) if recorded else None
            seen = recorded.get(key) if key is not None else None
            if seen is not None and seen[1] is not None and seen[1] == self.raw_hashes[i]:
                self.outcomes[i] = Outcome(key, DUPLICATE)
            else:
                rest.append(i)
        return rest

    def settle_seen(self, indexes: list[int], recorded: dict[str, tuple[str, str | None]]) -> None:
        """Events already decided: a duplicate (same payload) or an idempotency conflict."""
        for i in indexes:
            event = self.events.pop(i)
            seen = recorded.get(event.id)
            if seen is not None and seen[0] == self.hashes[i]:
                self.outcomes[i] = Outcome(event.id, DUPLICATE)
            else:
                self.rejections.append((event.id, event.type, "idempotency_conflict",
                                        "an event with this id and a different payload was already processed",
                                        safe_payload(event.model_dump(mode="json"))))  # fmt: skip
                self.outcomes[i] = Outcome(event.id, REJECTED, "idempotency_conflict")

    def settle_busy(self) -> None:
        """The undecided events wait: their users' balances are held elsewhere (not recorded, so
        a later delivery applies them)."""
        for i, event in self.events.items():
            self.outcomes[i] = Outcome(event.id, RETRY, "balance_busy")
        self.events = {}


def _parse(batch: _Batch, indexes: list[int]) -> None:
    first_index: dict[str, int] = {}
    for i in indexes:
        raw = batch.raw_events[i]
        try:
            event = usage_event_adapter.validate_python(raw)
        except ValidationError as exc:
            event_id = _claimed_id(raw)
            detail = describe_validation_error(exc)
            batch.rejections.append((event_id, _raw_type(raw), "validation_error", detail, safe_payload(raw)))
            batch.outcomes[i] = Outcome(event_id or f"#{i}", REJECTED, "validation_error")
            continue
        batch.hashes[i] = event.payload_hash()
        if event.id in first_index:  # the same key twice in one message
            same = batch.hashes[first_index[event.id]] == batch.hashes[i]
            if not same:
                batch.rejections.append((event.id, event.type, "idempotency_conflict",
                                         "same id, different payload (in one message)",
                                         safe_payload(raw)))  # fmt: skip
            batch.outcomes[i] = Outcome(event.id, DUPLICATE if same else REJECTED,
                                        None if same else "idempotency_conflict")  # fmt: skip
            continue
        first_index[event.id] = i
        batch.events[i] = event


async def _apply_pass(
    conn: asyncpg.Connection, batch: _Batch, settings: Settings, opened: OpenedUsers | None,
    labels: OperationTypes, *, wait_for_locks: bool,
) -> dict[int, LedgerEvent]:
    """One transaction over the batch's undecided events. Without `wait_for_locks`, users whose
    balance another transaction holds are skipped: their events are returned, undecided.

    The batch is changed only once the transaction committed, so a pass that fails can run again.
    """
    events = dict(batch.events)
    settled: dict[int, Outcome] = {}
    deferred: dict[int, LedgerEvent] = {}
    async with conn.transaction():
        if wait_for_locks:
            await repo.limit_lock_wait(conn, settings.lock_wait_ms)
        users = {e.clerkUserId for e in events.values()}
        lock = repo.lock_accounts if wait_for_locks else repo.lock_free_accounts
        accounts = await lock(conn, users) if users else {}
        missing = users - accounts.keys()
        busy = await repo.find_existing_accounts(conn, missing) if missing and not wait_for_locks else set()
        for i, event in list(events.items()):
            if event.clerkUserId in busy:
                deferred[i] = events.pop(i)
            elif event.clerkUserId not in accounts:
                settled[i] = Outcome(event.id, WAITING, "unknown_user", f"user:{event.clerkUserId}",
                                     f"no user {event.clerkUserId} yet (its user.created is not in)")
                del events[i]

        refund_ids = {e.refundOf for e in events.values() if type(e) is UsageRefunded}
        targets = await repo.find_refund_targets(conn, sorted(refund_ids)) if refund_ids else {}
        batch_usages = {e.id for e in events.values() if type(e) is UsageRecorded}
        for i, event in list(events.items()):
            if type(event) is UsageRefunded and event.refundOf not in batch_usages:
                target = targets[event.refundOf]
                if target.credits_used is None and not target.decided:
                    settled[i] = Outcome(event.id, WAITING, "refund_before_usage", f"usage:{event.refundOf}",
                                         f"usage {event.refundOf} has not been applied yet")
                    del events[i]

        users_left = {accounts[e.clerkUserId].user_id for e in events.values()}
        grants = await repo.find_live_grants(conn, sorted(users_left)) if users_left else {}
        needs_costs = any(type(e) is UsageRecorded and e.credits is None for e in events.values())
        used_labels = {e.operationType for e in events.values() if type(e) is UsageRecorded}
        hold_ids = [e.holdId for e in events.values() if type(e) is UsageRecorded and e.holdId is not None]
        holds = await holds_repo.find_holds(conn, hold_ids) if hold_ids else {}
        now = clock.now()
        # the users' holds past their expiry are released before anything is decided (the sweep
        # would have; it may be behind, or have skipped a balance held here)
        due_holds = await holds_repo.due_holds_by_user(conn, sorted(users_left), now) if users_left else {}
        plan = decide(
            list(events.values()),
            accounts=accounts,
            targets=targets,
            feature_costs=await repo.get_feature_costs(conn) if needs_costs else {},
            default_costs=settings.default_feature_costs,
            policy=settings.overdraft_policy,
            operation_types=await labels.current(conn, used_labels) if used_labels else None,
            now=now,
            grants=grants,
            holds={hold_id: row.hold for hold_id, row in holds.items()},
            due_holds=due_holds,
        )
        if plan.absorbed:
            # a balance written without the worker (a seed, the app): it opens a legacy grant (or
            # the debt) once; reconcile's journal check shows a write the app made later
            log.info("balance_absorbed", users=plan.absorbed)
        # Every decided event's idempotency key goes in with its effects, in the same statement:
        # a twin that was decided since the lookup makes it fail (see _apply_events). Events
        # that wait are not decided: they are stored in worker.waiting, in this transaction.
        hashes, raw_hashes, outcomes = batch.hashes, batch.raw_hashes, plan.outcomes
        decided = [(e.id, e.type, hashes[i], e.clerkUserId, raw_hashes[i]) for i, e in events.items()
                   if outcomes[e.id].status != WAITING]  # fmt: skip
        if opened is not None:
            opened.drop_known(plan.openings)
        resolved = await repo.write_ledger(conn, plan, decided, now)
        # usages that captured (or released) holds, under the users' locks (ledger/holds.py)
        assert resolved == len(plan.hold_resolutions), "a hold resolved twice under its balance lock"
        rejections = batch.rejections + plan.rejections
        waits = [(i, o) for i, o in settled.items() if o.status == WAITING]
        if len(decided) < len(events):
            waits += [(i, outcomes[e.id]) for i, e in events.items() if outcomes[e.id].status == WAITING]
        if waits:
            # Another payload already waiting under one of these ids: refused, as it would be
            # had the first one been decided (the first keeps waiting).
            conflicts = await waiting.store(conn, "usage", [(batch.raw_events[i], o, hashes[i]) for i, o in waits])
            for i, o in waits:
                if o.event_id in conflicts:
                    rejected = Outcome(o.event_id, REJECTED, "idempotency_conflict")
                    settled[i] = rejected
                    outcomes[o.event_id] = rejected
                    rejections.append((o.event_id, _raw_type(batch.raw_events[i]), "idempotency_conflict",
                                       waiting.CONFLICT_DETAIL, safe_payload(batch.raw_events[i])))  # fmt: skip
        stored = await repo.insert_rejections(conn, rejections)
        await outbox.record_plan(conn, settings, plan, accounts.values(), rejections)
        final = {**batch.uncounted(), **settled, **{i: outcomes[e.id] for i, e in events.items()}}
        final = repeated_refusals_are_duplicates(final, stored)
        await count_outcomes(conn, "usage", final.values())  # the exact totals, with what they count

    batch.counted.update(final)
    if opened is not None:
        opened.committed(plan.openings)

    batch.rejections = []
    for i, outcome in final.items():
        batch.outcomes[i] = outcome
    batch.events = deferred
    return deferred


def repeated_refusals_are_duplicates(
    outcomes: dict[int, Outcome], stored: set[tuple[str | None, str]]
) -> dict[int, Outcome]:
    """A refusal whose (event id, reason) was not stored by this transaction was stored before:
    this is a redelivery of a refused event (a message redelivered after a crash, an invalid
    event published twice), so its outcome is `duplicate`, as a redelivered applied event's is
    — the totals then count each refusal once. Events without an id are always new refusals."""
    result, seen = dict(outcomes), set()
    for i, o in outcomes.items():
        if o.status != REJECTED or o.event_id.startswith("#"):
            continue
        key = (o.event_id, o.reason)
        if key not in stored or key in seen:
            result[i] = Outcome(o.event_id, DUPLICATE)
        seen.add(key)
    return result


async def _apply_events(
    conn: asyncpg.Connection, batch: _Batch, settings: Settings, opened: OpenedUsers | None,
    labels: OperationTypes, *, wait_for_locks: bool,
) -> dict[int, LedgerEvent]:
    """_apply_pass, again if a twin of some of the events was decided meanwhile.

    The ids were looked up before the transaction, so another message carrying the same event
    may have committed it since (a redelivery racing its original, a client that published
    twice). Its key is then in `worker.event_log` and our insert fails: the transaction rolls back,
    those events are settled as duplicates (or conflicts) like any seen event, and the pass runs
    again for the rest. A unique violation with no twin to blame is not a race: it is raised.
    """
    for attempt in range(_RACE_ATTEMPTS):
        try:
            return await _apply_pass(conn, batch, settings, opened, labels, wait_for_locks=wait_for_locks)
        except asyncpg.UniqueViolationError:
            ids = [e.id for e in batch.events.values()]
            recorded = await repo.find_decided_events(conn, ids) if ids else {}
            if not recorded or attempt == _RACE_ATTEMPTS - 1:
                raise
            batch.settle_seen([i for i, e in batch.events.items() if e.id in recorded], recorded)
    raise AssertionError("unreachable")


async def apply_usage_batch(
    conn: asyncpg.Connection, raw_events: Sequence[Any], settings: Settings, *,
    opened: OpenedUsers | None = None, labels: OperationTypes | None = None,
) -> BatchResult:
    """Apply a batch: first the users no other transaction is busy with (without waiting), then,
    in a second transaction that waits for their locks, the users that were busy. Concurrent
    batches over overlapping users thus run side by side instead of one after the other.

    `opened`: the users of this database whose opening balance is known to be recorded (skipped);
    `labels`: the database's operation types, kept between calls (read in this call if None)."""
    batch = _Batch(raw_events)
    labels = labels if labels is not None else OperationTypes()
    # A decided event never becomes undecided, so known ids are looked up before anything else,
    # outside the transaction: replays are settled without validation or locks. A first
    # delivery racing with its twin is settled when the write meets its key (_apply_events).
    ids = batch.lookup_ids()
    recorded = await repo.find_decided_events(conn, ids) if ids else {}
    _parse(batch, batch.settle_replayed(recorded))
    if recorded:
        seen = [i for i, e in batch.events.items() if e.id in recorded]
        batch.settle_seen(seen, recorded)
    deferred = await _apply_events(conn, batch, settings, opened, labels, wait_for_locks=False)
    if deferred:
        try:
            await _apply_events(conn, batch, settings, opened, labels, wait_for_locks=True)
        except asyncpg.LockNotAvailableError:
            # Another session held one of these balances longer than lock_wait_ms.
            # Waiting on would stall every usage message of this process behind it (one
            # transaction in flight, ledger/coalesce.py): the busy users' events come back later.
            batch.settle_busy()

    result = BatchResult([o for o in batch.outcomes if o is not None])
    assert len(result.outcomes) == len(raw_events)
    applied = result.count(APPLIED)
    # All applied is the healthy, high-volume case: the ops counters have it, and a JSON line per
    # transaction cost ~90 µs (a fifth of a one-event message's worker CPU). Anything else is
    # worth a line at INFO.
    log.log(
        logging.DEBUG if applied == len(raw_events) else logging.INFO,
        "batch_applied", events=len(raw_events), applied=applied, duplicates=result.count(DUPLICATE),
        rejected=result.count(REJECTED), retry=result.count(RETRY), waiting=result.count(WAITING),
        second_pass=len(deferred),
    )  # fmt: skip
    return result
