"""Holds, synchronously: place, capture and release (the ingress's POST /v1/holds…, ops' `holds
release`), each one transaction under the user's `"CreditBalance"` row lock — the lock the queue
path takes, in the same way, and only one, so there is no lock order to break and no deadlock
with the batches — and the expiry of due holds (the grant sweep, worker/domain/expiry.py).

Every transaction over a user first releases that user's holds past their expiry, so no answer
counts credits a hold no longer has a right to. The rules are pure (worker/ledger/holds.py); this
module reads, decides with them, and writes the movements with the ledger's one statement
(repo.ledger.write_ledger).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from .. import clock
from ..codec import compact
from ..credit_api import BalanceView, CaptureRequest, HoldAnswer, HoldRequest, HoldView, UserBalanceView
from ..errors import WorkerError
from ..events import INT32_MAX
from ..ledger import holds as rules
from ..ledger.cost import CostError, feature_cost
from ..ledger.decide import Account, Plan
from ..ledger.grants import Wallet, encode
from ..ledger.holds import Hold
from ..ledger.operation_types import OperationTypes
from ..logs import get_logger
from ..repo import holds as repo
from ..repo import ledger as ledger_repo
from ..notify import outbox
from ..settings import Settings

log = get_logger("pedro.holds")


class HoldRefused(WorkerError):
    """An answer other than success: HTTP status, machine-readable `error`, and what to add."""

    def __init__(self, status: int, error: str, detail: str, **extra: Any) -> None:
        super().__init__(detail, reason=error)
        self.status, self.error, self.extra = status, error, extra


@dataclass
class Answer:
    status: int  # 201 placed, 200 resolved (or replayed), 409 expired
    body: HoldAnswer
    replayed: bool = False
    error: str | None = None  # a refusal that still committed (the hold expired on the way)


class _Books:
    """One user's balance, grants and open holds while one hold transaction decides."""

    def __init__(self, account: Account, grants: list, holds: dict[str, repo.HoldRow], hold_id: str,
                 now: datetime) -> None:  # fmt: skip
        self.account = account
        self.now = now
        self.plan = Plan()
        self.plan.openings[account.user_id] = account.balance
        self.wallet = Wallet.read(account.user_id, grants)
        if self.wallet.absorb(account.balance, now):
            log.info("balance_absorbed", users=1)
        self.plan.wallets[account.clerk_user_id] = self.wallet
        self.balance = account.balance
        self.row = holds.get(hold_id)  # the hold the request is about (whoever's), if it exists
        self.held = 0  # credits in the user's open holds
        at = now.timestamp()
        for row in holds.values():
            hold = row.hold
            if hold.user_id != account.user_id or hold.status != rules.HELD:
                continue
            if hold.is_due(at):  # past its expiry: released first, as the sweep would
                res = rules.release(self.wallet, hold, now)
                self.resolve(row, "release", res, hold.hold_id, "hold expired", rules.EXPIRED, "expiry")
            else:
                self.held += hold.credits

    @classmethod
    async def open(cls, conn: asyncpg.Connection, account: Account, hold_id: str, now: datetime) -> _Books:
        """The books of a user whose balance is locked, with its due holds released."""
        grants, holds = await repo.hold_books(conn, account.user_id, hold_id)
        return cls(account, grants, holds, hold_id, now)

    def resolve(self, row: repo.HoldRow, kind: str, res: rules.Resolution, reference: str, reason: str,
                status: str, by: str, charged: int | None = None, usage_id: str | None = None) -> None:  # fmt: skip
        for movement in rules.movements(kind, row.hold, res, reference, reason):
            self.plan.journal_rows.append(movement)
            self.balance += movement[3]
        self.plan.hold_resolutions.append(rules.resolved(row.hold, status, by, res, charged, usage_id))
        row.captured, row.usage_id, row.resolved_by, row.resolved_at = charged, usage_id, by, self.now

    def answer(self, status: int, *, replayed: bool = False, error: str | None = None) -> Answer:
        assert self.row is not None
        balance = BalanceView(remaining=self.balance, held=self.held,
                              available=rules.available(self.balance, self.wallet, self.now))  # fmt: skip
        return Answer(status, HoldAnswer(hold=hold_view(self.row), balance=balance), replayed, error)

    async def write(self, conn: asyncpg.Connection, settings: Settings, decided: Sequence[tuple] = ()) -> None:
        """The plan, and its notifications (a hold that expired on the way, a low balance)."""
        if self.plan.journal_rows:
            self.plan.balance_deltas[self.account.balance_id] = self.balance - self.account.balance
        resolved = await ledger_repo.write_ledger(conn, self.plan, decided, self.now)
        assert resolved == len(self.plan.hold_resolutions), "a hold resolved twice under its balance lock"
        await outbox.record_plan(conn, settings, self.plan, [self.account])


