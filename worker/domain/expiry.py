"""Grants and holds that are due: live grants past their expiry end, pending ones past their
start begin, holds past their expiry are released. Run by the grant sweep
(worker/grant_sweep.py) with the users' balances locked.

    expiry:  `expire/<grant id>` (grant_expiry): minus what was left, but for what a plan
             allowance's rollover carries into `rollover/<grant id>` for one more period
    start:   `start/<grant id>` (grant_start): a payment's next allowance (billing.start_allowance)
    holds:   `release/<hold id>` (release): what the hold took goes back (ledger/holds.py)

A movement's key is the grant's, so a grant expires or starts once, whoever runs the sweep and
however often: the state is read under the balance's lock, and the journal's primary key is the
last word.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

import asyncpg

from ..ledger import holds as hold_rules
from ..ledger.decide import Account
from ..ledger.grants import Grant, NewGrant
from ..repo import grants as repo
from ..repo import holds as holds_repo
from ..repo import ledger as ledger_repo
from ..settings import Settings
from .billing import start_allowance
from .books import Books
from .plan_credits import add_months


def is_due(grant: Grant, now: float) -> bool:
    return grant.expires is not None and grant.expires <= now and grant.source != "overdraft"


def rollover_of(terms: repo.GrantTerms, user_id: str) -> NewGrant | None:
    """Where a plan allowance's unused credits go at its end (up to its rollover): a grant that
    lasts one more period, used before that period's own allowance (it is older)."""
    if not terms.rollover or not terms.period_months or terms.expires_at is None:
        return None
    return NewGrant(f"rollover/{terms.grant_id}", user_id, "rollover", terms.rollover, 0, terms.priority,
                    terms.effective_at, add_months(terms.expires_at, terms.period_months),
                    terms.grant_id)  # fmt: skip


async def settle_due(
    conn: asyncpg.Connection, accounts: Mapping[str, Account], now: datetime, settings: Settings
) -> tuple[int, int, int]:
    """Expire and start what is due for these users (balances locked). Returns (expired grants,
    started grants, released holds)."""
    user_ids = sorted(a.user_id for a in accounts.values())
    live = await ledger_repo.find_live_grants(conn, user_ids)
    at = now.timestamp()
    due = {u: sorted((g for g in grants if is_due(g, at)), key=lambda g: g.expires or 0.0) for u, grants in live.items()}
    terms = await repo.grant_terms(conn, [g.grant_id for grants in due.values() for g in grants])
    pending: dict[str, list[repo.DueStart]] = {}
    for start in await repo.due_pending_grants(conn, user_ids, now):
        pending.setdefault(start.user_id, []).append(start)
    due_holds = await holds_repo.due_holds_by_user(conn, user_ids, now)
    expired = started = 0
    states: list[tuple[str, str, datetime | None]] = []
    resolutions: list[tuple] = []
    for clerk in sorted(accounts):
        account = accounts[clerk]
        books = await Books.open(conn, account, now, live.get(account.user_id, []))
        for hold in due_holds.get(account.user_id, []):  # first: its credits may go back to a grant due too
            res = hold_rules.release(books.wallet, hold, now)
            books.record_rows(hold_rules.movements("release", hold, res, hold.hold_id, "hold expired"))
            resolutions.append(hold_rules.resolved(hold, hold_rules.EXPIRED, "expiry", res))
        for grant in due.get(account.user_id, []):
            delta, allocation = books.wallet.expire(grant.grant_id, rollover_of(terms[grant.grant_id], account.user_id))
            books.record(f"expire/{grant.grant_id}", "grant_expiry", delta, None, grant.grant_id,
                         f"{grant.source} credits expired", allocation)  # fmt: skip
            states.append((grant.grant_id, "expired", now))
            expired += 1
        for start in pending.get(account.user_id, []):  # every pending grant is a payment's allowance
            began = await start_allowance(conn, books, start, settings)
            states.append((start.grant_id, "live" if began else "voided", None if began else now))
            started += began
        await books.close(conn, None, settings)
    await repo.set_grant_states(conn, states)
    await holds_repo.resolve_holds(conn, resolutions, now)
    return expired, started, len(resolutions)


async def lock_due(conn: asyncpg.Connection, now: datetime, limit: int) -> tuple[int, dict[str, Account]]:
    """Lock the balances of up to `limit` users with a grant due, skipping those another
    transaction holds (their turn comes next sweep; it never waits, so it cannot deadlock with
    the batches). Returns (users due, their balances locked)."""
    users = await repo.due_grant_users(conn, now, limit)
    return len(users), await ledger_repo.lock_free_accounts(conn, sorted(users.values())) if users else {}
