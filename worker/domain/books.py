"""One user's balance, grants and debt while a payment event (or the grant sweep) moves credits.

A payment's movements (payments.py) say how much; the books say to or from which grant
(worker/ledger/grants.py): a grant's credits go into the payment's allowances that have started
(paying the user's debt first); a reversal takes from the payment's own live allowances first,
then from the user's other grants in burn order, then into debt; a restore gives back to the
payment's newest live allowance, or, when every one has ended, expires at once.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import asyncpg

from ..ledger.decide import Account
from ..ledger.decide import Plan as LedgerPlan
from ..ledger.grants import Allocation, Grant, NewGrant, Wallet, encode
from ..repo import billing as repo
from ..repo import grants as grants_repo
from ..repo import ledger as ledger_repo
from ..notify import outbox
from ..settings import Settings
from .payments import GrantState, Settlement


class Books:
    def __init__(self, account: Account, debt: int, wallet: Wallet, now: datetime) -> None:
        self.account, self.balance, self.debt, self.opening_debt = account, account.balance, debt, debt
        self.now = now
        self.plan = LedgerPlan()
        self.plan.openings[account.user_id] = account.balance
        self.wallet = wallet
        wallet.absorb(account.balance, now)
        self.plan.wallets[account.clerk_user_id] = wallet
        self.own: list[str] = []  # the payment's allowances, in start order
        self.ended: set[str] = set()  # …of which these have ended (expired or voided)
        self._started: list[tuple[str, int]] = []  # allowances whose credits the next grant movement brings

    @classmethod
    async def open(
        cls, conn: asyncpg.Connection, account: Account, now: datetime, grants: Sequence[Grant] | None = None
    ) -> Books:
        """The books of a user whose balance the caller has locked (`grants`: its live grants,
        when the caller read them already)."""
        if grants is None:
            grants = (await ledger_repo.find_live_grants(conn, [account.user_id])).get(account.user_id, [])
        debt = await repo.read_debt(conn, account.user_id)
        return cls(account, debt, Wallet.read(account.user_id, grants), now)

    async def load_own(self, conn: asyncpg.Connection, reference: str) -> None:
        self.own, self.ended = [], set()
        for g in await grants_repo.grants_of(conn, reference):
            self.own.append(g.grant_id)
            if g.state in ("expired", "voided"):
                self.ended.add(g.grant_id)

    def add_allowances(self, allowances: list[NewGrant]) -> int:
        """A new grant's allowances (holding nothing yet); returns the credits of those that have
        started, which its `grant` movement brings."""
        for a in allowances:
            self.wallet.add(a)
            self.own.append(a.grant_id)
        return sum(self.starting(a.grant_id, a.amount) for a in allowances if a.state == "live")

    def starting(self, grant_id: str, credits: int) -> int:
        """A grant whose credits the next `grant` or `grant_start` movement brings."""
        self._started.append((grant_id, credits))
        return credits

    def _live_own(self) -> list[str]:
        return [g for g in reversed(self.own) if g in self.wallet.grants]

    def allocate(self, kind: str, delta: int) -> tuple[Allocation, Allocation]:
        """(the movement's allocation, what expires at once)."""
        if kind in ("grant", "grant_start"):
            started, self._started = self._started, []
            allocation: Allocation = []
            for grant_id, credits in started:
                allocation += self.wallet.credit(grant_id, credits)
            assert sum(d for _, d in allocation) == delta, (allocation, delta)
            return allocation, []
        if delta < 0:  # a reversal, a debt payment
            return self.wallet.take(-delta, self.now, prefer=self._live_own()), []
        live = self._live_own()
        if live:
            return self.wallet.credit(live[0], delta), []
        ended = [g for g in reversed(self.own) if g in self.ended]
        if ended:  # every allowance has ended: the restored credits expire at once
            return self.wallet.give_ended(ended[0], delta)
        return self.wallet.credit(self.wallet.home(self.now), delta), []  # a grant from before grants

    def record(self, key: str, kind: str, delta: int, refund_of: str | None, reference: str, reason: str,
               allocation: Allocation) -> None:  # fmt: skip
        """One journal movement of this user, and its balance change."""
        self.plan.journal_rows.append(
            (key, self.account.user_id, kind, delta, refund_of, reference, reason, encode(allocation))
        )
        self.balance += delta

    def record_rows(self, rows: Sequence[tuple]) -> None:
        """Journal movements built elsewhere (ledger/holds.py movements), and their balance change."""
        for row in rows:
            self.plan.journal_rows.append(row)
            self.balance += row[3]

    def write(self, grant_id: str, settlement: Settlement) -> None:
        for m in settlement.movements:
            refund_of = None if m.kind in ("grant", "grant_start") else f"grant/{grant_id}"
            allocation, expire = self.allocate(m.kind, m.delta)
            self.record(m.key, m.kind, m.delta, refund_of, grant_id, m.reason, allocation)
            if expire:
                self.record(f"expire/{m.key}", "grant_expiry", sum(d for _, d in expire), None, grant_id,
                            "restored credits of an expired grant", expire)  # fmt: skip
        self.debt = settlement.debt

    async def close(self, conn: asyncpg.Connection, grant: GrantState | None, settings: Settings) -> None:
        """Write the movements, the balance, the grants, the debt and the payment's grant, and
        the notifications they make (credits granted, reversed or expired, a low balance)."""
        if self.plan.journal_rows:
            self.plan.balance_deltas[self.account.balance_id] = self.balance - self.account.balance
            await ledger_repo.write_ledger(conn, self.plan)
            await outbox.record_plan(conn, settings, self.plan, [self.account])
        if self.debt != self.opening_debt:
            await repo.save_debt(conn, self.account.user_id, self.debt)
        if grant is not None:
            await repo.save_grant(conn, grant, self.account.clerk_user_id, self.account.user_id)