async def _lock(conn: asyncpg.Connection, clerk_user_id: str) -> Account:
    """The user's balance, locked (the ingress's connections give up after `lock_wait_ms`:
    LockNotAvailableError, a 503 to retry)."""
    account = (await ledger_repo.lock_accounts(conn, [clerk_user_id])).get(clerk_user_id)
    if account is None:
        raise HoldRefused(404, "unknown_user", f"no user {clerk_user_id} (its user.created is not in yet)")
    return account


async def read_balance(conn: asyncpg.Connection, clerk_user_id: str, now: datetime) -> UserBalanceView | None:
    """A user's balance read without the lock (GET …/balance): holds past their expiry count as
    released already, as the sweep will leave them (their credits back in their grants: what
    goes back to a grant past its own expiry is not available)."""
    b = await repo.user_balance(conn, clerk_user_id, now)
    if b is None:
        return None
    available = max(0, min(b.remaining, b.usable))
    if b.overdue:
        grants = (await ledger_repo.find_live_grants(conn, [b.user_id])).get(b.user_id, [])
        wallet = Wallet.read(b.user_id, grants)
        wallet.absorb(b.remaining, now)
        for hold in await repo.find_due_holds(conn, [b.user_id], now):
            rules.release(wallet, hold, now)
        available = rules.available(b.remaining + b.overdue, wallet, now)
    return UserBalanceView(remaining=b.remaining + b.overdue, held=b.held, available=available, waiting=b.waiting)


def hold_view(row: repo.HoldRow) -> HoldView:
    h = row.hold
    return HoldView(id=h.hold_id, clerkUserId=h.clerk_user_id, credits=h.credits, status=h.status,  # type: ignore[arg-type]
                    expiresAt=row.expires_at, createdAt=row.created_at, captured=row.captured,
                    usageId=row.usage_id, resolvedAt=row.resolved_at, resolvedBy=row.resolved_by)  # fmt: skip


async def _check_label(conn: asyncpg.Connection, labels: OperationTypes, op: str) -> None:
    if op not in await labels.current(conn, [op]):
        raise HoldRefused(422, "unknown_operation_type", f'"OperationType" has no label {op}')


async def place(
    conn: asyncpg.Connection, request: HoldRequest, settings: Settings, labels: OperationTypes
) -> Answer:
    """POST /v1/holds: take the credits now, or refuse with 402 `insufficient_credits`. The same
    id again answers with that hold as it is now (201, `replayed`); with another request, 409."""
    request_hash = request.request_hash()
    try:
        async with conn.transaction():
            return await _place(conn, request, request_hash, settings, labels)
    except asyncpg.UniqueViolationError:
        # The same id placed meanwhile for another user (under another balance lock), or an
        # event already decided under this id: the first one stands.
        existing = (await repo.find_holds(conn, [request.id])).get(request.id)
        if existing is not None and existing.request_hash == request_hash:
            async with conn.transaction():
                books = await _Books.open(conn, await _lock(conn, existing.hold.clerk_user_id), request.id, clock.now())
                return books.answer(201, replayed=True)
        raise HoldRefused(409, "idempotency_conflict", f"the id {request.id} was used already for something else") from None


async def _place(conn: asyncpg.Connection, request: HoldRequest, request_hash: str, settings: Settings,
                 labels: OperationTypes) -> Answer:  # fmt: skip
    account = await _lock(conn, request.clerkUserId)
    now = clock.now()
    books = await _Books.open(conn, account, request.id, now)
    if books.row is not None:
        if books.row.request_hash != request_hash:  # (the same request names the same user)
            raise HoldRefused(409, "idempotency_conflict", f"hold {request.id} exists with another request")
        await books.write(conn, settings)  # what the user's due holds released
        return books.answer(201, replayed=True)
    if request.operationType is not None:
        await _check_label(conn, labels, request.operationType)
    credits = request.credits
    if credits is None:
        assert request.operationType is not None
        try:
            credits = feature_cost(request.operationType, await ledger_repo.get_feature_costs(conn),
                                   settings.default_feature_costs)  # fmt: skip
        except CostError as exc:
            raise HoldRefused(422, "bad_feature_cost", str(exc)) from None
        if credits is None:
            raise HoldRefused(422, "no_cost", f"no credits given and no cost configured for {request.operationType}")
    available = rules.available(books.balance, books.wallet, now)
    if credits > available:
        raise HoldRefused(402, "insufficient_credits", f"{credits} credits asked, {available} available",
                          available=available)  # fmt: skip
    taken = books.wallet.take(credits, now)
    expires_at = now + timedelta(seconds=request.ttlSeconds)
    hold = Hold(request.id, account.user_id, account.clerk_user_id, credits, rules.HELD, expires_at.timestamp(),
                taken, request.overCapture, request.operationType)  # fmt: skip
    reason = f"hold for {request.operationType}" if request.operationType else "hold"
    books.plan.journal_rows.append((f"hold/{hold.hold_id}", account.user_id, "hold", -credits, None, hold.hold_id,
                                    reason, encode(taken)))  # fmt: skip
    books.balance -= credits
    books.held += credits
    details = compact(request.details).decode() if request.details is not None else None
    books.plan.hold_inserts.append((hold.hold_id, hold.user_id, hold.clerk_user_id, credits, request.operationType,
                                    details, request.overCapture, request_hash, encode(taken), expires_at, now))  # fmt: skip
    # The hold's id is an idempotency key like an event's: claimed in worker.event_log, so an
    # event that reuses it is refused as a conflict (and the other way round).
    await books.write(conn, settings, [(hold.hold_id, "hold.placed", request_hash, account.clerk_user_id, None)])
    books.row = repo.HoldRow(hold, request_hash, None, None, None, details, now, expires_at, None)
    return books.answer(201)


async def _open_hold(conn: asyncpg.Connection, hold_id: str) -> _Books:
    """The books of the hold's user, its balance locked, and the hold as it is under that lock
    (it may have resolved meanwhile)."""
    account = await repo.lock_account_of_hold(conn, hold_id)
    if account is None:
        raise HoldRefused(404, "unknown_hold", f"no hold {hold_id}")
    books = await _Books.open(conn, account, hold_id, clock.now())
    assert books.row is not None
    return books


async def capture(
    conn: asyncpg.Connection, hold_id: str, request: CaptureRequest, settings: Settings, labels: OperationTypes
) -> Answer:
    """POST /v1/holds/{id}/capture: charge the usage (a "UsageHistory" row whose id is the
    hold's), give back the rest. A hold resolved already answers its resolution (200); one past
    its expiry is released (if it was not yet) and answers 409 `hold_expired`."""
    async with conn.transaction():
        books = await _open_hold(conn, hold_id)
        row, hold = books.row, books.row.hold  # type: ignore[union-attr]
        assert row is not None
        if hold.status == rules.EXPIRED:
            await books.write(conn, settings)  # its release, if this transaction made it
            return books.answer(409, error="hold_expired")
        if hold.status != rules.HELD:
            return books.answer(200, replayed=True)
        op = request.operationType or hold.operation_type
        if op is None:
            raise HoldRefused(422, "operation_type_required",
                              "the hold names no operationType: the capture must (it goes in UsageHistory)")  # fmt: skip
        await _check_label(conn, labels, op)
        used = hold.credits if request.credits is None else request.credits
        charged = rules.charge(hold.credits, used, hold.over_capture)
        if charged is None:
            raise HoldRefused(409, "over_capture", f"{used} credits used, {hold.credits} held (overCapture reject)",
                              held=hold.credits, requested=used)  # fmt: skip
        if not -INT32_MAX <= books.balance + hold.credits - charged:
            raise HoldRefused(409, "balance_out_of_range", f"balance {books.balance}, capture {charged}")
        res = rules.capture(books.wallet, hold, charged, books.now)
        books.resolve(row, "capture", res, hold_id, op, rules.CAPTURED, "http", charged, hold_id)
        books.held -= hold.credits
        details = compact(request.details).decode() if request.details is not None else row.details
        books.plan.usage_rows.append((hold_id, hold.user_id, books.account.balance_id, op, charged, details,
                                      books.now.astimezone(UTC).replace(tzinfo=None)))  # fmt: skip
        await books.write(conn, settings)
        return books.answer(200)


async def release(conn: asyncpg.Connection, hold_id: str, settings: Settings, by: str = "http") -> Answer:
    """POST /v1/holds/{id}/release (or ops): everything held comes back. A hold resolved already
    (expired included) answers its resolution (200)."""
    async with conn.transaction():
        books = await _open_hold(conn, hold_id)
        row = books.row
        assert row is not None
        if row.hold.status == rules.HELD:
            books.resolve(row, "release", rules.release(books.wallet, row.hold, books.now), hold_id,
                          f"released ({by})", rules.RELEASED, by)  # fmt: skip
            books.held -= row.hold.credits
            await books.write(conn, settings)
            return books.answer(200)
        await books.write(conn, settings)  # what the user's due holds released (this one included, maybe)
        return books.answer(200, replayed=row.resolved_at is not None and row.resolved_at < books.now)
